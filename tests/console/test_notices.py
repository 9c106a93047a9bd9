"""Notices and their rectification loop: a province issues, its enterprise
accepts, works and rectifies, the province closes or reopens; the steps
travel between a province console and an enterprise console; the API says
why it refuses. Real console databases in tmp_path throughout."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from console.accounts import Accounts, User
from console.notices import (
    NoticeBook,
    NoticeConflict,
    NoticeError,
    NoticeForbidden,
    NoticeNotFound,
)
from console.routes import notices as notice_routes
from console.state import ConsoleState
from console.tiers import Organizations, TierConfig

PASSWORD = "correct horse battery"
DAY = 86400.0


@dataclass
class Console:
    state: ConsoleState
    orgs: Organizations
    accounts: Accounts
    book: NoticeBook
    users: dict[str, User]


def _console(path: Path, tier: TierConfig, children: tuple[str, ...],
             users: dict[str, tuple[str, str | None]]) -> Console:
    state = ConsoleState(path)
    orgs = Organizations(state, tier)
    for child in children:
        orgs.add_child(child, child.upper())
    accounts = Accounts(state)
    added = {name: accounts.add_user(name, PASSWORD, role, org=org)
             for name, (role, org) in users.items()}
    return Console(state, orgs, accounts, NoticeBook(state, orgs), added)


@pytest.fixture
def province(tmp_path: Path) -> Iterator[Console]:
    console = _console(
        tmp_path / "province.db", TierConfig("province", "prov-zj", "Zhejiang"),
        ("ent-a", "ent-b"),
        {"zhao": ("analyst", None), "qian": ("viewer", None),
         "a-ana": ("analyst", "ent-a"), "a-vic": ("viewer", "ent-a"),
         "b-ana": ("analyst", "ent-b")})
    yield console
    console.state.close()


@pytest.fixture
def enterprise(tmp_path: Path) -> Iterator[Console]:
    console = _console(
        tmp_path / "enterprise.db", TierConfig("enterprise", "ent-a", "A", province="prov-zj"),
        (), {"li": ("analyst", None)})
    yield console
    console.state.close()


def _issue(console: Console, target: str = "ent-a", user: str = "zhao") -> dict[str, Any]:
    return console.book.issue(
        console.users[user], target=target, title="Close the open Modbus write path",
        required_action="Block writes from the office VLAN to PLC 10.0.0.5",
        deadline=time.time() + 7 * DAY, alert_id="alert-1", asset="10.0.0.5")


def _steps(console: Console, notice_id: str, user: str) -> list[tuple[str, str, str]]:
    found = console.book.get(console.users[user], notice_id)["steps"]
    return [(step["action"], step["status"], step["org"]) for step in found]


def _log_size(console: Console) -> int:
    return int(console.state.rows("SELECT COUNT(*) FROM notice_log")[0][0])


# -- the loop at one console -----------------------------------------------------------


def test_issue_accept_start_rectify_close(province: Console) -> None:
    book, users = province.book, province.users
    notice = _issue(province)
    assert (notice["issuer"], notice["target"], notice["status"]) == \
        ("prov-zj", "ent-a", "issued")
    assert notice["overdue"] is False and len(notice["id"]) == 32

    assert book.act(users["a-ana"], notice["id"], "accept")["status"] == "accepted"
    assert book.act(users["a-ana"], notice["id"], "start")["status"] == "in_progress"
    with pytest.raises(NoticeError, match="evidence is required"):
        book.act(users["a-ana"], notice["id"], "rectify", evidence="  ")
    rectified = book.act(users["a-ana"], notice["id"], "rectify",
                         evidence="ACL 120 on the office switch; screenshot attached")
    assert rectified["status"] == "rectified"
    assert book.act(users["zhao"], notice["id"], "close", text="verified")["status"] == "closed"

    assert _steps(province, notice["id"], "zhao") == [
        ("issue", "issued", "prov-zj"), ("accept", "accepted", "ent-a"),
        ("start", "in_progress", "ent-a"), ("rectify", "rectified", "ent-a"),
        ("close", "closed", "prov-zj")]
    detail = book.get(users["a-vic"], notice["id"])
    assert detail["steps"][3]["evidence"] == "ACL 120 on the office switch; screenshot attached"
    assert detail["steps"][3]["username"] == "a-ana"
    assert detail["steps"][0]["came_from"] is None
    assert detail["title"] == "Close the open Modbus write path"


def test_reopen_then_rectify_again(province: Console) -> None:
    book, users = province.book, province.users
    notice_id = _issue(province)["id"]
    book.act(users["a-ana"], notice_id, "rectify", evidence="patched")
    with pytest.raises(NoticeError, match="text is required"):
        book.act(users["zhao"], notice_id, "reopen")
    assert book.act(users["zhao"], notice_id, "reopen",
                    text="the write still succeeds")["status"] == "reopened"
    assert book.act(users["a-ana"], notice_id, "accept")["status"] == "accepted"
    assert book.act(users["a-ana"], notice_id, "rectify",
                    evidence="rule moved above the permit")["status"] == "rectified"
    assert book.act(users["zhao"], notice_id, "close")["status"] == "closed"
    assert book.act(users["zhao"], notice_id, "reopen",
                    text="seen again in the capture")["status"] == "reopened"
    actions = [action for action, _, _ in _steps(province, notice_id, "zhao")]
    assert actions == ["issue", "rectify", "reopen", "accept", "rectify", "close", "reopen"]
    reopen = book.get(users["zhao"], notice_id)["steps"][2]
    assert reopen["text"] == "the write still succeeds"


def test_comments_from_either_side_keep_the_status(province: Console) -> None:
    book, users = province.book, province.users
    notice_id = _issue(province)["id"]
    book.act(users["a-ana"], notice_id, "accept")
    assert book.act(users["zhao"], notice_id, "comment", text="any news?")["status"] == \
        "accepted"
    assert book.act(users["a-ana"], notice_id, "comment", text="parts ordered")["status"] == \
        "accepted"
    with pytest.raises(NoticeError, match="text is required"):
        book.act(users["a-ana"], notice_id, "comment")
    assert _steps(province, notice_id, "zhao")[-2:] == [
        ("comment", "accepted", "prov-zj"), ("comment", "accepted", "ent-a")]


def test_overdue_flag_filter_and_counts(province: Console) -> None:
    book, users = province.book, province.users
    late = _issue(province)["id"]
    on_time = _issue(province)["id"]
    _issue(province, target="ent-b")
    with province.state.transaction() as db:
        db.execute("UPDATE notices SET deadline = ? WHERE id = ?", (time.time() - 60, late))

    assert book.get(users["zhao"], late)["overdue"] is True
    assert book.get(users["zhao"], on_time)["overdue"] is False
    assert [n["id"] for n in book.list(users["zhao"], overdue=True)] == [late]
    assert late not in {n["id"] for n in book.list(users["zhao"], overdue=False)}
    assert book.counts_by_target() == {"ent-a": {"open": 2, "overdue": 1},
                                       "ent-b": {"open": 1, "overdue": 0}}

    book.act(users["a-ana"], late, "rectify", evidence="done, late")
    assert book.get(users["zhao"], late)["overdue"] is False
    assert book.counts_by_target()["ent-a"] == {"open": 2, "overdue": 0}
    book.act(users["zhao"], late, "close")
    assert book.counts_by_target()["ent-a"] == {"open": 1, "overdue": 0}
    assert [n["id"] for n in book.list(users["zhao"], status="closed")] == [late]
    with pytest.raises(NoticeError, match="status 'done'"):
        book.list(users["zhao"], status="done")


def test_lists_show_each_organisation_only_its_own(province: Console) -> None:
    book, users = province.book, province.users
    for_a = _issue(province)["id"]
    for_b = _issue(province, target="ent-b")["id"]
    assert {n["id"] for n in book.list(users["zhao"])} == {for_a, for_b}
    assert {n["id"] for n in book.list(users["qian"])} == {for_a, for_b}
    assert [n["id"] for n in book.list(users["a-vic"])] == [for_a]
    assert [n["id"] for n in book.list(users["b-ana"])] == [for_b]
    assert book.list(users["b-ana"], target="ent-a") == []
    # The most recently updated comes first.
    book.act(users["a-ana"], for_a, "accept")
    assert [n["id"] for n in book.list(users["zhao"])] == [for_a, for_b]
    for other, notice_id in (("b-ana", for_a), ("a-ana", for_b), ("a-vic", for_b)):
        with pytest.raises(NoticeNotFound):
            book.get(users[other], notice_id)
    with pytest.raises(NoticeNotFound):
        book.get(users["zhao"], "0" * 32)


# -- refusals --------------------------------------------------------------------------


def test_only_a_province_issues_and_only_below_itself(
        province: Console, enterprise: Console) -> None:
    with pytest.raises(NoticeForbidden, match="only a province or the national centre"):
        _issue(enterprise, user="li")
    with pytest.raises(NoticeForbidden, match="only a province or the national centre"):
        _issue(province, user="a-ana")
    with pytest.raises(NoticeForbidden, match="analyst role"):
        _issue(province, user="qian")
    for target in ("prov-zj", "ent-z", "national"):
        with pytest.raises(NoticeForbidden, match="is not an enterprise under prov-zj"):
            _issue(province, target=target)
    assert province.book.list(province.users["zhao"]) == []


def test_a_province_at_the_national_centre_reaches_only_its_enterprises(
        tmp_path: Path) -> None:
    national = _console(tmp_path / "national.db", TierConfig("national", "cn", "China"),
                        ("prov-zj", "prov-js"),
                        {"wang": ("analyst", None), "zj-ana": ("analyst", "prov-zj")})
    national.orgs.accept_from_child(
        "prov-zj", {"id": "ent-a", "kind": "enterprise", "parent": "prov-zj", "name": "A"})
    national.orgs.accept_from_child(
        "prov-js", {"id": "ent-j", "kind": "enterprise", "parent": "prov-js", "name": "J"})
    assert _issue(national, user="zj-ana")["issuer"] == "prov-zj"
    with pytest.raises(NoticeForbidden, match="not an enterprise under prov-zj"):
        _issue(national, target="ent-j", user="zj-ana")
    assert _issue(national, target="ent-j", user="wang")["issuer"] == "cn"
    with pytest.raises(NoticeError, match="notices go to enterprises; prov-js is province"):
        _issue(national, target="prov-js", user="wang")
    national.state.close()


def test_bad_values_are_refused(province: Console) -> None:
    zhao = province.users["zhao"]
    good: dict[str, Any] = {"target": "ent-a", "title": "t", "required_action": "a",
                            "deadline": time.time() + DAY}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"deadline": time.time() - 1}, "has passed"),
        ({"deadline": time.time() + 20 * 366 * DAY}, "ten years"),
        ({"deadline": float("nan")}, "not a time"),
        ({"title": "   "}, "title is required"),
        ({"title": "x" * 201}, "longer than 200"),
        ({"required_action": ""}, "required action is required"),
        ({"required_action": "x" * 4001}, "longer than 4000"),
        ({"asset": "x" * 201}, "asset is longer"),
    ]
    for change, reason in cases:
        with pytest.raises(NoticeError, match=reason):
            province.book.issue(zhao, **{**good, **change})
    assert province.book.list(zhao) == []


def test_each_side_takes_only_its_own_steps(province: Console) -> None:
    book, users = province.book, province.users
    notice_id = _issue(province)["id"]
    # Another enterprise does not even learn the notice exists.
    for action in ("accept", "start", "rectify", "comment", "close"):
        with pytest.raises(NoticeForbidden) as refused:
            book.act(users["b-ana"], notice_id, action, text="x", evidence="x")
        assert isinstance(refused.value, NoticeNotFound)
    with pytest.raises(NoticeForbidden, match="only the enterprise ent-a may rectify"):
        book.act(users["zhao"], notice_id, "rectify", evidence="done by us")
    with pytest.raises(NoticeForbidden, match="only the enterprise ent-a may accept"):
        book.act(users["zhao"], notice_id, "accept")
    with pytest.raises(NoticeForbidden, match="analyst role"):
        book.act(users["a-vic"], notice_id, "accept")
    book.act(users["a-ana"], notice_id, "rectify", evidence="done")
    with pytest.raises(NoticeForbidden, match="only the issuer prov-zj may close"):
        book.act(users["a-ana"], notice_id, "close")
    with pytest.raises(NoticeForbidden, match="only the issuer prov-zj may reopen"):
        book.act(users["a-ana"], notice_id, "reopen", text="not done after all")
    with pytest.raises(NoticeForbidden, match="analyst role"):
        book.act(users["qian"], notice_id, "close")
    with pytest.raises(NoticeError, match="step 'issue' is not one of"):
        book.act(users["zhao"], notice_id, "issue")
    assert book.get(users["zhao"], notice_id)["status"] == "rectified"


def test_a_step_that_does_not_fit_the_status_is_a_conflict(province: Console) -> None:
    book, users = province.book, province.users
    notice_id = _issue(province)["id"]
    with pytest.raises(NoticeConflict, match="the notice is issued; close needs it rectified"):
        book.act(users["zhao"], notice_id, "close")
    with pytest.raises(NoticeConflict, match="the notice is issued; reopen needs it"):
        book.act(users["zhao"], notice_id, "reopen", text="why")
    book.act(users["a-ana"], notice_id, "accept")
    with pytest.raises(NoticeConflict, match="the notice is accepted; accept needs it"):
        book.act(users["a-ana"], notice_id, "accept")
    book.act(users["a-ana"], notice_id, "rectify", evidence="done")
    book.act(users["zhao"], notice_id, "close")
    with pytest.raises(NoticeConflict, match="the notice is closed; rectify needs it"):
        book.act(users["a-ana"], notice_id, "rectify", evidence="again")
    assert len(_steps(province, notice_id, "zhao")) == 4


# -- relaying between the tiers ----------------------------------------------------------


def _pull(parent: Console, child: str, into: Console, after: int) -> tuple[int, int]:
    """What the child's uplink does: fetch steps and apply them; (applied, cursor)."""
    steps, cursor = parent.book.steps_for_child(child, after)
    applied = sum(into.book.apply(step, came_from=parent.orgs.own, from_parent=True)
                  for step in steps)
    return applied, cursor


