"""What the route modules share: the app's parts and the alert summary."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from console.stores.base import Store


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
