"""The real console in a real browser.

One console per session, as an operator runs it: `icswatch replay` fills an
embedded store from the Modbus captures, `icswatch user add` creates an admin,
an analyst and a viewer, and `icswatch serve` answers on a free local port.
Chromium is Debian's (/usr/bin/chromium), driven by Playwright's sync API.

Without Chromium these tests are skipped, except in CI (the ``CI`` environment
variable set), where they fail. Every page a test opens is watched: a request
to any host but the console's fails the test (plant networks are air-gapped).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[3]
MODBUS = ROOT / "pcaps" / "modbus"
CHROMIUM = Path("/usr/bin/chromium")
VIEWPORT = {"width": 1366, "height": 768}
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
# Captured but not replayed at start: the live-feed test replays it while a page is open.
LIVE_CAPTURE = MODBUS / "attack-unauthorised-write.pcapng"

USERS = {
    "admin": ("admin", "admin-password-1"),
    "analyst": ("analyst", "analyst-password-1"),
    "viewer": ("viewer", "viewer-password-1"),
}


def _in_ci() -> bool:
    # The same rule as tests/conftest.py.
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"browser tests need Chromium at {CHROMIUM} (Debian: apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as error:
        return f"browser tests need Playwright for Python (pip install playwright): {error}"
    return None


def require_browser() -> None:
    """At the top of a browser test module: skip it (fail it in CI) without a browser."""
    reason = _browser_missing()
    if reason is None:
        return
    if _in_ci():
        pytest.fail(f"CI needs the browser tests: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def artifacts_dir() -> Path:
    """Where screenshots go: $ICSWATCH_ARTIFACTS, else artifacts/ in the repository."""
    base = Path(os.environ.get("ICSWATCH_ARTIFACTS", ROOT / "artifacts"))
    folder = base / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def run_icswatch(env: dict[str, str], *args: str | Path, stdin: str | None = None,
                 ) -> subprocess.CompletedProcess[str]:
    """The CLI as an operator runs it; a failure fails the test with its stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "console.cli", *map(str, args)], input=stdin,
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT, env=env)
    assert result.returncode == 0, f"icswatch {args[0]}: {result.stderr}"
    return result


@dataclass
class Console:
    """A running `icswatch serve` and the files behind it."""

    url: str
    folder: Path
    store: Path
    state: Path
    env: dict[str, str]

    def icswatch(self, *args: str | Path, stdin: str | None = None,
                 ) -> subprocess.CompletedProcess[str]:
        return run_icswatch(self.env, *args, stdin=stdin)

    def api(self, path: str, who: str = "admin", **query: str | int) -> Any:
        """GET an API path with a bearer token, to compare the page with the API."""
        username, password = USERS[who]
        login = urllib.request.Request(
            self.url + "api/auth/login", method="POST",
            data=json.dumps({"username": username, "password": password}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(login, timeout=10) as reply:
            token = json.load(reply)["token"]
        search = f"?{urlencode(query)}" if query else ""
        request = urllib.request.Request(
            self.url + "api/" + path + search, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.load(reply)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"icswatch serve exited with {process.returncode}:\n"
                        f"{log.read_text(errors='replace')}", pytrace=False)
        with contextlib.suppress(urllib.error.URLError, OSError), \
                urllib.request.urlopen(url, timeout=2) as reply:  # not listening yet: retry
            if reply.status == 200:
                return
        time.sleep(0.2)
    pytest.fail(f"icswatch serve did not answer {url} within 30 s:\n"
                f"{log.read_text(errors='replace')}", pytrace=False)


@pytest.fixture(scope="session")
def console() -> Iterator[Console]:
    require_browser()
    folder = Path(tempfile.mkdtemp(prefix="icswatch-browser-"))
    env = {**os.environ, "XDG_DATA_HOME": str(folder / "xdg"),
           "ICSWATCH_DB": str(folder / "store.db"),
           "ICSWATCH_CONSOLE_DB": str(folder / "console.db"),
           "ICSWATCH_SITE_RULES": str(folder / "site-rules")}
    store, state = folder / "store.db", folder / "console.db"
    captures = sorted(path for path in MODBUS.glob("*.pcapng") if path != LIVE_CAPTURE)
    run_icswatch(env, "replay", "--store", store, "--format", "none", "--no-progress",
                 "--no-summary", *captures)
    for role, (username, password) in USERS.items():
        run_icswatch(env, "user", "add", username, "--role", role, "--password-stdin",
                     "--state", state, stdin=password + "\n")
    port = _free_port()
    log = folder / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "console.cli", "serve", "--store", str(store),
             "--state", str(state), "--site-rules", str(folder / "site-rules"),
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_up(url, process, log)
        yield Console(url=url, folder=folder, store=store, state=state, env=env)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def browser(console: Console) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=args)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Watch:
    """Requests the page tried to send off the machine, and its script errors."""

    foreign: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return parts.hostname in LOCAL_HOSTS


@pytest.fixture
def watch() -> Watch:
    return Watch()


@pytest.fixture
def new_context(browser: Any, console: Console, watch: Watch) -> Iterator[Any]:
    """new_context(locale) -> a fresh browser profile; requests to other hosts are
    recorded and never let out, and fail the test."""
    opened: list[Any] = []

    def guard(route: Any) -> None:
        if _is_local(route.request.url):
            route.continue_()
        else:
            watch.foreign.append(route.request.url)
            route.abort()

    def make(locale: str = "zh-CN") -> Any:
        ctx = browser.new_context(viewport=VIEWPORT, locale=locale, base_url=console.url)
        ctx.route("**/*", guard)
        ctx.on("request", lambda request: None if _is_local(request.url)
               else watch.foreign.append(request.url))
        opened.append(ctx)
        return ctx

    yield make
    for ctx in opened:
        ctx.close()
    assert not watch.foreign, f"requests left the machine: {sorted(set(watch.foreign))}"


@pytest.fixture
def context(new_context: Any) -> Any:
    """A browser profile in Chinese, the plant default."""
    return new_context("zh-CN")


@pytest.fixture
def page(context: Any, watch: Watch) -> Iterator[Any]:
    page = context.new_page()
    page.on("pageerror", lambda error: watch.errors.append(str(error)))
    yield page
    assert not watch.errors, f"script errors in the page: {watch.errors}"


def sign_in(page: Any, who: str = "admin") -> None:
    """Fill the login form as `who` and wait for the overview."""
    username, password = USERS[who]
    page.get_by_test_id("login-username").fill(username)
    page.get_by_test_id("login-password").fill(password)
    page.get_by_test_id("login-submit").click()
    page.get_by_test_id("nav-overview").wait_for()


@pytest.fixture
def login(page: Any) -> Any:
    """login("viewer") opens the console and signs in; returns the page."""

    def signed_in(who: str = "admin") -> Any:
        page.goto("/")
        sign_in(page, who)
        page.get_by_test_id("kpis").wait_for()
        return page

    return signed_in