def _push(child: Console, parent: Console, after: int) -> tuple[int, int]:
    steps, cursor = child.book.steps_to_forward(after)
    applied = sum(parent.book.apply(step, came_from=child.orgs.own, from_parent=False)
                  for step in steps)
    return applied, cursor


def test_steps_travel_down_and_up_once(province: Console, enterprise: Console) -> None:
    notice_id = _issue(province)["id"]
    _issue(province, target="ent-b")
    li, zhao = enterprise.users["li"], province.users["zhao"]

    assert _pull(province, "ent-a", enterprise, 0) == (1, 2)
    here = enterprise.book.get(li, notice_id)
    assert (here["status"], here["issuer"], here["deadline"]) == \
        ("issued", "prov-zj", province.book.get(zhao, notice_id)["deadline"])
    assert here["steps"][0]["came_from"] == "prov-zj"
    assert len(enterprise.book.list(li)) == 1  # not ent-b's notice
    assert _pull(province, "ent-a", enterprise, 0) == (0, 2)  # again: nothing new

    enterprise.book.act(li, notice_id, "accept")
    enterprise.book.act(li, notice_id, "rectify", evidence="firewall rule 17")
    steps, up_cursor = enterprise.book.steps_to_forward(0)
    assert [step["action"] for step in steps] == ["accept", "rectify"]
    assert _push(enterprise, province, 0) == (2, up_cursor)
    assert _push(enterprise, province, 0) == (0, up_cursor)
    assert province.book.get(zhao, notice_id)["status"] == "rectified"
    assert [(s["action"], s["came_from"]) for s in province.book.get(zhao, notice_id)["steps"]] \
        == [("issue", None), ("accept", "ent-a"), ("rectify", "ent-a")]

    province.book.act(zhao, notice_id, "close", text="checked on site")
    steps, _ = province.book.steps_for_child("ent-a", 2)
    assert [step["action"] for step in steps] == ["close"]  # ent-a's own steps not echoed
    assert _pull(province, "ent-a", enterprise, 2)[0] == 1
    assert enterprise.book.get(li, notice_id)["status"] == "closed"
    # What came down from the parent is never sent back up.
    assert enterprise.book.steps_to_forward(up_cursor)[0] == []
    uids = {tier: [s["uid"] for s in c.book.get(c.users[u], notice_id)["steps"]]
            for tier, c, u in (("p", province, "zhao"), ("e", enterprise, "li"))}
    assert uids["p"] == uids["e"] and len(uids["p"]) == 4


