"""The tier API: what a child console sends up and pulls down over its link,
the organisations a user may see, grading, and the roll-up dashboards.

A child authenticates with the token this console issued to it (`icswatch
tier child add`), never with a user session; every record it sends must come
from the child itself or from below it, or the whole batch is refused.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from console.notices import NoticeBook, NoticeError, NoticeForbidden
from console.routes.common import orgs, store, user_scope
from console.stores.base import INVENTORY_KINDS, AlertQuery
from console.tiers import GRADES, Organization, Organizations, weight
from console.web_auth import Admin, Viewer, session_token

router = APIRouter(prefix="/api", tags=["tiers"])
MAX_RECORDS: Final = 5000
RECORD_TYPES: Final = ("alert", "organization", "notice_step", *INVENTORY_KINDS)
OPEN_STATUSES: Final = ("open", "acknowledged")
# Points per open alert of each severity in a ranking, before the grade weight.
SEVERITY_POINTS: Final = {"critical": 10, "high": 4, "medium": 2, "low": 1}


def child_of(request: Request) -> str:
    """The child organisation whose link token the request carries (as a
    bearer token: a browser's session cookie never counts here)."""
    token, from_cookie = session_token(request)
    child = orgs(request).child_of_token(token) if token and not from_cookie else None
    if child is None:
        raise HTTPException(401, "a child console's link token is needed here",
                            headers={"WWW-Authenticate": "Bearer"})
    return child


class Batch(BaseModel):
    records: list[dict[str, Any]] = Field(max_length=MAX_RECORDS)


def _origin(record: dict[str, Any]) -> str | None:
    organization = record.get("doc", {}).get("organization")
    value = organization.get("id") if isinstance(organization, dict) else None
    return value if isinstance(value, str) else None


def _check(request: Request, child: str, number: int, record: Any) -> None:
    """Refuse (403/422) a record the child may not send."""
    if not isinstance(record, dict) or record.get("type") not in RECORD_TYPES \
            or not isinstance(record.get("doc"), dict):
        raise HTTPException(422, f"record {number}: needs a type (one of "
                                 f"{', '.join(RECORD_TYPES)}) and a doc object")
    kind = record["type"]
    if kind in ("organization", "notice_step"):
        return  # checked by Organizations.accept_from_child / NoticeBook.apply
    origin = _origin(record)
    if origin is None:
        raise HTTPException(422, f"record {number} ({kind}): no organization.id")
    known = orgs(request).get(origin)
    if origin not in orgs(request).subtree(child) or known is None \
            or known.kind != "enterprise":
        raise HTTPException(403, f"record {number} ({kind}): {child} may not send data of "
                                 f"{origin}")
    if kind == "alert":
        event = record["doc"].get("event")
        if not isinstance(event, dict) or not isinstance(event.get("id"), str):
            raise HTTPException(422, f"record {number}: an alert without event.id")
    elif not isinstance(record["doc"].get("id"), str):
        raise HTTPException(422, f"record {number} ({kind}): no id")


def _inventory_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """An inventory document filed under its organisation, so two
    enterprises' hosts with one address stay two documents."""
    origin = doc["organization"]["id"]
    prefix = f"{origin}/"
    doc_id = doc["id"]
    return doc if doc_id.startswith(prefix) else {**doc, "id": prefix + doc_id}


@router.post("/tier/ingest", status_code=200)
def ingest(request: Request, child: Annotated[str, Depends(child_of)],
           batch: Batch) -> dict[str, Any]:
    """A child's batch: alerts, organisations, inventory and notice steps.
    All are checked before any is stored; stored records are idempotent
    (alerts and steps by id, the rest by replacement), so a batch sent twice
    is stored once."""
    child = child_of(request)
    book: NoticeBook = request.app.state.notices
    for number, record in enumerate(batch.records):
        _check(request, child, number, record)
    alerts: list[dict[str, Any]] = []
    inventory: dict[str, list[dict[str, Any]]] = {kind: [] for kind in INVENTORY_KINDS}
    steps = 0
    for number, record in enumerate(batch.records):
        kind, doc = record["type"], record["doc"]
        if kind == "organization":
            try:
                orgs(request).accept_from_child(child, doc)
            except ValueError as exc:
                raise HTTPException(403, f"record {number} (organization): {exc}") from None
        elif kind == "notice_step":
            try:
                steps += book.apply(doc, came_from=child, from_parent=False)
            except NoticeForbidden as exc:
                raise HTTPException(403, f"record {number} (notice step): {exc}") from None
            except NoticeError as exc:
                raise HTTPException(422, f"record {number} (notice step): {exc}") from None
        elif kind == "alert":
            alerts.append(doc)
        else:
            inventory[kind].append(_inventory_doc(doc))
    target = store(request)
    if alerts:
        target.write_alerts(alerts)
    for kind, documents in inventory.items():
        if documents:
            target.write_inventory(kind, documents)
    # The child drops the batch from its spool on this answer: it must be
    # committed first (the embedded store holds writes in a transaction).
    target.flush()
    return {"child": child, "alerts": len(alerts), "notice_steps": steps,
            "records": len(batch.records)}


@router.get("/tier/notices")
def notices_for_child(
    request: Request, child: Annotated[str, Depends(child_of)],
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> dict[str, Any]:
    """Notice steps for the child and the enterprises below it, after the
    child's cursor; steps the child itself sent up are left out."""
    book: NoticeBook = request.app.state.notices
    steps, last = book.steps_for_child(child, after, limit)
    return {"steps": steps, "cursor": last, "from": orgs(request).own}


@router.get("/tier")
def identity(request: Request, user: Viewer) -> dict[str, Any]:
    """This console's tier and organisation, and (for admins) its links."""
    tier = request.app.state.tier
    forwarder = getattr(request.app.state, "forwarder", None)
    found: dict[str, Any] = {
        "tier": tier.tier, "id": tier.org_id, "name": tier.name, "province": tier.province,
        "uplink": None if tier.uplink is None else {
            "url": tier.uplink.url, "min_severity": tier.uplink.min_severity,
            "status": forwarder.status() if forwarder is not None else None},
    }
    if user.may("admin"):
        found["links"] = orgs(request).links()
    return found


@router.get("/orgs")
def list_orgs(request: Request, user: Viewer) -> dict[str, Any]:
    """The organisations the user may see (their own and those below it)."""
    scope = user_scope(request, user)
    known = orgs(request).all()
    own = user.org or orgs(request).own
    return {"organizations": [org.as_dict() for org in known
                              if scope is None or org.id in scope or org.id == own]}


class Grading(BaseModel):
    key_enterprise: bool | None = None
    grade: str | None = Field(default=None, description=", ".join(GRADES))


@router.put("/orgs/{org_id}/grading")
def set_grading(request: Request, user: Admin, org_id: str, body: Grading) -> dict[str, Any]:
    """A province (or the nation) marks key enterprises and grades them."""
    registry = orgs(request)
    own = user.org or registry.own
    mine = registry.get(own)
    target = registry.get(org_id)
    if target is None or mine is None or org_id not in registry.subtree(own):
        raise HTTPException(404, f"no organisation {org_id}")
    if mine.kind == "enterprise":
        raise HTTPException(403, "an enterprise does not grade itself; its province does")
    try:
        return registry.set_grading(org_id, key_enterprise=body.key_enterprise,
                                    grade=body.grade).as_dict()
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


def _points(counts: dict[str, dict[str, int]], org_id: str) -> int:
    return sum(SEVERITY_POINTS[s] * n for s, n in counts.get(org_id, {}).items())


@router.get("/rollup")
def rollup(request: Request, user: Viewer) -> dict[str, Any]:
    """Enterprises (and, at the national centre, provinces) ranked by their
    open alerts weighted by severity and by grade, with unresolved and
    overdue notices."""
    registry = orgs(request)
    scope = user_scope(request, user)
    alerts = store(request)
    counts: dict[str, dict[str, int]] = {}
    for severity in SEVERITY_POINTS:
        query = AlertQuery(statuses=OPEN_STATUSES, severities=[severity], scope=scope)
        for org_id, count in alerts.top(query, "organization.id", 10_000):
            counts.setdefault(org_id, {})[severity] = count
    # Every alert has one of the four severities: the totals are the sums.
    open_total = {org_id: sum(by.values()) for org_id, by in counts.items()}
    book: NoticeBook = request.app.state.notices
    notices = book.counts_by_target()
    enterprises = [org for org in registry.all() if org.kind == "enterprise"
                   and (scope is None or org.id in scope)]

    def row(org: Organization) -> dict[str, Any]:
        points = _points(counts, org.id)
        return {**org.as_dict(), "open_alerts": open_total.get(org.id, 0),
                "open_by_severity": counts.get(org.id, {}),
                "open_critical": counts.get(org.id, {}).get("critical", 0),
                "notices_open": notices.get(org.id, {}).get("open", 0),
                "notices_overdue": notices.get(org.id, {}).get("overdue", 0),
                "score": round(points * weight(org), 1)}

    ranked = sorted((row(org) for org in enterprises),
                    key=lambda r: (-r["score"], -r["notices_overdue"], r["id"]))
    provinces = []
    for province in (org for org in registry.all() if org.kind == "province"
                     and (scope is None or province_visible(org.id, scope, registry))):
        members = [r for r in ranked if r["parent"] == province.id]
        score = sum(r["score"] for r in members)
        provinces.append({
            "id": province.id, "name": province.name, "enterprises": len(members),
            "key_enterprises": sum(1 for r in members if r["key_enterprise"]),
            "open_alerts": sum(r["open_alerts"] for r in members),
            "open_critical": sum(r["open_critical"] for r in members),
            "notices_open": sum(r["notices_open"] for r in members),
            "notices_overdue": sum(r["notices_overdue"] for r in members),
            "score": round(score, 1), "risk": _risk(members)})
    provinces.sort(key=lambda p: (-p["score"], p["id"]))
    return {"tier": request.app.state.tier.tier, "enterprises": ranked,
            "provinces": provinces}


def province_visible(province: str, scope: list[str], registry: Organizations) -> bool:
    return province in scope or any(e in scope for e in registry.enterprises_of(province))


def _risk(members: list[dict[str, Any]]) -> str:
    """A province's colour: high with an open critical alert at a key or
    high-grade enterprise or an overdue notice, medium with any open high or
    critical alert, else low."""
    if any(r["notices_overdue"] or (r["open_critical"] and (r["key_enterprise"]
                                                          or r["grade"] == "high"))
           for r in members):
        return "high"
    if any(r["open_by_severity"].get("critical") or r["open_by_severity"].get("high")
           for r in members):
        return "medium"
    return "low"

