"""The HTTP API against both stores: authentication, the alert list and its
filters, alert detail, triage with its audit trail, statistics, assets, the
map, sensors, rules and users; every bad request a 4xx with a reason."""

from __future__ import annotations

import copy
import io
import json
import sys
from collections import Counter
from typing import Any

import pytest
from fastapi.testclient import TestClient

from console.cli import main
from tests.console.api.conftest import CAPTURES, PASSWORD

VALID_PACK = """\
rules:
  - id: SITE-MODBUS-001
    title:
      en: Any Modbus write from the historian
      zh-CN: 历史服务器发出Modbus写操作
    severity: medium
    attack: [T0855]
    match:
      protocol: modbus
      access: write
      source.ip: 10.9.9.9
    explain: "{source.ip} wrote"
"""


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The alerts a replay of the same captures prints as JSON lines."""
    out = tmp_path_factory.mktemp("jsonl") / "out.jsonl"
    saved, sys.stderr = sys.stderr, io.StringIO()
    try:
        assert main(["replay", "--format", "jsonl", "--store", "none", "--no-progress",
                     "-o", str(out), *map(str, CAPTURES)]) == 0
    finally:
        sys.stderr = saved
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    alerts = [doc for doc in docs if doc["event"]["kind"] == "alert"]
    assert alerts
    return alerts


def _all_ids(client: TestClient, **params: Any) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        reply = client.get("/api/alerts", params={**params, "size": 7,
                                                  **({"cursor": cursor} if cursor else {})})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        ids.extend(alert["event"]["id"] for alert in body["alerts"])
        cursor = body["cursor"]
        if cursor is None:
            return ids


# -- authentication -------------------------------------------------------------------


def test_every_endpoint_needs_a_session(anonymous: TestClient, app_parts: Any) -> None:
    checked = 0
    for path, operations in app_parts[0].openapi()["paths"].items():
        if path == "/api/auth/login":
            continue
        for method in operations:
            url = path.replace("{alert_id}", "x").replace("{asset_id}", "x").replace(
                "{rule_id}", "x")
            reply = anonymous.request(method, url)
            assert reply.status_code == 401, (method, url, reply.status_code)
            assert reply.json()["detail"]
            checked += 1
    assert checked >= 15


def test_login_logout_and_bearer_tokens(anonymous: TestClient) -> None:
    bad = anonymous.post("/api/auth/login", json={"username": "vic", "password": "nope"})
    assert bad.status_code == 401 and "wrong user name or password" in bad.json()["detail"]
    unknown = anonymous.post("/api/auth/login", json={"username": "who", "password": "x" * 12})
    assert unknown.json() == bad.json()  # never says which was wrong
    good = anonymous.post("/api/auth/login", json={"username": "vic", "password": PASSWORD})
    assert good.status_code == 200
    cookie = good.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    token = good.json()["token"]
    assert anonymous.get("/api/auth/me").json()["role"] == "viewer"
    scripted = TestClient(anonymous.app)
    me = scripted.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json() == {"username": "vic", "role": "viewer", "display_name": "vic",
                         "org": None}
    assert anonymous.post("/api/auth/logout",
                          headers={"X-Requested-With": "icswatch"}).status_code == 204
    after = scripted.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert after.status_code == 401


def test_repeated_failures_lock_the_user_name(app_parts: Any) -> None:
    accounts = app_parts[0].state.accounts
    accounts.add_user("locked", PASSWORD, "viewer")
    client = TestClient(app_parts[0])
    for _ in range(5):
        client.post("/api/auth/login", json={"username": "locked", "password": "wrong-one"})
    refused = client.post("/api/auth/login", json={"username": "locked", "password": PASSWORD})
    assert refused.status_code == 401 and "too many failed logins" in refused.json()["detail"]


def test_cookie_requests_that_change_things_need_the_csrf_header(app_parts: Any) -> None:
    client = TestClient(app_parts[0])
    client.post("/api/auth/login", json={"username": "ana", "password": PASSWORD})
    reply = client.post("/api/alerts/x/actions", json={"action": "acknowledge"})
    assert reply.status_code == 403 and "X-Requested-With" in reply.json()["detail"]


# -- alerts ---------------------------------------------------------------------------


def test_alert_list_holds_every_alert_of_the_replay_once(
        viewer: TestClient, expected: list[dict[str, Any]]) -> None:
    body = viewer.get("/api/alerts").json()
    assert body["total"] == len(expected)
    ids = _all_ids(viewer)
    assert sorted(ids) == sorted(alert["event"]["id"] for alert in expected)
    assert ids == list(reversed(_all_ids(viewer, order="asc")))
    first = body["alerts"][0]
    assert "events" not in first["ics"]["alert"]  # lists are slim
    assert first["ics"]["alert"]["status"] == "open"


def test_filters_narrow_the_list(viewer: TestClient, expected: list[dict[str, Any]]) -> None:
    severities = Counter(alert["ics"]["alert"]["severity"] for alert in expected)
    for severity, count in severities.items():
        body = viewer.get("/api/alerts", params={"severity": severity}).json()
        assert body["total"] == count
        assert {a["ics"]["alert"]["severity"] for a in body["alerts"]} == {severity}
    rule = expected[0]["rule"]["id"]
    by_rule = viewer.get("/api/alerts", params={"rule": rule}).json()
    assert by_rule["total"] == sum(1 for a in expected if a["rule"]["id"] == rule)
    attacker = viewer.get("/api/alerts", params={"asset": "127.0.0.66"}).json()
    assert attacker["total"] == sum(
        1 for a in expected if "127.0.0.66" in (a["source"]["ip"], a["destination"]["ip"]))
    text = viewer.get("/api/alerts", params={"q": "broadcast"}).json()
    assert text["total"] >= 1
    assert all("broadcast" in (a["rule"]["name"] + a["message"]).lower()
               for a in text["alerts"])
    chinese = viewer.get("/api/alerts", params={"q": "广播"}).json()
    assert chinese["total"] == text["total"]
    stamps = sorted(a["@timestamp"] for a in expected)
    window = viewer.get("/api/alerts", params={"start": stamps[0], "end": stamps[-1]}).json()
    assert window["total"] == sum(1 for s in stamps if s < stamps[-1])


@pytest.mark.parametrize(("params", "status", "words"), [
    ({"severity": "severe"}, 400, "severity 'severe'"),
    ({"status": "done"}, 400, "status 'done'"),
    ({"start": "yesterday"}, 400, "start"),
    ({"start": "2026-01-02", "end": "2026-01-01"}, 400, "end is before start"),
    ({"size": 0}, 422, "size"),
    ({"size": 501}, 422, "size"),
    ({"cursor": "garbage"}, 400, "cursor"),
    ({"order": "sideways"}, 422, "order"),
])
def test_malformed_filters_are_refused_with_a_reason(
        viewer: TestClient, params: dict[str, Any], status: int, words: str) -> None:
    reply = viewer.get("/api/alerts", params=params)
    assert reply.status_code == status, reply.text
    assert words in reply.json()["detail"]


def test_alert_detail_has_its_events(viewer: TestClient,
                                     expected: list[dict[str, Any]]) -> None:
    wanted = expected[0]
    body = viewer.get(f"/api/alerts/{wanted['event']['id']}").json()
    alert = body["alert"]
    assert alert["rule"]["id"] == wanted["rule"]["id"]
    assert alert["ics"]["alert"]["events"] == wanted["ics"]["alert"]["events"]
    assert body["audit"] == []
    missing = viewer.get("/api/alerts/0000000000000000dead")
    assert missing.status_code == 404 and "0000000000000000dead" in missing.json()["detail"]
    assert viewer.get("/api/alerts/" + "x" * 300).status_code == 404
    assert viewer.get("/api/nothing-here").status_code == 404


def test_triage_round_trip_with_audit_trail(
        analyst: TestClient, viewer: TestClient, expected: list[dict[str, Any]]) -> None:
    alert_id = expected[-1]["event"]["id"]
    url = f"/api/alerts/{alert_id}/actions"
    assert viewer.post(url, json={"action": "acknowledge"}).status_code == 403
    acknowledged = analyst.post(url, json={"action": "acknowledge"})
    assert acknowledged.status_code == 200, acknowledged.text
    assert acknowledged.json()["alert"]["ics"]["alert"]["status"] == "acknowledged"
    again = analyst.post(url, json={"action": "acknowledge"})
    assert again.status_code == 409 and "acknowledged" in again.json()["detail"]
    listed = viewer.get("/api/alerts", params={"status": "acknowledged"}).json()
    assert [a["event"]["id"] for a in listed["alerts"]] == [alert_id]
    assert analyst.post(url, json={"action": "assign", "assignee": "nobody"}).status_code == 400
    assigned = analyst.post(url, json={"action": "assign", "assignee": "ana"}).json()
    assert assigned["alert"]["ics"]["alert"]["assignee"] == "ana"
    mine = viewer.get("/api/alerts", params={"assignee": "ana"}).json()
    assert mine["total"] == 1
    assert analyst.post(url, json={"action": "comment"}).status_code == 400
    analyst.post(url, json={"action": "comment", "comment": "operator confirms a test"})
    no_reason = analyst.post(url, json={"action": "close"})
    assert no_reason.status_code == 400 and "reason" in no_reason.json()["detail"]
    closed = analyst.post(url, json={"action": "close", "reason": "planned maintenance"}).json()
    assert closed["alert"]["ics"]["alert"]["status"] == "closed"
    assert closed["alert"]["ics"]["alert"]["resolution"] == "planned maintenance"
    reopened = analyst.post(url, json={"action": "reopen"}).json()
    assert reopened["alert"]["ics"]["alert"]["status"] == "open"
    fp = analyst.post(url, json={"action": "false_positive", "reason": "lab traffic"}).json()
    assert fp["alert"]["ics"]["alert"]["status"] == "false_positive"
    audit = viewer.get(f"/api/alerts/{alert_id}").json()["audit"]
    assert [entry["action"] for entry in audit] == [
        "acknowledge", "assign", "comment", "close", "reopen", "false_positive"]
    assert {entry["user"] for entry in audit} == {"ana"}
    assert audit[2]["comment"] == "operator confirms a test"
    assert audit[3]["reason"] == "planned maintenance"
    assert all(entry["at"].endswith("Z") for entry in audit)
    bad = analyst.post(url, json={"action": "explode"})
    assert bad.status_code == 422 and "action" in bad.json()["detail"]
    unknown = analyst.post("/api/alerts/0000000000000000dead/actions",
                           json={"action": "acknowledge"})
    assert unknown.status_code == 404


# -- statistics -----------------------------------------------------------------------


def test_overview_adds_up(viewer: TestClient, expected: list[dict[str, Any]]) -> None:
    body = viewer.get("/api/stats/overview").json()
    assert body["total"] == len(expected)
    assert body["by_severity"] == {
        severity: sum(1 for a in expected if a["ics"]["alert"]["severity"] == severity)
        for severity in ("low", "medium", "high", "critical")}
    assert sum(sum(b["counts"].values()) for b in body["histogram"]["buckets"]) == len(expected)
    assert len(body["histogram"]["buckets"]) <= 61
    techniques = Counter(t for a in expected for t in a["threat"]["technique"]["id"])
    top = body["top_techniques"][0]
    assert top["count"] == max(techniques.values()) and top["name"] and top["name_zh"]
    rules = Counter(a["rule"]["id"] for a in expected)
    assert body["top_rules"][0]["count"] == max(rules.values())
    assert body["top_rules"][0]["name"]
    assert all(a["ics"]["alert"]["severity"] in ("high", "critical")
               for a in body["newest_critical"])
    critical = viewer.get("/api/stats/overview", params={"severity": "low"}).json()
    assert critical["newest_critical"] == []


def test_histogram_and_top(viewer: TestClient, expected: list[dict[str, Any]]) -> None:
    hourly = viewer.get("/api/stats/histogram", params={"interval": "3600"}).json()
    assert hourly["interval"] == 3600
    assert sum(sum(b["counts"].values()) for b in hourly["buckets"]) == len(expected)
    top = viewer.get("/api/stats/top", params={"field": "network.protocol"}).json()
    assert top["buckets"] == [{"value": "modbus", "count": len(expected)}]
    assert viewer.get("/api/stats/top", params={"field": "message"}).status_code == 400
    assert viewer.get("/api/stats/histogram", params={"interval": "0"}).status_code == 400
    assert viewer.get("/api/stats/histogram", params={"interval": "soon"}).status_code == 400
    tiny = viewer.get("/api/stats/histogram",
                      params={"interval": "1", "start": "2000-01-01", "end": "2030-01-01"})
    assert tiny.status_code == 400 and "buckets" in tiny.json()["detail"]


# -- assets, map, sensors -------------------------------------------------------------


def test_assets_map_and_sensors(viewer: TestClient, expected: list[dict[str, Any]]) -> None:
    assets = viewer.get("/api/assets").json()
    by_ip = {asset["ip"]: asset for asset in assets["assets"]}
    assert {"127.0.0.1", "127.0.0.66"} <= set(by_ip)
    attacker = by_ip["127.0.0.66"]
    assert "modbus" in attacker["protocols"]["spoken"]
    assert attacker["alerts"] == sum(
        1 for a in expected if "127.0.0.66" in (a["source"]["ip"], a["destination"]["ip"]))
    assert "plc" in by_ip["127.0.0.1"]["roles"]
    assert by_ip["127.0.0.1"]["vendor"] == "ICSWatch Test Vendor"  # Modbus device id
    assert by_ip["127.0.0.1"]["identity"]["product"] == "IW-PLC-1000"
    # 127.0.0.1 is source and destination of the same alerts (loopback): counted exactly.
    assert by_ip["127.0.0.1"]["alerts"] == sum(
        1 for a in expected if "127.0.0.1" in (a["source"]["ip"], a["destination"]["ip"]))
    assert by_ip["127.0.0.1"]["open_alerts"] <= by_ip["127.0.0.1"]["alerts"]
    assert viewer.get("/api/assets", params={"role": "plc"}).json()["total"] >= 1
    assert viewer.get("/api/assets", params={"q": "127.0.0.66"}).json()["total"] == 1
    detail = viewer.get("/api/assets/127.0.0.66").json()
    assert detail["communications"] and detail["alerts"]
    assert detail["history"][0]["change"] == "first_seen"
    assert viewer.get("/api/assets/10.1.2.3").status_code == 404
    graph = viewer.get("/api/map").json()
    assert {node["id"] for node in graph["nodes"]} >= {"127.0.0.1", "127.0.0.66"}
    edge = next(e for e in graph["edges"] if e["source"] == "127.0.0.66")
    assert edge["protocol"] == "modbus" and edge["events"] > 0 and edge["alerts"] > 0
    assert viewer.get("/api/map", params={"protocol": "dnp3"}).json() == {
        "nodes": [], "edges": []}
    sensors = viewer.get("/api/sensors").json()["sensors"]
    assert [s["name"] for s in sensors] == ["test-sensor"]
    assert sensors[0]["stats"]["packets"] > 0 and sensors[0]["stats"]["alerts"] == len(expected)
    assert sensors[0]["status"] == "ok"


# -- rules and users ------------------------------------------------------------------


def test_rules_list_switch_and_upload(admin: TestClient, analyst: TestClient) -> None:
    rules = admin.get("/api/rules").json()
    ids = [rule["id"] for rule in rules["rules"]]
    assert "ICSW-MODBUS-001" in ids and rules["errors"] == []
    assert analyst.post("/api/rules/ICSW-MODBUS-001/disable").status_code == 403
    off = admin.post("/api/rules/ICSW-MODBUS-001/disable").json()
    assert off["enabled"] is False and off["active"] is False
    listed = {r["id"]: r for r in admin.get("/api/rules").json()["rules"]}
    assert listed["ICSW-MODBUS-001"]["enabled"] is False
    assert admin.post("/api/rules/ICSW-MODBUS-001/enable").json()["enabled"] is True
    assert admin.post("/api/rules/NOPE/enable").status_code == 404
    added = admin.post("/api/rules/packs",
                       files={"file": ("site.yml", VALID_PACK.encode(), "application/yaml")})
    assert added.status_code == 201, added.text
    assert added.json() == {"pack": "site.yml", "rules": 1}
    assert "SITE-MODBUS-001" in [r["id"] for r in admin.get("/api/rules").json()["rules"]]
    broken = VALID_PACK.replace("severity: medium", "severity: apocalyptic")
    refused = admin.post("/api/rules/packs", files={"file": ("bad.yml", broken.encode())})
    assert refused.status_code == 400
    assert refused.json()["detail"].startswith("bad.yml line 6: rule SITE-MODBUS-001: severity")
    duplicate = admin.post("/api/rules/packs", files={"file": ("again.yml",
                                                               VALID_PACK.encode())})
    assert duplicate.status_code == 400 and "duplicate" in duplicate.json()["detail"]
    huge = admin.post("/api/rules/packs", files={"file": ("big.yml", b"#" * ((1 << 20) + 1))})
    assert huge.status_code == 413
    badname = admin.post("/api/rules/packs", files={"file": ("../x.yml", VALID_PACK.encode())})
    assert badname.status_code == 400
    binary = admin.post("/api/rules/packs", files={"file": ("b.yml", b"\xff\xfe\x00")})
    assert binary.status_code == 400 and "UTF-8" in binary.json()["detail"]
    assert admin.post("/api/rules/packs").status_code == 422


def test_users(admin: TestClient, analyst: TestClient) -> None:
    assert analyst.get("/api/users").status_code == 403
    made = admin.post("/api/users", json={"username": "olga", "password": "long enough pw",
                                          "role": "analyst"})
    assert made.status_code == 201 and made.json()["role"] == "analyst"
    weak = admin.post("/api/users", json={"username": "pat", "password": "short",
                                          "role": "viewer"})
    assert weak.status_code == 400 and "10 characters" in weak.json()["detail"]
    role = admin.post("/api/users", json={"username": "pat", "password": "long enough pw",
                                          "role": "king"})
    assert role.status_code == 400 and "role" in role.json()["detail"]
    names = [u["username"] for u in admin.get("/api/users").json()["users"]]
    assert "olga" in names


def test_openapi_documents_the_api(anonymous: TestClient) -> None:
    schema = anonymous.get("/api/openapi.json").json()
    assert {"/api/alerts", "/api/alerts/{alert_id}/actions", "/api/stats/overview",
            "/api/map", "/api/rules/packs"} <= set(schema["paths"])


def test_web_ui_is_served_without_external_assets(anonymous: TestClient) -> None:
    page = anonymous.get("/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert "http://" not in page.text and "https://" not in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]


# Last in the module: it adds an alert the counts above do not expect.
def test_live_feed_sends_new_alerts(viewer: TestClient, alert_store: Any,
                                    expected: list[dict[str, Any]]) -> None:
    fresh = copy.deepcopy(expected[0])
    fresh["event"]["id"] = "live0000000000000001"
    with viewer.stream("GET", "/api/live") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines) == ": connected"
        alert_store.write_alerts([fresh])
        alert_store.flush()
        received = None
        for line in lines:
            if line.startswith("data: "):
                received = json.loads(line[len("data: "):])
                break
    assert received is not None and received["event"]["id"] == "live0000000000000001"
    assert "events" not in received["ics"]["alert"]
