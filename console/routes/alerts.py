"""Alerts: the list, one alert with its events and audit trail, triage
actions, and the live feed of new alerts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from console.alert_filters import alert_filters
from console.routes.common import in_scope, store, summary, user_scope
from console.stores.base import AlertQuery
from console.triage import Action, ActionName, Conflict, Triage, TriageError
from console.web_auth import Analyst, Viewer

router = APIRouter(prefix="/api", tags=["alerts"])
Filters = Annotated[AlertQuery, Depends(alert_filters)]
LIVE_POLL_SECONDS = 2.0
KEEPALIVE_SECONDS = 15.0
MAX_ID = 64


def _triage(request: Request) -> Triage:
    found: Triage = request.app.state.triage
    return found


def _check_id(alert_id: str) -> None:
    if not alert_id or len(alert_id) > MAX_ID:
        raise HTTPException(404, "no such alert")


@router.get("/alerts")
def list_alerts(
    request: Request, user: Viewer, filters: Filters,
    size: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    order: Literal["desc", "asc"] = "desc",
) -> dict[str, Any]:
    query = replace(filters, size=size, cursor=cursor or None, newest_first=order == "desc")
    try:
        page = store(request).search_alerts(query)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    return {"alerts": [summary(alert) for alert in page.alerts], "total": page.total,
            "cursor": page.cursor}


def _detail(request: Request, alert: dict[str, Any], alert_id: str) -> dict[str, Any]:
    return {"alert": alert, "audit": _triage(request).audit(alert_id)}


@router.get("/alerts/{alert_id}")
def get_alert(request: Request, user: Viewer, alert_id: str) -> dict[str, Any]:
    _check_id(alert_id)
    alert = store(request).get_alert(alert_id)
    if alert is None or not in_scope(alert, user_scope(request, user)):
        raise HTTPException(404, f"no alert {alert_id}")
    return _detail(request, alert, alert_id)


class ActionRequest(BaseModel):
    action: ActionName
    assignee: str | None = Field(default=None, max_length=64)
    comment: str | None = Field(default=None, max_length=4000)
    reason: str | None = Field(default=None, max_length=4000)


@router.post("/alerts/{alert_id}/actions")
def act(request: Request, user: Analyst, alert_id: str, body: ActionRequest) -> dict[str, Any]:
    """Acknowledge, assign, comment, close (with a reason), mark a false
    positive (with a reason) or reopen; recorded in the audit trail."""
    _check_id(alert_id)
    seen = store(request).get_alert(alert_id)
    if seen is None or not in_scope(seen, user_scope(request, user)):
        raise HTTPException(404, f"no alert {alert_id}")
    accounts = request.app.state.accounts
    try:
        alert = _triage(request).act(
            alert_id, user.username,
            Action(body.action, body.assignee, body.comment, body.reason),
            known_user=lambda name: accounts.user(name) is not None)
    except Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    except TriageError as exc:
        raise HTTPException(400, str(exc)) from None
    if alert is None:
        raise HTTPException(404, f"no alert {alert_id}")
    return _detail(request, alert, alert_id)


@router.get("/live", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def live(request: Request, user: Viewer) -> StreamingResponse:
    """Server-sent events: each alert stored from now on, as ``event: alert``."""
    alerts = store(request)
    scope = user_scope(request, user)
    _, marker = await run_in_threadpool(alerts.alerts_since, None)

    async def stream() -> AsyncIterator[bytes]:
        nonlocal marker
        quiet_since = time.monotonic()
        yield b": connected\n\n"
        while not await request.is_disconnected():
            new, marker = await run_in_threadpool(alerts.alerts_since, marker)
            for alert in new:
                if not in_scope(alert, scope):
                    continue
                yield b"event: alert\ndata: " + orjson.dumps(summary(alert)) + b"\n\n"
            now = time.monotonic()
            if new:
                quiet_since = now
            elif now - quiet_since >= KEEPALIVE_SECONDS:
                quiet_since = now
                yield b": keepalive\n\n"
            if not new:
                await asyncio.sleep(request.app.state.live_poll)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