def test_notices_issued_here_are_not_forwarded_up(province: Console) -> None:
    notice_id = _issue(province)["id"]
    province.book.act(province.users["a-ana"], notice_id, "accept")
    assert province.book.steps_to_forward(0) == ([], 2)
    assert province.book.steps_to_forward(2) == ([], 2)


def test_a_comment_from_the_parent_does_not_undo_a_step(
        province: Console, enterprise: Console) -> None:
    notice_id = _issue(province)["id"]
    _pull(province, "ent-a", enterprise, 0)
    enterprise.book.act(enterprise.users["li"], notice_id, "rectify", evidence="done")
    province.book.act(province.users["zhao"], notice_id, "comment", text="status?")
    _pull(province, "ent-a", enterprise, 1)
    assert enterprise.book.get(enterprise.users["li"], notice_id)["status"] == "rectified"


def _child_step(notice_id: str, **change: Any) -> dict[str, Any]:
    step: dict[str, Any] = {
        "uid": "ab" * 16, "notice": notice_id, "at": time.time(), "org": "ent-a",
        "username": "li", "action": "rectify", "status": "rectified",
        "body": {"text": None, "evidence": "done"}}
    return {**step, **change}


def test_forged_child_steps_are_refused(province: Console) -> None:
    book, zhao = province.book, province.users["zhao"]
    for_a = _issue(province)["id"]
    for_b = _issue(province, target="ent-b")["id"]
    refused: list[tuple[dict[str, Any], str]] = [
        (_child_step(for_a, action="close", status="closed"), "may not send close steps"),
        (_child_step(for_a, action="reopen", status="reopened",
                     body={"text": "x"}), "may not send reopen steps"),
        (_child_step(for_b), "a notice to ent-b, which is not under ent-a"),
        (_child_step(for_a, org="ent-b"), "taken by ent-b"),
        (_child_step(for_a, org="prov-zj"), "taken by prov-zj"),
        (_child_step("cd" * 16), "unknown here"),
    ]
    for step, reason in refused:
        with pytest.raises(NoticeForbidden, match=reason):
            book.apply(step, came_from="ent-a", from_parent=False)
    issue = book.steps_for_child("ent-a", 0)[0][0]
    with pytest.raises(NoticeForbidden, match="may not send issue steps"):
        book.apply({**issue, "uid": "ef" * 16}, came_from="ent-a", from_parent=False)

    malformed: list[tuple[dict[str, Any], str]] = [
        (_child_step(for_a, uid="not-hex"), "step uid"),
        (_child_step(for_a, action="delete"), "step action 'delete'"),
        (_child_step(for_a, status="fixed"), "step status 'fixed'"),
        (_child_step(for_a, status="closed"), "a rectify step leaves a notice rectified"),
        (_child_step(for_a, at="yesterday"), "step at"),
        (_child_step(for_a, body={"evidence": ""}), "evidence is required"),
        (_child_step(for_a, body="done"), "step body"),
        (_child_step(for_a, username="li; drop"), "step username"),
    ]
    for step, reason in malformed:
        with pytest.raises(NoticeError, match=reason):
            book.apply(step, came_from="ent-a", from_parent=False)
    assert [n["status"] for n in book.list(zhao)] == ["issued", "issued"]
    assert _log_size(province) == 2

    assert book.apply(_child_step(for_a), came_from="ent-a", from_parent=False) is True
    assert book.get(zhao, for_a)["status"] == "rectified"


