"""Notices: a province (or the national centre) tells one of its enterprises
to put something right by a deadline; the enterprise accepts, works on it and
reports it rectified with evidence; the issuer closes it or reopens it.

Every step is a row of ``notice_log`` with an id of its own (``uid``) that is
the same at every tier, so the uplink carries steps down to the enterprise
and back up without doubling any: `NoticeBook.steps_for_child` is what a
parent serves a child, `NoticeBook.steps_to_forward` what a child sends up,
and `NoticeBook.apply` takes either in, once.

Times in what the API shows are ISO 8601; steps relayed between consoles
carry epoch seconds.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import time
import uuid
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, get_args

from console.accounts import USERNAME, User
from console.state import ConsoleState
from console.tiers import ORG_ID, Organizations
from console.times import iso

StatusName = Literal["issued", "accepted", "in_progress", "rectified", "closed", "reopened"]
ActionName = Literal["issue", "accept", "start", "rectify", "close", "reopen", "comment"]
StepName = Literal["accept", "start", "rectify", "close", "reopen", "comment"]
STATUSES: Final = get_args(StatusName)
ACTIONS: Final = get_args(ActionName)
STEPS: Final = get_args(StepName)
# A notice in one of these waits on nobody's work, so it is never overdue.
DONE: Final = ("rectified", "closed")
MAX_TITLE: Final = 200
MAX_TEXT: Final = 4000
MAX_REF: Final = 200  # an alert id or an asset
MAX_ID: Final = 64
# A deadline further ahead than this is a typing mistake, not a plan.
MAX_AHEAD: Final = 10 * 366 * 86400.0
LATEST: Final = 253402300799.0  # 9999-12-31T23:59:59Z, the last moment iso() can show
UID: Final = re.compile(r"[0-9a-f]{32}")
RELAY_LIMIT: Final = 500
# Named before NoticeBook, whose own `list` hides the builtin in its body.
Rows: TypeAlias = list[Any]
Relayed: TypeAlias = tuple[list[dict[str, Any]], int]  # steps, and the last seq looked at


class NoticeError(ValueError):
    """A value that cannot be used (an empty title, a past deadline, a
    malformed relayed step); the message says which and why."""


class NoticeConflict(NoticeError):
    """The step does not fit the notice's current status."""


class NoticeForbidden(Exception):
    """The user (or the console a step came from) may not take this step."""


class NoticeNotFound(NoticeForbidden):
    """No notice of that id that this user may see. An unknown notice and
    another organisation's get the same answer, so neither leaks."""


@dataclass(frozen=True, slots=True)
class Rule:
    sources: tuple[str, ...] | None  # statuses the step may start from; None: any
    result: str | None  # the status after it; None: unchanged
    side: Literal["target", "issuer", "either"]


RULES: Final[dict[str, Rule]] = {
    "accept": Rule(("issued", "reopened"), "accepted", "target"),
    "start": Rule(("issued", "accepted", "reopened"), "in_progress", "target"),
    "rectify": Rule(("issued", "accepted", "in_progress", "reopened"), "rectified", "target"),
    "close": Rule(("rectified",), "closed", "issuer"),
    "reopen": Rule(("rectified", "closed"), "reopened", "issuer"),
    "comment": Rule(None, None, "either"),
}
# Steps only the issuer takes; a child console never sends them up.
ISSUER_ONLY: Final = ("issue", "close", "reopen")


@dataclass(slots=True)
class Notice:
    id: str
    issuer: str
    target: str
    alert_id: str | None
    asset: str | None
    title: str
    required_action: str
    deadline: float
    status: str
    created: float
    updated: float

    def overdue(self, now: float) -> bool:
        return self.deadline < now and self.status not in DONE

    def origin(self) -> dict[str, Any]:
        """The notice as its "issue" step carries it to the other tiers."""
        return {"id": self.id, "issuer": self.issuer, "target": self.target,
                "alert_id": self.alert_id, "asset": self.asset, "title": self.title,
                "required_action": self.required_action, "deadline": self.deadline,
                "created": self.created}

    def as_dict(self, now: float) -> dict[str, Any]:
        return {"id": self.id, "issuer": self.issuer, "target": self.target,
                "alert_id": self.alert_id, "asset": self.asset, "title": self.title,
                "required_action": self.required_action, "deadline": iso(self.deadline),
                "status": self.status, "created": iso(self.created),
                "updated": iso(self.updated), "overdue": self.overdue(now)}


