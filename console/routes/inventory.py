"""Assets, the communication map and the sensors, from the inventory
documents the sensors store (`detectors.inventory`)."""

from __future__ import annotations

import time
from typing import Annotated, Any, Final

from fastapi import APIRouter, HTTPException, Query, Request

from console.routes.common import in_scope, store, summary, user_scope
from console.stores.base import AlertQuery, Store
from console.times import parse_time
from console.web_auth import Viewer

router = APIRouter(prefix="/api", tags=["assets"])
OPEN: Final = ("open", "acknowledged")
ENDPOINTS: Final = ("source.ip", "destination.ip")
MAX_HOSTS: Final = 10_000  # distinct addresses per top-N list (Elasticsearch buckets)


def alert_counts(alerts: Store, ips: list[str],
                 scope: list[str] | None = None) -> dict[str, tuple[int, int]]:
    """Alerts (all, and open or acknowledged) touching each address, from
    two searches: an address's count is its alerts as source plus as
    destination, exact unless it is both in one alert (a host alerting on
    itself): only those few are counted one by one."""
    if not ips:
        return {}
    sizes = dict.fromkeys(ENDPOINTS, MAX_HOSTS)
    every = alerts.top_many(AlertQuery(assets=ips, scope=scope), sizes)
    still_open = alerts.top_many(AlertQuery(assets=ips, statuses=OPEN, scope=scope), sizes)
    counts: dict[str, tuple[int, int]] = {}
    for ip in ips:
        as_source, as_target = (dict(every[field]).get(ip, 0) for field in ENDPOINTS)
        if as_source and as_target:
            counts[ip] = (alerts.count_alerts(AlertQuery(assets=[ip], scope=scope)),
                          alerts.count_alerts(AlertQuery(assets=[ip], statuses=OPEN,
                                                         scope=scope)))
        else:
            counts[ip] = (as_source + as_target,
                          sum(dict(still_open[field]).get(ip, 0) for field in ENDPOINTS))
    return counts


def _with_counts(alerts: Store, assets: list[dict[str, Any]],
                 scope: list[str] | None) -> list[dict[str, Any]]:
    ips = [str(asset.get("ip") or asset.get("id")) for asset in assets]
    counts = alert_counts(alerts, ips, scope)
    return [{**asset, "alerts": counts[ip][0], "open_alerts": counts[ip][1]}
            for asset, ip in zip(assets, ips, strict=True)]


def _matches(asset: dict[str, Any], q: str | None, role: str | None,
             protocol: str | None) -> bool:
    if role and role not in (asset.get("roles") or ()):
        return False
    protocols = asset.get("protocols") or {}
    if protocol and protocol not in (protocols.get("served") or ()) \
            and protocol not in (protocols.get("spoken") or ()):
        return False
    if q:
        text = q.lower()
        haystack = " ".join(str(asset.get(key) or "") for key in ("ip", "mac", "vendor"))
        return text in haystack.lower()
    return True


def with_pair_alerts(alerts: Store, edges: list[dict[str, Any]],
                     scope: list[str] | None = None) -> list[dict[str, Any]]:
    """Each edge with the alerts between its two hosts (from its source to
    its target, whatever the port: alerts name hosts, not edges). One top-N
    query per distinct target."""
    pairs: dict[tuple[str, str], int] = {}
    for target in {edge["target"] for edge in edges}:
        for source, count in alerts.top(AlertQuery(assets=[target], scope=scope),
                                        "source.ip", 1000):
            pairs[(source, target)] = count
    return [{**edge, "alerts": pairs.get((edge["source"], edge["target"]), 0)}
            for edge in edges]


@router.get("/assets")
def list_assets(
    request: Request, user: Viewer,
    q: Annotated[str | None, Query(max_length=200, description="part of IP, MAC or vendor")]
    = None,
    role: Annotated[str | None, Query(max_length=40)] = None,
    protocol: Annotated[str | None, Query(max_length=40)] = None,
) -> dict[str, Any]:
    alerts = store(request)
    scope = user_scope(request, user)
    assets = [asset for asset in alerts.list_inventory("assets")
              if in_scope(asset, scope) and _matches(asset, q, role, protocol)]
    return {"assets": _with_counts(alerts, [_public(asset) for asset in assets], scope),
            "total": len(assets)}


def _public(asset: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in asset.items() if key != "history"}


@router.get("/assets/{asset_id}")
def get_asset(request: Request, user: Viewer, asset_id: str) -> dict[str, Any]:
    alerts = store(request)
    if len(asset_id) > 64:
        raise HTTPException(404, "no such asset")
    scope = user_scope(request, user)
    asset = alerts.get_inventory("assets", asset_id)
    if asset is None or not in_scope(asset, scope):
        raise HTTPException(404, f"no asset {asset_id}")
    address = str(asset.get("ip") or asset_id)
    edges = [edge for edge in alerts.list_inventory("communications")
             if in_scope(edge, scope) and address in (edge.get("source"), edge.get("target"))]
    recent = alerts.search_alerts(AlertQuery(assets=[address], size=20, scope=scope)).alerts
    return {"asset": _with_counts(alerts, [_public(asset)], scope)[0],
            "communications": with_pair_alerts(alerts, edges, scope),
            "alerts": [summary(alert) for alert in recent],
            "history": asset.get("history") or []}


@router.get("/map")
def communication_map(
    request: Request, user: Viewer,
    protocol: Annotated[list[str], Query()] = [],  # noqa: B006
) -> dict[str, Any]:
    """Nodes (assets) and edges (initiator → responder per protocol and
    port), each with its alert count."""
    alerts = store(request)
    scope = user_scope(request, user)
    edges = [edge for edge in alerts.list_inventory("communications")
             if in_scope(edge, scope) and (not protocol or edge.get("protocol") in protocol)]
    assets = {str(asset.get("ip") or asset["id"]): asset
              for asset in alerts.list_inventory("assets") if in_scope(asset, scope)}
    ips = sorted({edge["source"] for edge in edges} | {edge["target"] for edge in edges})
    counts = alert_counts(alerts, ips, scope)
    nodes = []
    for ip in ips:
        asset = assets.get(ip, {})
        nodes.append({"id": ip, "label": ip, "roles": asset.get("roles") or ["unknown"],
                      "mac": asset.get("mac"), "alerts": counts[ip][0],
                      "events": asset.get("events", 0)})
    return {"nodes": nodes, "edges": with_pair_alerts(alerts, edges, scope)}


@router.get("/sensors", tags=["sensors"])
def sensors(request: Request, user: Viewer) -> dict[str, Any]:
    """Each sensor with its last statistics; a live sensor that has not
    reported for ``silent_after`` seconds is ``silent`` (a replay is a
    finished run and stays ``ok``)."""
    silent_after: float = request.app.state.silent_after
    now = time.time()
    result = []
    scope = user_scope(request, user)
    for sensor in store(request).list_inventory("sensors"):
        if not in_scope(sensor, scope):
            continue
        last = sensor.get("last_seen")
        quiet = last is None or now - parse_time(str(last)) > silent_after
        status = "silent" if sensor.get("kind") == "live" and quiet else "ok"
        result.append({**sensor, "status": status})
    return {"sensors": result}
