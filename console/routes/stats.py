"""Statistics for the dashboards: the overview in one request, histograms
and top-N lists."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from console.alert_filters import alert_filters
from console.routes.common import store, summary
from console.stores.base import SEVERITY_ORDER, TOP_FIELDS, AlertQuery, Store
from console.times import iso
from console.web_auth import Viewer
from detectors.attack import TECHNIQUE_NAMES_ZH, TECHNIQUES

router = APIRouter(prefix="/api/stats", tags=["statistics"])
Filters = Annotated[AlertQuery, Depends(alert_filters)]

# Bucket widths a histogram picks from: at most TARGET_BUCKETS over the range.
NICE_INTERVALS: Final = (
    1, 5, 10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400,
    7 * 86400, 30 * 86400, 365 * 86400,
)
TARGET_BUCKETS: Final = 60
# Shared by all overview requests: a few threads are enough to overlap the
# store's round trips.
OVERVIEW_POOL: Final = ThreadPoolExecutor(max_workers=8, thread_name_prefix="icswatch-overview")
MAX_BUCKETS: Final = 2000


def _span(alerts: Store, query: AlertQuery) -> tuple[float, float] | None:
    """The time range to cover: the query's, else the first and last alert's."""
    if query.start is not None and query.end is not None:
        return query.start, query.end
    found = alerts.time_span(query)
    if found is None:
        return None
    return (query.start if query.start is not None else found[0],
            query.end if query.end is not None else found[1])


def _interval_for(span: tuple[float, float] | None) -> float:
    width = (span[1] - span[0]) if span else 0.0
    for interval in NICE_INTERVALS:
        if width / interval <= TARGET_BUCKETS:
            return float(interval)
    return float(NICE_INTERVALS[-1])


def histogram(alerts: Store, query: AlertQuery, interval: float | None) -> dict[str, Any]:
    span = _span(alerts, query)
    if interval is None:
        interval = _interval_for(span)
    elif span is not None and (span[1] - span[0]) / interval > MAX_BUCKETS:
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
    """Everything the overview dashboard shows, in one request: the top-N
    lists in one store query, side by side with the histogram and the
    newest severe alerts (Elasticsearch answers them in parallel; the
    embedded store takes them in turn)."""
    alerts = store(request)
    severe = [severity for severity in ("critical", "high")
              if not filters.severities or severity in filters.severities]
    tops = {"ics.alert.severity": len(SEVERITY_ORDER), "ics.alert.status": 10,
            "threat.technique.id": 10, "rule.id": 10, "destination.ip": 10,
            "network.protocol": 10}
    parts: dict[str, Callable[[], Any]] = {
        "tops": lambda: alerts.top_many(filters, tops),
        "histogram": lambda: histogram(alerts, filters, None),
        "newest": lambda: alerts.search_alerts(
            replace(filters, severities=severe, size=10)).alerts if severe else [],
    }
    futures = {name: OVERVIEW_POOL.submit(part) for name, part in parts.items()}
    done = {name: future.result() for name, future in futures.items()}
    top = {field: [{"value": value, "count": count} for value, count in buckets]
           for field, buckets in done["tops"].items()}
    by_severity = dict(done["tops"]["ics.alert.severity"])
    for bucket in top["threat.technique.id"]:
        bucket["name"] = TECHNIQUES.get(bucket["value"])
        bucket["name_zh"] = TECHNIQUE_NAMES_ZH.get(bucket["value"])
    return {
        "total": sum(by_severity.values()),
        "by_severity": {severity: by_severity.get(severity, 0) for severity in SEVERITY_ORDER},
        "by_status": dict(done["tops"]["ics.alert.status"]),
        "histogram": done["histogram"],
        "top_techniques": top["threat.technique.id"],
        "top_rules": _named_rules(request, top["rule.id"]),
        "top_assets": top["destination.ip"],
        "top_protocols": top["network.protocol"],
        "newest_critical": [summary(alert) for alert in done["newest"]],
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
