"""Who sees what: every role at every tier against every API endpoint, and
every other organisation's data, with zero leaks; a child's forged origin
is refused.

The consoles are the real application over real embedded stores. The
province ``prov-zj`` has enterprises ent-a and ent-b; the nation also has
``prov-js`` with ent-c. Each enterprise's alerts carry distinct ids; a leak
is any foreign alert id, organisation id or notice id appearing in a
response.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from console.accounts import Accounts
from console.app import ConsoleConfig, create_app
from console.state import ConsoleState
from console.stores.sqlite import SqliteStore
from console.tiers import Organizations, TierConfig
from tests.support.alerts import numbered, replay_alerts

ROOT = Path(__file__).resolve().parents[3]
PASSWORD = "correct horse battery"
ROLES = ("viewer", "analyst", "admin")
ENTERPRISES = {"ent-a": "prov-zj", "ent-b": "prov-zj", "ent-c": "prov-js"}
TIERS = {
    "enterprise": TierConfig("enterprise", "ent-a", "Enterprise A", province="prov-zj"),
    "province": TierConfig("province", "prov-zj", "Zhejiang"),
    "national": TierConfig("national", "national", "National centre"),
}
# What each tier's store holds: an enterprise only its own alerts.
HOLDS = {"enterprise": ("ent-a",), "province": ("ent-a", "ent-b"),
         "national": ("ent-a", "ent-b", "ent-c")}


def _alerts() -> dict[str, list[dict[str, Any]]]:
    templates = replay_alerts(sorted((ROOT / "pcaps" / "modbus").glob("*.pcapng"))[:4])
    out = {}
    for number, org in enumerate(ENTERPRISES):
        docs = numbered(templates, 0, 12, f"authz-{org}", first_ts=1_700_000_000 + number)
        for doc in docs:
            doc["organization"] = {"id": org, "name": f"Enterprise {org}"}
            doc["source"]["ip"] = f"10.{number}.0.1"
        out[org] = docs
    return out


ALERTS = _alerts()
ALERT_IDS = {org: {d["event"]["id"] for d in docs} for org, docs in ALERTS.items()}


class Tier:
    def __init__(self, name: str, folder: Path) -> None:
        self.name = name
        folder.mkdir()
        self.state = ConsoleState(folder / "console.db")
        self.store = SqliteStore(folder / "store.db")
        config = TIERS[name]
        self.orgs = Organizations(self.state, config)
        if name == "province":
            self.tokens = {o: self.orgs.add_child(o, f"Enterprise {o}")
                           for o in ("ent-a", "ent-b")}
        elif name == "national":
            self.tokens = {p: self.orgs.add_child(p, p) for p in ("prov-zj", "prov-js")}
            for org, province in ENTERPRISES.items():
                self.orgs.accept_from_child(province, {"id": org, "kind": "enterprise",
                                                       "name": f"Enterprise {org}",
                                                       "parent": province})
        for org in HOLDS[name]:
            self.store.write_alerts(ALERTS[org])
        self.store.write_inventory("assets", [
            {"id": f"{org}/10.{n}.0.1", "ip": f"10.{n}.0.1", "organization": {"id": org}}
            for n, org in enumerate(ENTERPRISES) if org in HOLDS[name]])
        accounts = Accounts(self.state)
        self.users: dict[str, str | None] = {}
        for role in ROLES:
            accounts.add_user(role, PASSWORD, role)
            self.users[role] = None
        if name in ("province", "national"):
            accounts.add_user("ent-a-viewer", PASSWORD, "viewer", org="ent-a")
            accounts.add_user("ent-a-analyst", PASSWORD, "analyst", org="ent-a")
            self.users["ent-a-viewer"] = self.users["ent-a-analyst"] = "ent-a"
        if name == "national":
            accounts.add_user("zj-viewer", PASSWORD, "viewer", org="prov-zj")
            self.users["zj-viewer"] = "prov-zj"
        self.app = create_app(ConsoleConfig(store=self.store, state=self.state,
                                            site_rules=folder / "rules", tier=config))

    def client(self, username: str | None) -> TestClient:
        client = TestClient(self.app, raise_server_exceptions=False)
        if username is not None:
            reply = client.post("/api/auth/login",
                                json={"username": username, "password": PASSWORD})
            assert reply.status_code == 200, reply.text
            client.headers["X-Requested-With"] = "icswatch"
        return client

    def visible(self, username: str) -> set[str]:
        """The enterprises whose data ``username`` may see here."""
        org = self.users[username]
        held = set(HOLDS[self.name])
        if org is None:
            return held
        if org.startswith("prov-"):
            return {e for e in held if ENTERPRISES[e] == org}
        return {org} & held


@pytest.fixture(scope="module")
def tiers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Tier]]:
    folder = tmp_path_factory.mktemp("authz")
    built = {name: Tier(name, folder / name) for name in TIERS}
    # A notice from the province to each of its enterprises.
    for tier in (built["province"],):
        for target in ("ent-a", "ent-b"):
            admin = tier.client("admin")
            reply = admin.post("/api/notices", json={
                "target": target, "title": f"patch {target}", "required_action": "patch",
                "deadline": time.time() + 86400})
            assert reply.status_code == 201, reply.text
    yield built
    for tier in built.values():
        tier.store.close()
        tier.state.close()


def _get_routes(app: Any) -> list[str]:
    """Every GET endpoint the API documents, but those that stream (live)
    or answer links rather than users (tier/notices)."""
    return sorted(path for path, methods in app.openapi()["paths"].items()
                  if "get" in methods and "{" not in path
                  and path not in ("/api/live", "/api/tier/notices"))


def _foreign_markers(tier: Tier, visible: set[str]) -> list[str]:
    foreign = set(HOLDS[tier.name]) - visible
    markers = [org for org in foreign]
    for org in foreign:
        markers.extend(sorted(ALERT_IDS[org])[:3])
    return markers


@pytest.mark.parametrize("tier_name", list(TIERS))
def test_no_endpoint_shows_another_organisations_data(tiers: dict[str, Tier],
                                                      tier_name: str) -> None:
    tier = tiers[tier_name]
    anonymous = tier.client(None)
    routes = _get_routes(tier.app)
    assert "/api/alerts" in routes and "/api/rollup" in routes and "/api/notices" in routes
    for path in routes:
        if path == "/api/auth/me":
            assert anonymous.get(path).status_code == 401
            continue
        assert anonymous.get(path).status_code == 401, path
    for username in tier.users:
        client = tier.client(username)
        visible = tier.visible(username)
        markers = _foreign_markers(tier, visible)
        for path in routes:
            reply = client.get(path)
            role = username.split("-")[-1] if "-" in username else username
            if path == "/api/users" and role != "admin":
                assert reply.status_code == 403, (username, path)
                continue
            assert reply.status_code == 200, (username, path, reply.text)
            body = reply.text
            leaked = [m for m in markers if m in body]
            assert not leaked, f"{tier_name}/{username} GET {path} shows {leaked}"
        listed = {a["event"]["id"] for a in client.get("/api/alerts?size=500").json()["alerts"]}
        assert listed == set().union(*(ALERT_IDS[o] for o in visible)) if visible \
            else listed == set(), (tier_name, username)
        for org in set(HOLDS[tier_name]) - visible:
            alert_id = sorted(ALERT_IDS[org])[0]
            assert client.get(f"/api/alerts/{alert_id}").status_code == 404
            assert client.post(f"/api/alerts/{alert_id}/actions",
                               json={"action": "acknowledge"}).status_code in (403, 404)
            assert client.get(f"/api/assets/{org}/10.{list(ENTERPRISES).index(org)}.0.1"
                              ).status_code == 404
            assert client.get(f"/api/alerts?organization={org}").json()["total"] == 0


def test_notices_stay_with_their_enterprise(tiers: dict[str, Tier]) -> None:
    province = tiers["province"]
    notices = province.client("admin").get("/api/notices").json()["notices"]
    by_target = {n["target"]: n["id"] for n in notices}
    assert set(by_target) == {"ent-a", "ent-b"}
    ent_a = province.client("ent-a-viewer")
    seen = ent_a.get("/api/notices").json()["notices"]
    assert [n["target"] for n in seen] == ["ent-a"]
    assert ent_a.get(f"/api/notices/{by_target['ent-b']}").status_code == 404
    analyst = province.client("ent-a-analyst")
    assert analyst.post(f"/api/notices/{by_target['ent-b']}/steps",
                        json={"action": "accept"}).status_code == 404
    assert analyst.post("/api/notices", json={
        "target": "ent-b", "title": "x", "required_action": "y",
        "deadline": time.time() + 3600}).status_code == 403


def test_roles_gate_every_change(tiers: dict[str, Tier]) -> None:
    province = tiers["province"]
    viewer, analyst = province.client("viewer"), province.client("analyst")
    for client in (viewer, analyst):
        assert client.put("/api/orgs/ent-a/grading", json={"grade": "high"}).status_code == 403
        assert client.post("/api/rules/ICSW-MODBUS-001/disable").status_code == 403
    assert viewer.post("/api/notices", json={
        "target": "ent-a", "title": "x", "required_action": "y",
        "deadline": time.time() + 3600}).status_code == 403
    admin = province.client("admin")
    assert admin.put("/api/orgs/ent-a/grading",
                     json={"grade": "high", "key_enterprise": True}).status_code == 200
    assert admin.put("/api/orgs/ent-c/grading", json={"grade": "high"}).status_code == 404
    enterprise_admin = tiers["enterprise"].client("admin")
    assert enterprise_admin.put("/api/orgs/ent-a/grading",
                                json={"grade": "low"}).status_code == 403
    national_zj = tiers["national"].client("zj-viewer")
    assert national_zj.get("/api/alerts?organization=ent-c").json()["total"] == 0


def _ingest(tier: Tier, token: str, records: list[dict[str, Any]]) -> Any:
    client = TestClient(tier.app, raise_server_exceptions=False)
    return client.post("/api/tier/ingest", headers={"Authorization": f"Bearer {token}",
                                                         "Content-Type": "application/json"},
                       content=json.dumps({"records": records}))


def test_a_child_cannot_write_as_another(tiers: dict[str, Tier]) -> None:
    province, national = tiers["province"], tiers["national"]
    token_a = province.tokens["ent-a"]
    forged = dict(ALERTS["ent-a"][0], event={**ALERTS["ent-a"][0]["event"], "id": "forged-1"},
                  organization={"id": "ent-b"})
    reply = _ingest(province, token_a, [{"type": "alert", "doc": forged}])
    assert reply.status_code == 403 and "ent-a may not send data of ent-b" in reply.text, reply.text
    assert province.store.get_alert("forged-1") is None
    # A good record in the same batch is not stored either: all or nothing.
    good = dict(ALERTS["ent-a"][0], event={**ALERTS["ent-a"][0]["event"], "id": "good-1"})
    assert _ingest(province, token_a, [{"type": "alert", "doc": good},
                                       {"type": "alert", "doc": forged}]).status_code == 403
    assert province.store.get_alert("good-1") is None
    assert _ingest(province, token_a, [{"type": "alert", "doc": good}]).status_code == 200
    assert province.store.get_alert("good-1") is not None
    assert _ingest(province, "not-a-token", [{"type": "alert", "doc": good}]).status_code == 401
    user_token = province.client(None).post(
        "/api/auth/login", json={"username": "admin", "password": PASSWORD}).json()["token"]
    assert _ingest(province, user_token, []).status_code == 401  # a user is not a link
    # An enterprise claiming another province, a province claiming another's enterprise.
    moved = {"id": "ent-a", "kind": "enterprise", "name": "A", "parent": "prov-js"}
    assert _ingest(province, token_a, [{"type": "organization", "doc": moved}]).status_code \
        == 403
    zj = national.tokens["prov-zj"]
    stolen = dict(ALERTS["ent-c"][0], event={**ALERTS["ent-c"][0]["event"], "id": "stolen"})
    assert _ingest(national, zj, [{"type": "alert", "doc": stolen}]).status_code == 403
    assert _ingest(national, zj, [{"type": "organization", "doc": {
        "id": "ent-c", "kind": "enterprise", "name": "C", "parent": "prov-zj"}}]).status_code \
        == 403
    assert national.orgs.get("ent-c").parent == "prov-js"  # type: ignore[union-attr]
    # A child may not verify (close) a notice itself.
    notice = province.client("admin").get("/api/notices?target=ent-a").json()["notices"][0]
    step = {"uid": "0" * 32, "notice": notice["id"], "at": time.time(), "org": "ent-a",
            "username": "x", "action": "close", "status": "closed", "body": {}}
    assert _ingest(province, token_a, [{"type": "notice_step", "doc": step}]).status_code \
        == 403
