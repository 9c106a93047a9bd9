"""The notice loop end to end across real consoles: a province (and the
nation) issues a notice, it travels down to the enterprise, the enterprise
answers, the issuer verifies, reopens and closes; overdue notices are
flagged at both ends; every step is in the trail at every tier."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.tiers import Chain, Console, build_chain, wait_until


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    built = build_chain(tmp_path, enterprises=("ent-a",))
    try:
        yield built
    finally:
        built.stop()


def _notice(console: Console, notice_id: str) -> dict[str, Any] | None:
    for notice in console.call("GET", "/api/notices")["notices"]:
        if notice["id"] == notice_id:
            return dict(notice)
    return None


def _status_at(console: Console, notice_id: str, status: str) -> bool:
    notice = _notice(console, notice_id)
    return notice is not None and notice["status"] == status


def _step(console: Console, notice_id: str, action: str, **body: str) -> dict[str, Any]:
    answer: dict[str, Any] = console.call("POST", f"/api/notices/{notice_id}/steps",
                                          {"action": action, **body})
    return answer


def test_province_notice_round_trip_with_reopen(chain: Chain) -> None:
    province, enterprise = chain.province, chain.enterprises["ent-a"]
    issued = province.call("POST", "/api/notices", {
        "target": "ent-a", "title": "Unauthorised Modbus writes to PLC 10.0.0.5",
        "required_action": "Restrict write access to the engineering station",
        "deadline": time.time() + 7 * 86400})
    notice_id = issued["id"]
    assert issued["status"] == "issued"
    wait_until(lambda: _status_at(enterprise, notice_id, "issued"), "the notice at ent-a")
    # The enterprise may not verify its own work; the province may not rectify.
    assert enterprise.status("POST", f"/api/notices/{notice_id}/steps",
                             {"action": "close"}) == 403
    assert province.status("POST", f"/api/notices/{notice_id}/steps",
                           {"action": "rectify", "evidence": "x"}) == 403
    _step(enterprise, notice_id, "accept")
    assert enterprise.status("POST", f"/api/notices/{notice_id}/steps",
                             {"action": "rectify"}) == 422  # evidence is required
    _step(enterprise, notice_id, "rectify", evidence="ACL on the PLC; change ticket 4711")
    wait_until(lambda: _status_at(province, notice_id, "rectified"), "rectified at province")
    _step(province, notice_id, "reopen", text="The ACL still allows 10.0.0.0/8")
    wait_until(lambda: _status_at(enterprise, notice_id, "reopened"), "reopened at ent-a")
    _step(enterprise, notice_id, "rectify", evidence="ACL narrowed to 10.0.0.7/32")
    wait_until(lambda: _status_at(province, notice_id, "rectified"), "rectified again")
    _step(province, notice_id, "close", text="Verified on site")
    wait_until(lambda: _status_at(enterprise, notice_id, "closed"), "closed at ent-a")
    trails = {}
    for console in (province, enterprise):
        detail = console.call("GET", f"/api/notices/{notice_id}")
        trails[console.name] = [(s["uid"], s["action"], s["status"]) for s in detail["steps"]]
    assert trails["prov-zj"] == trails["ent-a"]
    assert [action for _, action, _ in trails["prov-zj"]] == [
        "issue", "accept", "rectify", "reopen", "rectify", "close"]


def test_national_notice_travels_through_the_province_and_overdue_is_flagged(
        chain: Chain) -> None:
    national, province = chain.national, chain.province
    enterprise = chain.enterprises["ent-a"]
    wait_until(lambda: any(o["id"] == "ent-a" for o in
                           national.call("GET", "/api/orgs")["organizations"]),
               "the nation to learn of ent-a")
    issued = national.call("POST", "/api/notices", {
        "target": "ent-a", "title": "Patch CVE on the HMI",
        "required_action": "Install the vendor patch", "deadline": time.time() + 4})
    notice_id = issued["id"]
    wait_until(lambda: _notice(enterprise, notice_id) is not None, "the nation's notice at ent-a")
    assert _status_at(province, notice_id, "issued")
    _step(enterprise, notice_id, "start", text="patch window booked")
    wait_until(lambda: _status_at(national, notice_id, "in_progress"), "progress at the nation")
    wait_until(lambda: all((_notice(c, notice_id) or {}).get("overdue")
                           for c in (national, province, enterprise)),
               "the overdue flag at every tier", timeout=30)
    overdue = national.call("GET", "/api/notices?overdue=true")["notices"]
    assert [n["id"] for n in overdue] == [notice_id]
    rollup = national.call("GET", "/api/rollup")
    ent_a = next(e for e in rollup["enterprises"] if e["id"] == "ent-a")
    assert ent_a["notices_overdue"] == 1
    assert rollup["provinces"][0]["id"] == "prov-zj" and rollup["provinces"][0]["risk"] == "high"
    _step(enterprise, notice_id, "rectify", evidence="patched; version 2.4.1")
    wait_until(lambda: _status_at(national, notice_id, "rectified"), "rectified at the nation")
    assert not _notice(national, notice_id)["overdue"]  # type: ignore[index]