@dataclass(frozen=True, slots=True)
class Step:
    uid: str
    notice: str
    at: float
    org: str
    username: str
    action: str
    status: str
    text: str | None = None
    evidence: str | None = None
    record: dict[str, Any] | None = None  # Notice.origin() on an "issue" step
    came_from: str | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"text": self.text, "evidence": self.evidence}
        if self.record is not None:
            body["notice"] = self.record
        return body

    def relay(self) -> dict[str, Any]:
        """The step as another console's `NoticeBook.apply` takes it."""
        return {"uid": self.uid, "notice": self.notice, "at": self.at, "org": self.org,
                "username": self.username, "action": self.action, "status": self.status,
                "body": self.body()}

    def as_dict(self) -> dict[str, Any]:
        return {"uid": self.uid, "at": iso(self.at), "org": self.org,
                "username": self.username, "action": self.action, "status": self.status,
                "text": self.text, "evidence": self.evidence, "came_from": self.came_from}


_NOTICE_COLUMNS: Final = ("id, issuer, target, alert_id, asset, title, required_action, "
                          "deadline, status, created, updated")
_STEP_COLUMNS: Final = ("l.seq, l.uid, l.notice, l.at, l.org, l.username, l.action, "
                        "l.status, l.body, l.came_from")
# Where `_relay_rows` puts a step's came_from and its notice's target and issuer.
_CAME_FROM, _TARGET, _ISSUER = 9, 10, 11


def _step(row: Any) -> Step:
    """A ``_STEP_COLUMNS`` row (its seq first) as a Step."""
    _, uid, notice, at, org, username, action, status, body, came_from = row[:10]
    decoded = json.loads(body)
    return Step(uid, notice, at, org, username, action, status, decoded.get("text"),
                decoded.get("evidence"), decoded.get("notice"), came_from)


def _insert_notice(db: sqlite3.Connection, notice: Notice) -> None:
    db.execute(f"INSERT INTO notices ({_NOTICE_COLUMNS}) VALUES "
               "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (notice.id, notice.issuer, notice.target, notice.alert_id, notice.asset,
                notice.title, notice.required_action, notice.deadline, notice.status,
                notice.created, notice.updated))


def _insert_step(db: sqlite3.Connection, step: Step) -> None:
    db.execute("INSERT INTO notice_log (uid, notice, at, org, username, action, status, body, "
               "came_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (step.uid, step.notice, step.at, step.org, step.username, step.action,
                step.status, json.dumps(step.body(), ensure_ascii=False), step.came_from))


# -- checking values ---------------------------------------------------------------


def _text(value: object, what: str, *, limit: int, required: bool = False) -> str | None:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise NoticeError(f"{what} must be text")
    value = value.strip()
    if required and not value:
        raise NoticeError(f"{what} is required")
    if len(value) > limit:
        raise NoticeError(f"{what} is longer than {limit} characters")
    return value or None


def _required(value: object, what: str, *, limit: int) -> str:
    text = _text(value, what, limit=limit, required=True)
    assert text is not None
    return text


