"""The console: the HTTP API and the web UI in one FastAPI application.

`create_app` wires the parts (alert store, console database, rules) so that
tests build the same application `icswatch serve` runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from console.accounts import Accounts
from console.notices import NoticeBook
from console.routes import alerts, auth, inventory, notices, rules, stats, tier, users
from console.rule_admin import RuleAdmin, SiteRules
from console.state import ConsoleState, StateError
from console.stores.base import Store, StoreError
from console.tiers import Organizations, TierConfig
from console.triage import Triage

WEB_DIR: Final = Path(__file__).resolve().parent / "web"
VERSION: Final = "0.1.0"


@dataclass(slots=True)
class ConsoleConfig:
    store: Store
    state: ConsoleState
    site_rules: Path
    silent_after: float = 300.0  # seconds without a report before a live sensor is silent
    live_poll: float = 2.0  # seconds between looks for new alerts in the live feed
    tier: TierConfig | None = None  # None: a standalone enterprise console


def _readable(exc: RequestValidationError) -> str:
    """FastAPI's validation errors as one sentence: where and what."""
    parts = []
    for error in exc.errors()[:3]:
        location = " ".join(str(part) for part in error.get("loc", ()) if part != "body")
        parts.append(f"{location}: {error.get('msg', 'invalid')}".strip(": "))
    return "; ".join(parts) or "invalid request"


def create_app(config: ConsoleConfig) -> FastAPI:
    app = FastAPI(
        title="icswatch console", version=VERSION,
        description="Alerts, assets, communication map, sensors and rules of icswatch, a "
                    "passive security monitor for industrial control system networks. Every "
                    "endpoint needs a session (POST /api/auth/login) or a bearer token.",
        openapi_url="/api/openapi.json", docs_url="/api/docs", redoc_url=None,
    )
    app.state.store = config.store
    app.state.accounts = Accounts(config.state)
    app.state.triage = Triage(config.store, config.state)
    app.state.rule_admin = RuleAdmin(SiteRules(config.site_rules))
    app.state.silent_after = config.silent_after
    app.state.live_poll = config.live_poll
    app.state.tier = config.tier or TierConfig.standalone()
    app.state.orgs = Organizations(config.state, app.state.tier)
    app.state.notices = NoticeBook(config.state, app.state.orgs)
    for module in (auth, alerts, stats, inventory, rules, users, notices, tier):
        app.include_router(module.router)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _readable(exc)}, status_code=422)

    @app.exception_handler(StoreError)
    async def store_down(request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"detail": f"the alert store is not answering: {exc}"},
                            status_code=503)

    @app.exception_handler(StateError)
    async def state_down(request: Request, exc: StateError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.get("/api/{anything:path}", include_in_schema=False)
    def unknown(anything: str) -> Any:
        raise HTTPException(404, f"no API endpoint /api/{anything}")

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "no-referrer")
        if not request.url.path.startswith("/api/docs"):
            headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                "connect-src 'self'; frame-ancestors 'none'")
        return response

    if (WEB_DIR / "index.html").is_file():
        @app.get("/", include_in_schema=False)
        def index() -> FileResponse:
            return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

        app.mount("/", StaticFiles(directory=WEB_DIR), name="web")
    return app
