"""Statistics for the dashboards: the overview in one request, histograms
and top-N lists."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from console.alert_filters import alert_filters
from console.routes.common import store, summary
from console.stores.base import SEVERITY_ORDER, TOP_FIELDS, AlertQuery, Store
from console.times import iso, parse_time
from console.web_auth import Viewer
from detectors.attack import TECHNIQUES

router = APIRouter(prefix="/api/stats", tags=["statistics"])
Filters = Annotated[AlertQuery, Depends(alert_filters)]

# Bucket widths a histogram picks from: at most TARGET_BUCKETS over the range.
NICE_INTERVALS: Final = (
    1, 5, 10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400,
    7 * 86400, 30 * 86400, 365 * 86400,
)
TARGET_BUCKETS: Final = 60
MAX_BUCKETS: Final = 2000


def _span(alerts: Store, query: AlertQuery) -> tuple[float, float] | None:
    """The time range to cover: the query's, else the first and last alert's."""
    start, end = query.start, query.end
    if start is None or end is None:
        oldest = alerts.search_alerts(replace(query, size=1, newest_first=False)).alerts
        newest = alerts.search_alerts(replace(query, size=1, newest_first=True)).alerts
        if not oldest or not newest:
            return None
        if start is None:
            start = parse_time(oldest[0]["@timestamp"])
        if end is None:
            end = parse_time(newest[0]["@timestamp"])
    return start, end


def auto_interval(alerts: Store, query: AlertQuery) -> float:
    span = _span(alerts, query)
    width = (span[1] - span[0]) if span else 0.0
    for interval in NICE_INTERVALS:
        if width / interval <= TARGET_BUCKETS:
            return float(interval)
    return float(NICE_INTERVALS[-1])


def histogram(alerts: Store, query: AlertQuery, interval: float | None) -> dict[str, Any]:
    if interval is None:
        interval = auto_interval(alerts, query)
    span = _span(alerts, query)
    if span is not None and (span[1] - span[0]) / interval > MAX_BUCKETS:
        raise HTTPException(400, f"interval {interval:g} s gives more than {MAX_BUCKETS} "
                                 "buckets over this time range; choose a wider one")
    buckets = alerts.histogram(query, interval)
    return {"interval": interval,
            "buckets": [{"start": iso(bucket.start), "counts": bucket.counts}
                        for bucket in buckets]}


def _top(alerts: Store, query: AlertQuery, field: str, size: int) -> list[dict[str, Any]]:
    return [{"value": value, "count": count} for value, count in alerts.top(query, field, size)]


def _named_rules(request: Request, buckets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = request.app.state.rule_admin.names()
    return [{**bucket, "name": names.get(bucket["value"])} for bucket in buckets]


@router.get("/overview")
def overview(request: Request, user: Viewer, filters: Filters) -> dict[str, Any]:
    """Everything the overview dashboard shows, in one request."""
    alerts = store(request)
    by_severity = dict(alerts.top(filters, "ics.alert.severity", len(SEVERITY_ORDER)))
    techniques = _top(alerts, filters, "threat.technique.id", 10)
    for bucket in techniques:
        bucket["name"] = TECHNIQUES.get(bucket["value"])
    severe = [severity for severity in ("critical", "high")
              if not filters.severities or severity in filters.severities]
    newest = alerts.search_alerts(replace(filters, severities=severe, size=10)).alerts \
        if severe else []
    return {
        "total": sum(by_severity.values()),
        "by_severity": {severity: by_severity.get(severity, 0) for severity in SEVERITY_ORDER},
        "by_status": dict(alerts.top(filters, "ics.alert.status", 10)),
        "histogram": histogram(alerts, filters, None),
        "top_techniques": techniques,
        "top_rules": _named_rules(request, _top(alerts, filters, "rule.id", 10)),
        "top_assets": _top(alerts, filters, "destination.ip", 10),
        "top_protocols": _top(alerts, filters, "network.protocol", 10),
        "newest_critical": [summary(alert) for alert in newest],
    }


@router.get("/histogram")
def get_histogram(
    request: Request, user: Viewer, filters: Filters,
    interval: Annotated[str, Query(description="bucket width in seconds, or auto")] = "auto",
) -> dict[str, Any]:
    width: float | None = None
    if interval != "auto":
        try:
            width = float(interval)
        except ValueError:
            raise HTTPException(400, f"interval {interval!r}: seconds or auto") from None
        if not width >= 1:
            raise HTTPException(400, "interval: at least 1 second")
    return histogram(store(request), filters, width)


@router.get("/top")
def get_top(
    request: Request, user: Viewer, filters: Filters,
    field: Annotated[str, Query(description=", ".join(sorted(TOP_FIELDS)))] = "rule.id",
    size: Annotated[int, Query(ge=1, le=100)] = 10,
) -> dict[str, Any]:
    if field not in TOP_FIELDS:
        raise HTTPException(400, f"field {field!r}: one of {', '.join(sorted(TOP_FIELDS))}")
    buckets = _top(store(request), filters, field, size)
    if field == "rule.id":
        buckets = _named_rules(request, buckets)
    return {"field": field, "buckets": buckets}