def _moment(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not 0 <= value <= LATEST:
        raise NoticeError(f"{what}: {value!r} is not a time in epoch seconds")
    return float(value)


def _org_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not ORG_ID.fullmatch(value):
        raise NoticeError(f"{what}: {value!r} is not an organisation id")
    return value


def _uid(value: object, what: str) -> str:
    if not isinstance(value, str) or not UID.fullmatch(value):
        raise NoticeError(f"{what}: {value!r} is not 32 hexadecimal digits")
    return value


def _issued(record: object, notice_id: str, at: float) -> Notice:
    """The notice an "issue" step carries, checked whole."""
    if not isinstance(record, dict):
        raise NoticeError("an issue step carries the notice in body.notice")
    if record.get("id") != notice_id:
        raise NoticeError(f"the issue step of {notice_id} carries notice "
                          f"{record.get('id')!r}")
    return Notice(
        notice_id, _org_id(record.get("issuer"), "notice issuer"),
        _org_id(record.get("target"), "notice target"),
        _text(record.get("alert_id"), "alert id", limit=MAX_REF),
        _text(record.get("asset"), "asset", limit=MAX_REF),
        _required(record.get("title"), "title", limit=MAX_TITLE),
        _required(record.get("required_action"), "required action", limit=MAX_TEXT),
        _moment(record.get("deadline"), "notice deadline"), "issued",
        _moment(record.get("created"), "notice created"), at)


def _incoming(raw: object) -> tuple[Step, Notice | None]:
    """A step relayed from another console, checked: the step and, for an
    "issue" step, the notice it creates. NoticeError when malformed."""
    if not isinstance(raw, dict):
        raise NoticeError("a step must be a JSON object")
    action, status = raw.get("action"), raw.get("status")
    if not isinstance(action, str) or action not in ACTIONS:
        raise NoticeError(f"step action {action!r} is not one of {', '.join(ACTIONS)}")
    if not isinstance(status, str) or status not in STATUSES:
        raise NoticeError(f"step status {status!r} is not one of {', '.join(STATUSES)}")
    expected = "issued" if action == "issue" else RULES[action].result
    if expected is not None and status != expected:
        raise NoticeError(f"a {action} step leaves a notice {expected}, not {status}")
    username = raw.get("username")
    if not isinstance(username, str) or not USERNAME.fullmatch(username):
        raise NoticeError(f"step username {username!r} is not a user name")
    body = raw.get("body")
    if not isinstance(body, dict):
        raise NoticeError("step body must be a JSON object")
    uid = _uid(raw.get("uid"), "step uid")
    notice_id = _uid(raw.get("notice"), "step notice")
    at = _moment(raw.get("at"), "step at")
    notice = _issued(body.get("notice"), notice_id, at) if action == "issue" else None
    step = Step(uid, notice_id, at, _org_id(raw.get("org"), "step org"), username, action,
                status,
                _text(body.get("text"), "text", limit=MAX_TEXT,
                      required=action in ("reopen", "comment")),
                _text(body.get("evidence"), "evidence", limit=MAX_TEXT,
                      required=action == "rectify"),
                notice.origin() if notice is not None else None)
    return step, notice


class NoticeBook:
    """The notices of one console and the log of their steps."""

    def __init__(self, state: ConsoleState, orgs: Organizations) -> None:
        self.state = state
        self.orgs = orgs

    # -- who may do what -----------------------------------------------------------

    def _org_of(self, user: User) -> str:
        return user.org or self.orgs.own

    def _sees(self, user: User, notice: Notice) -> bool:
        return self.orgs.visible(user.org, notice.target) or self._org_of(user) == notice.issuer

    def _side(self, user: User, notice: Notice) -> str | None:
        """Which side of the notice the user acts for: "issuer", "target" or None."""
        acting = self._org_of(user)
        if acting == notice.issuer:
            return "issuer"
        if acting == notice.target and self.orgs.visible(user.org, notice.target):
            return "target"
        return None

    @staticmethod
    def _need_analyst(user: User) -> None:
        if not user.may("analyst"):
            raise NoticeForbidden(f"this needs the analyst role; you are {user.role}")

    # -- reading -------------------------------------------------------------------

    def _load(self, notice_id: str) -> Notice | None:
        rows = self.state.rows(f"SELECT {_NOTICE_COLUMNS} FROM notices WHERE id = ?",
                               (notice_id,))
        return Notice(*rows[0]) if rows else None

    def _visible(self, user: User, notice_id: str) -> Notice:
        notice = self._load(notice_id) if 0 < len(notice_id) <= MAX_ID else None
        if notice is None or not self._sees(user, notice):
            raise NoticeNotFound(f"no notice {notice_id}")
        return notice

    def list(self, user: User, *, status: str | None = None, overdue: bool | None = None,
             target: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """The notices ``user`` sees, most recently updated first."""
        now = time.time()
        clauses: list[str] = []
        params: list[Any] = []
        scope = self.orgs.scope(user.org)
        if scope is not None:
            marks = ", ".join("?" * len(scope))
            clauses.append(f"(target IN ({marks}) OR issuer = ?)")
            params += [*scope, self._org_of(user)]
        if status is not None:
            if status not in STATUSES:
                raise NoticeError(f"status {status!r} is not one of {', '.join(STATUSES)}")
            clauses.append("status = ?")
            params.append(status)
        if overdue is not None:
            late = "(deadline < ? AND status NOT IN ('rectified', 'closed'))"
            clauses.append(late if overdue else f"NOT {late}")
            params.append(now)
        if target is not None:
            clauses.append("target = ?")
            params.append(target)
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        rows = self.state.rows(f"SELECT {_NOTICE_COLUMNS} FROM notices {where}"
                               "ORDER BY updated DESC, id LIMIT ?", (*params, limit))
        return [Notice(*row).as_dict(now) for row in rows]

    def get(self, user: User, notice_id: str) -> dict[str, Any]:
        """The notice with its steps, oldest first."""
        notice = self._visible(user, notice_id)
        rows = self.state.rows(f"SELECT {_STEP_COLUMNS} FROM notice_log l "
                               "WHERE l.notice = ? ORDER BY l.seq", (notice_id,))
        return {**notice.as_dict(time.time()), "steps": [_step(row).as_dict() for row in rows]}

    def counts_by_target(self) -> dict[str, dict[str, int]]:
        """Per target enterprise, its notices not closed and those overdue;
        not filtered by any user's scope (the caller filters)."""
        rows = self.state.rows(
            "SELECT target, SUM(status != 'closed'), "
            "SUM(deadline < ? AND status NOT IN ('rectified', 'closed')) "
            "FROM notices GROUP BY target ORDER BY target", (time.time(),))
        return {target: {"open": int(open_), "overdue": int(late)}
                for target, open_, late in rows}

    # -- steps taken here ----------------------------------------------------------

    def issue(self, user: User, *, target: str, title: str, required_action: str,
              deadline: float, alert_id: str | None = None,
              asset: str | None = None) -> dict[str, Any]:
        """A new notice from the user's organisation (a province or the
        national centre) to an enterprise below it."""
        self._need_analyst(user)
        acting = self._org_of(user)
        acting_org = self.orgs.get(acting)
        if acting_org is None or acting_org.kind not in ("province", "national"):
            kind = acting_org.kind if acting_org is not None else "not known here"
            raise NoticeForbidden(f"only a province or the national centre issues notices; "
                                  f"{acting} is {kind}")
        # One answer for unknown and out-of-reach targets: no probing for ids.
        if target == acting or target not in self.orgs.subtree(acting):
            raise NoticeForbidden(f"{target!r} is not an enterprise under {acting}")
        target_org = self.orgs.get(target)
        if target_org is None or target_org.kind != "enterprise":
            kind = target_org.kind if target_org is not None else "not known here"
            raise NoticeError(f"notices go to enterprises; {target} is {kind}")
        now = time.time()
        when = _moment(deadline, "deadline")
        if when <= now:
            raise NoticeError(f"the deadline {iso(when)} has passed")
        if when > now + MAX_AHEAD:
            raise NoticeError(f"the deadline {iso(when)} is more than ten years ahead")
        notice = Notice(
            uuid.uuid4().hex, acting, target, _text(alert_id, "alert id", limit=MAX_REF),
            _text(asset, "asset", limit=MAX_REF),
            _required(title, "title", limit=MAX_TITLE),
            _required(required_action, "required action", limit=MAX_TEXT),
            when, "issued", now, now)
        step = Step(uuid.uuid4().hex, notice.id, now, acting, user.username, "issue",
                    "issued", record=notice.origin())
        with self.state.transaction() as db:
            _insert_notice(db, notice)
            _insert_step(db, step)
        return notice.as_dict(now)

    def act(self, user: User, notice_id: str, action: str, *, text: str | None = None,
            evidence: str | None = None) -> dict[str, Any]:
        """Take a step on a notice; the notice as it is after it."""
        notice = self._visible(user, notice_id)
        rule = RULES.get(action)
        if rule is None:
            raise NoticeError(f"step {action!r} is not one of {', '.join(STEPS)}")
        self._need_analyst(user)
        side = self._side(user, notice)
        if side is None or rule.side not in ("either", side):
            who = {"target": f"the enterprise {notice.target}",
                   "issuer": f"the issuer {notice.issuer}",
                   "either": f"{notice.issuer} or {notice.target}"}[rule.side]
            raise NoticeForbidden(f"only {who} may {action} this notice; "
                                  f"you act for {self._org_of(user)}")
        now = time.time()
        with self.state.transaction() as db:
            current = db.execute("SELECT status FROM notices WHERE id = ?",
                                 (notice_id,)).fetchone()[0]
            if rule.sources is not None and current not in rule.sources:
                raise NoticeConflict(f"the notice is {current}; {action} needs it "
                                     f"{' or '.join(rule.sources)}")
            step = Step(
                uuid.uuid4().hex, notice_id, now, self._org_of(user), user.username, action,
                rule.result or current,
                _text(text, "text", limit=MAX_TEXT, required=action in ("reopen", "comment")),
                _text(evidence, "evidence", limit=MAX_TEXT, required=action == "rectify"))
            db.execute("UPDATE notices SET status = ?, updated = ? WHERE id = ?",
                       (step.status, now, notice_id))
            _insert_step(db, step)
        notice.status, notice.updated = step.status, now
        return notice.as_dict(now)

    # -- relaying between tiers ----------------------------------------------------

    def _relay_rows(self, after: int, limit: int) -> Rows:
        """Steps after ``after`` with their notice's target and issuer last."""
        rows: Rows = self.state.rows(
            f"SELECT {_STEP_COLUMNS}, n.target, n.issuer FROM notice_log l "
            "JOIN notices n ON n.id = l.notice WHERE l.seq > ? ORDER BY l.seq LIMIT ?",
            (after, limit))
        return rows

    def steps_for_child(self, child: str, after: int,
                        limit: int = RELAY_LIMIT) -> Relayed:
        """What a parent serves a child pulling notices down: the steps on
        notices to the child or below it, except those the child sent; with
        the last seq looked at, the child's cursor for the next pull."""
        below = set(self.orgs.subtree(child))
        rows = self._relay_rows(after, limit)
        steps = [_step(row).relay() for row in rows
                 if row[_TARGET] in below and row[_CAME_FROM] != child]
        return steps, rows[-1][0] if rows else after

    def steps_to_forward(self, after: int,
                         limit: int = RELAY_LIMIT) -> Relayed:
        """What this console sends up: steps on notices issued by a tier
        above, taken here or received from a child (never those that came
        down from the parent); with the last seq looked at."""
        own_tree = set(self.orgs.subtree(self.orgs.own))
        children = own_tree - {self.orgs.own}
        rows = self._relay_rows(after, limit)
        steps = [_step(row).relay() for row in rows
                 if row[_ISSUER] not in own_tree
                 and (row[_CAME_FROM] is None or row[_CAME_FROM] in children)]
        return steps, rows[-1][0] if rows else after

    def apply(self, step: dict[str, Any], *, came_from: str, from_parent: bool) -> bool:
        """Take in a step relayed from the parent or from the child
        ``came_from``; False when it is here already (nothing changes).

        The tier where a step was taken checked its transition, so none is
        checked here; a child is still held to its own side: it never sends
        an issue, close or reopen, and only on its own enterprises' notices,
        as those enterprises. A comment never changes the status, so a late
        comment cannot undo a step taken meanwhile on the other tier."""
        incoming, issued = _incoming(step)
        _org_id(came_from, "came_from")
        if from_parent:
            if issued is not None:
                if issued.target not in self.orgs.subtree(self.orgs.own):
                    raise NoticeForbidden(f"the parent sent a notice for {issued.target}, "
                                          f"which is not under {self.orgs.own}")
            elif self._load(incoming.notice) is None:
                raise NoticeForbidden(f"the parent sent a {incoming.action} step for "
                                      f"notice {incoming.notice}, unknown here")
        else:
            self._check_from_child(incoming, came_from)
        with self.state.transaction() as db:
            if db.execute("SELECT 1 FROM notice_log WHERE uid = ?",
                          (incoming.uid,)).fetchone():
                return False
            if issued is not None:
                if db.execute("SELECT 1 FROM notices WHERE id = ?", (issued.id,)).fetchone():
                    raise NoticeError(f"notice {issued.id} exists already")
                _insert_notice(db, issued)
            elif incoming.action == "comment":
                db.execute("UPDATE notices SET updated = MAX(updated, ?) WHERE id = ?",
                           (incoming.at, incoming.notice))
            else:
                db.execute("UPDATE notices SET status = ?, updated = MAX(updated, ?) "
                           "WHERE id = ?", (incoming.status, incoming.at, incoming.notice))
            _insert_step(db, Step(
                incoming.uid, incoming.notice, incoming.at, incoming.org, incoming.username,
                incoming.action, incoming.status, incoming.text, incoming.evidence,
                incoming.record, came_from))
        return True

    def _check_from_child(self, step: Step, child: str) -> None:
        if step.action in ISSUER_ONLY:
            raise NoticeForbidden(f"{child} may not send {step.action} steps; only the "
                                  "issuer takes them")
        notice = self._load(step.notice)
        if notice is None:
            raise NoticeForbidden(f"{child} sent a step for notice {step.notice}, "
                                  "unknown here")
        below = self.orgs.subtree(child)
        if notice.target not in below:
            raise NoticeForbidden(f"{child} sent a step for a notice to {notice.target}, "
                                  f"which is not under {child}")
        if step.org not in below or step.org != notice.target:
            raise NoticeForbidden(f"{child} sent a step taken by {step.org} on a notice to "
                                  f"{notice.target}")
