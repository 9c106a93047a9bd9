"""Triage: what analysts do to an alert, and the audit trail that records it.

The alert's current state (status, assignee, resolution) is written to the
alert store, so lists filter on it in either store; every action is also
appended to the console database with who did it and when.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from console.state import ConsoleState
from console.stores.base import Store
from console.times import iso

ActionName = Literal["acknowledge", "assign", "comment", "close", "false_positive", "reopen"]
ACTIONS: Final = get_args(ActionName)
MAX_TEXT: Final = 4000


class TriageError(ValueError):
    """An action that cannot be done on this alert; the message says why."""


class Conflict(TriageError):
    """The action does not fit the alert's current status."""


@dataclass(frozen=True, slots=True)
class Action:
    action: str
    assignee: str | None = None
    comment: str | None = None
    reason: str | None = None


def _status(alert: dict[str, Any]) -> str:
    ics = alert.get("ics") or {}
    return str((ics.get("alert") or {}).get("status") or "open")


def _text(value: str | None, what: str, required: bool) -> str | None:
    value = value.strip() if value is not None else None
    if required and not value:
        raise TriageError(f"{what} is required for this action")
    if value is not None and len(value) > MAX_TEXT:
        raise TriageError(f"{what} is longer than {MAX_TEXT} characters")
    return value or None


class Triage:
    def __init__(self, store: Store, state: ConsoleState) -> None:
        self.store = store
        self.state = state

    def act(self, alert_id: str, username: str, action: Action,
            known_user: Callable[[str], bool] | None = None) -> dict[str, Any] | None:
        """Apply ``action``; the alert's new document, None for an unknown
        alert. ``known_user(name)`` says whether an assignee exists."""
        if action.action not in ACTIONS:
            raise TriageError(f"unknown action {action.action!r}: one of {', '.join(ACTIONS)}")
        alert = self.store.get_alert(alert_id)
        if alert is None:
            return None
        current = _status(alert)
        comment = _text(action.comment, "comment", action.action == "comment")
        reason = _text(action.reason, "reason",
                       action.action in ("close", "false_positive"))
        # A comment changes nothing on the alert: it is only recorded below.
        status: str | None = None
        assignee: str | None = None
        resolution: str | None = None
        match action.action:
            case "acknowledge":
                if current != "open":
                    raise Conflict(f"the alert is {current}, not open")
                status = "acknowledged"
            case "assign":
                assignee = _text(action.assignee, "assignee", True)
                if assignee is not None and known_user is not None \
                        and not known_user(assignee):
                    raise TriageError(f"no user {assignee!r} to assign the alert to")
            case "close" | "false_positive":
                if current in ("closed", "false_positive"):
                    raise Conflict(f"the alert is already {current}")
                status = "closed" if action.action == "close" else "false_positive"
                resolution = reason
            case "reopen":
                if current not in ("closed", "false_positive"):
                    raise Conflict(f"the alert is {current}, not closed")
                status, resolution = "open", ""
        now = time.time()
        updated = alert
        if status is not None or assignee is not None or resolution is not None:
            changed = self.store.set_triage(alert_id, status=status, assignee=assignee,
                                            resolution=resolution, updated=now)
            if changed is None:
                return None
            updated = changed
        with self.state.transaction() as db:
            db.execute(
                "INSERT INTO audit (alert_id, at, username, action, status, assignee, "
                "comment, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (alert_id, now, username, action.action, status, assignee, comment, reason))
        return updated

    def audit(self, alert_id: str) -> list[dict[str, Any]]:
        return [
            {"at": iso(at), "user": user, "action": action, "status": status,
             "assignee": assignee, "comment": comment, "reason": reason}
            for at, user, action, status, assignee, comment, reason in self.state.rows(
                "SELECT at, username, action, status, assignee, comment, reason "
                "FROM audit WHERE alert_id = ? ORDER BY pk", (alert_id,))
        ]
