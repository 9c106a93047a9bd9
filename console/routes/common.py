"""What the route modules share: the app's parts and the alert summary."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from console.accounts import User
from console.stores.base import Store
from console.tiers import Organizations


def store(request: Request) -> Store:
    found: Store = request.app.state.store
    return found


def summary(alert: dict[str, Any]) -> dict[str, Any]:
    """The alert without its sample events: what lists show."""
    ics = alert.get("ics")
    if not isinstance(ics, dict) or not isinstance(ics.get("alert"), dict) \
            or "events" not in ics["alert"]:
        return alert
    slim_alert = {k: v for k, v in ics["alert"].items() if k != "events"}
    return {**alert, "ics": {**ics, "alert": slim_alert}}


def orgs(request: Request) -> Organizations:
    found: Organizations = request.app.state.orgs
    return found


def user_scope(request: Request, user: User) -> list[str] | None:
    """The organisation ids whose data ``user`` sees (None: all of this
    console's store); given to every store query as `AlertQuery.scope`."""
    return orgs(request).scope(user.org)


def in_scope(document: dict[str, Any], scope: list[str] | None) -> bool:
    """Whether a stored document (alert or inventory) is within ``scope``."""
    if scope is None:
        return True
    organization = document.get("organization")
    return isinstance(organization, dict) and organization.get("id") in scope