def test_a_parent_sends_notices_only_for_this_console(
        province: Console, enterprise: Console) -> None:
    for_b = _issue(province, target="ent-b")["id"]
    issue = province.book.steps_for_child("ent-b", 0)[0][0]
    with pytest.raises(NoticeForbidden, match="not under ent-a"):
        enterprise.book.apply(issue, came_from="prov-zj", from_parent=True)
    stray = _child_step(for_b, org="ent-b", action="comment", status="issued",
                        body={"text": "hello"})
    with pytest.raises(NoticeForbidden, match="unknown here"):
        enterprise.book.apply(stray, came_from="prov-zj", from_parent=True)
    assert _log_size(enterprise) == 0


# -- the API -----------------------------------------------------------------------------


@pytest.fixture
def api(province: Console) -> FastAPI:
    app = FastAPI()
    app.include_router(notice_routes.router)
    app.state.accounts = province.accounts
    app.state.orgs = province.orgs
    app.state.notices = province.book
    return app


def _client(app: FastAPI, accounts: Accounts, username: str | None) -> TestClient:
    client = TestClient(app, raise_server_exceptions=False)
    if username is not None:
        token = accounts.login(username, PASSWORD).token
        client.headers["Authorization"] = f"Bearer {token}"
    return client


def test_api_answers_with_status_codes_and_reasons(api: FastAPI, province: Console) -> None:
    zhao, qian, a_ana, b_ana = (_client(api, province.accounts, name)
                                for name in ("zhao", "qian", "a-ana", "b-ana"))
    new = {"target": "ent-a", "title": "Patch the HMI", "required_action": "Apply vendor fix",
           "deadline": "2030-01-31T08:00:00Z", "asset": "hmi-3"}

    assert _client(api, province.accounts, None).get("/api/notices").status_code == 401
    assert qian.post("/api/notices", json=new).status_code == 403
    refused = a_ana.post("/api/notices", json=new)
    assert refused.status_code == 403
    assert "only a province" in refused.json()["detail"]

    made = zhao.post("/api/notices", json=new)
    assert made.status_code == 201, made.text
    notice = made.json()
    assert (notice["deadline"], notice["status"]) == ("2030-01-31T08:00:00.000000Z", "issued")
    path = f"/api/notices/{notice['id']}"
    epoch = zhao.post("/api/notices", json={**new, "deadline": time.time() + DAY})
    assert epoch.status_code == 201

    assert qian.get(path).json()["steps"][0]["action"] == "issue"
    assert b_ana.get(path).status_code == 404
    assert b_ana.post(f"{path}/steps", json={"action": "accept"}).status_code == 404
    assert b_ana.get("/api/notices").json() == {"notices": []}
    assert zhao.get("/api/notices/" + "0" * 32).status_code == 404
    assert zhao.get("/api/notices/" + "0" * 65).status_code == 404

    forbidden = zhao.post(f"{path}/steps", json={"action": "rectify", "evidence": "x"})
    assert forbidden.status_code == 403
    assert "only the enterprise ent-a" in forbidden.json()["detail"]
    assert a_ana.post(f"{path}/steps", json={"action": "accept"}).json()["status"] == "accepted"
    conflict = a_ana.post(f"{path}/steps", json={"action": "accept"})
    assert conflict.status_code == 409
    assert "the notice is accepted" in conflict.json()["detail"]
    no_evidence = a_ana.post(f"{path}/steps", json={"action": "rectify"})
    assert no_evidence.status_code == 422
    assert "evidence is required" in no_evidence.json()["detail"]

    for bad in ({**new, "deadline": "2001-01-01T00:00:00Z"}, {**new, "deadline": "soon"},
                {**new, "deadline": True}, {**new, "title": "x" * 201},
                {**new, "target": "prov-zj", "title": ""}):
        assert zhao.post("/api/notices", json=bad).status_code == 422, bad
    assert a_ana.post(f"{path}/steps", json={"action": "explode"}).status_code == 422
    assert a_ana.post(f"{path}/steps", json={"action": "issue"}).status_code == 422
    assert zhao.get("/api/notices?status=done").status_code == 422

    listed = zhao.get("/api/notices", params={"status": "accepted"}).json()["notices"]
    assert [n["id"] for n in listed] == [notice["id"]]
    assert zhao.get("/api/notices", params={"overdue": "true"}).json() == {"notices": []}
    assert len(a_ana.get("/api/notices", params={"target": "ent-a"}).json()["notices"]) == 2
