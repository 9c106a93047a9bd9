"""The console's API under FastAPI's test client, against both stores filled
by a real `icswatch replay` of the project's Modbus captures."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from console.accounts import Accounts
from console.app import ConsoleConfig, create_app
from console.cli import main
from console.serve_cli import open_alert_store
from console.state import ConsoleState
from console.stores.base import Store
from tests.support.esnode import http

CAPTURES = sorted((Path(__file__).resolve().parents[3] / "pcaps" / "modbus").glob("*.pcapng"))
PASSWORD = "correct horse battery"
USERS = {"admin": "admin", "ana": "analyst", "vic": "viewer"}


def _clean(url: str) -> None:
    for path in ("/icswatch*?expand_wildcards=all", "/_index_template/icswatch*",
                 "/_component_template/icswatch*"):
        http("DELETE", url + path)


def replay_into(location: str, spool: Path, *captures: Path) -> None:
    """A real replay storing into ``location`` (stderr summary swallowed)."""
    saved = sys.stderr
    sys.stderr = io.StringIO()
    try:
        status = main(["replay", "--format", "none", "--no-progress", "--store", location,
                       "--spool", str(spool), "--sensor-name", "test-sensor",
                       *map(str, captures)])
    finally:
        sys.stderr = saved
    assert status == 0


@pytest.fixture(scope="module", params=["sqlite", "elasticsearch"])
def store_location(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("api-store")
    if request.param == "sqlite":
        location = str(folder / "store.db")
    else:
        node = request.getfixturevalue("elasticsearch_node")
        if not node.running:
            node.start()
        location = node.url
        _clean(location)
    replay_into(location, folder / "spool", *CAPTURES)
    yield location
    if request.param == "elasticsearch":
        _clean(location)


@pytest.fixture(scope="module")
def alert_store(store_location: str) -> Iterator[Store]:
    store = open_alert_store(store_location)
    yield store
    store.close()


@pytest.fixture(scope="module")
def app_parts(alert_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("console")
    state = ConsoleState(folder / "console.db")
    accounts = Accounts(state)
    for name, role in USERS.items():
        accounts.add_user(name, PASSWORD, role)
    app = create_app(ConsoleConfig(store=alert_store, state=state,
                                   site_rules=folder / "site-rules", live_poll=0.05))
    yield app, folder
    state.close()


def _login(app: Any, username: str) -> TestClient:
    client = TestClient(app, raise_server_exceptions=False)
    reply = client.post("/api/auth/login", json={"username": username, "password": PASSWORD})
    assert reply.status_code == 200, reply.text
    client.headers["X-Requested-With"] = "icswatch"
    return client


@pytest.fixture(scope="module")
def admin(app_parts: Any) -> TestClient:
    return _login(app_parts[0], "admin")


@pytest.fixture(scope="module")
def analyst(app_parts: Any) -> TestClient:
    return _login(app_parts[0], "ana")


@pytest.fixture(scope="module")
def viewer(app_parts: Any) -> TestClient:
    return _login(app_parts[0], "vic")


@pytest.fixture
def anonymous(app_parts: Any) -> TestClient:
    return TestClient(app_parts[0], raise_server_exceptions=False)
