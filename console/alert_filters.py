"""The alert filters shared by the alert list and the statistics: query
parameters in, an `AlertQuery` out, a 400 with the reason for a bad one.
The query always carries the user's scope, so the store filters by it."""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Query, Request

from console.routes.common import user_scope
from console.stores.base import SEVERITY_ORDER, STATUSES, AlertQuery
from console.times import parse_time
from console.web_auth import Viewer

MAX_VALUES = 100


def _time(name: str, text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        return parse_time(text)
    except ValueError as exc:
        raise HTTPException(400, f"{name}: {exc}") from None


def _values(name: str, given: list[str], allowed: tuple[str, ...] | None = None) -> list[str]:
    values = [value.strip() for value in given if value.strip()]
    if len(values) > MAX_VALUES:
        raise HTTPException(400, f"{name}: at most {MAX_VALUES} values")
    if allowed is not None:
        for value in values:
            if value not in allowed:
                raise HTTPException(
                    400, f"{name} {value!r}: one of {', '.join(allowed)}")
    return values


def alert_filters(
    request: Request, user: Viewer,
    start: Annotated[str | None, Query(description="ISO 8601 or epoch seconds, inclusive")]
    = None,
    end: Annotated[str | None, Query(description="ISO 8601 or epoch seconds, exclusive")]
    = None,
    severity: Annotated[list[str], Query(description="low, medium, high, critical")] = [],  # noqa: B006
    protocol: Annotated[list[str], Query()] = [],  # noqa: B006
    rule: Annotated[list[str], Query(description="rule id")] = [],  # noqa: B006
    technique: Annotated[list[str], Query(description="ATT&CK for ICS id")] = [],  # noqa: B006
    asset: Annotated[list[str], Query(description="IP as source or destination")] = [],  # noqa: B006
    organization: Annotated[list[str], Query()] = [],  # noqa: B006
    status: Annotated[list[str], Query(description=", ".join(STATUSES))] = [],  # noqa: B006
    assignee: Annotated[list[str], Query()] = [],  # noqa: B006
    q: Annotated[str | None, Query(max_length=500, description="full text")] = None,
) -> AlertQuery:
    begin, finish = _time("start", start), _time("end", end)
    if begin is not None and finish is not None and finish < begin:
        raise HTTPException(400, "end is before start")
    return AlertQuery(
        start=begin, end=finish,
        severities=_values("severity", severity, SEVERITY_ORDER),
        protocols=_values("protocol", protocol),
        rule_ids=_values("rule", rule),
        techniques=_values("technique", technique),
        assets=_values("asset", asset),
        organizations=_values("organization", organization),
        statuses=_values("status", status, STATUSES),
        assignees=_values("assignee", assignee),
        text=q.strip() if q and q.strip() else None,
        scope=user_scope(request, user),
    )
