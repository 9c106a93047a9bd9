"""The store contract: writing ECS documents and the queries the console needs.

Documents are the ECS dicts `sensor.ecs.event_document` and
`detectors.alert.alert_document` build; every alert carries a deterministic
``event.id``, so writing the same alert twice (a retry, a second replay)
keeps one copy. Both stores must answer every query below with the same
numbers for the same documents; tests compare them.

Triage lives on the stored alert: ``ics.alert.status`` (one of `STATUSES`,
"open" when first written), ``ics.alert.assignee`` and
``ics.alert.resolution`` (absent when unset or cleared) and
``ics.alert.updated`` (ISO 8601, absent until the first triage). Writing an
alert again never resets them. Each stored alert also carries
``event.ingested``: when the store first wrote it (ISO 8601 UTC with
microseconds, the writer's clock), the order `Store.alerts_since` follows.

Inventory documents (`INVENTORY_KINDS`: the console's assets, communication
map and sensors) are kept beside the alerts, each with a string ``id``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

# Fields `Store.top` can aggregate on (ECS names).
TOP_FIELDS: Final = frozenset({
    "rule.id", "threat.technique.id", "source.ip", "destination.ip", "network.protocol",
    "ics.alert.severity", "organization.id", "ics.alert.status", "ics.alert.assignee",
})
SEVERITY_ORDER: Final = ("low", "medium", "high", "critical")
# Triage states of an alert (``ics.alert.status``); new alerts are "open".
STATUSES: Final = ("open", "acknowledged", "closed", "false_positive")
# Kinds of inventory document (`Store.write_inventory`).
INVENTORY_KINDS: Final = ("assets", "communications", "sensors")


@dataclass(frozen=True, slots=True)
class AlertQuery:
    """A filter over alerts. Every given criterion must hold; a list means
    any of its values. Times are epoch seconds, ``start`` inclusive, ``end``
    exclusive, on ``@timestamp`` (when the alert was last seen, to the
    microsecond). ``assets`` match an IP as source or destination;
    ``assignees`` match ``ics.alert.assignee`` (an unassigned alert matches
    none). A lone
    string given where a sequence is expected is one value. ``text`` is
    full text over the rule name, the explanation (``message``) and the
    Chinese title: it is cut into terms as Elasticsearch's standard
    analyzer cuts it (`console.stores.sqlite.search_terms`), and every term
    must appear in one field, its tokens adjacent and in order. Pages are
    ordered by ``@timestamp`` then ``event.id``. ``cursor`` is the opaque
    value a previous `Page` returned. ``scope``, unlike the filters, is what
    the reader may see at all: the organisation ids whose alerts are
    visible (None: every alert; empty: none). Malformed arguments (a foreign cursor,
    an unknown field, a zero interval) raise ValueError."""

    start: float | None = None
    end: float | None = None
    severities: Sequence[str] = ()
    protocols: Sequence[str] = ()
    rule_ids: Sequence[str] = ()
    techniques: Sequence[str] = ()
    assets: Sequence[str] = ()
    organizations: Sequence[str] = ()
    statuses: Sequence[str] = ()
    assignees: Sequence[str] = ()
    text: str | None = None
    size: int = 50
    cursor: str | None = None
    newest_first: bool = True
    scope: Sequence[str] | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of alerts, newest first (or oldest first), ``total`` counting
    every alert the query matches; ``cursor`` is None on the last page."""

    alerts: list[dict[str, Any]]
    total: int
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Bucket:
    """One time-histogram bucket: its start (epoch seconds) and alert counts
    by severity (only severities present)."""

    start: float
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class StoreError(Exception):
    """The store cannot be used (unreachable, refused, misconfigured); the
    message is one line for the operator."""


def iso_time(epoch: float) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC) of epoch seconds, rounded to
    the microsecond, as `sensor.ecs.iso_timestamp` writes it (without its
    cache, so threads may share it)."""
    second, micros = divmod(round(epoch * 1_000_000), 1_000_000)
    return f"{datetime.fromtimestamp(second, UTC):%Y-%m-%dT%H:%M:%S}.{micros:06d}Z"


def triage_fields(
    status: str | None, assignee: str | None, resolution: str | None, updated: float
) -> dict[str, str | None]:
    """The ``ics.alert`` fields `Store.set_triage` writes: None for a field
    to clear, a field left out is unchanged. Raises ValueError for a status
    not in `STATUSES`."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown status {status!r}: one of {', '.join(STATUSES)}")
    fields: dict[str, str | None] = {}
    if status is not None:
        fields["status"] = status
    for name, value in (("assignee", assignee), ("resolution", resolution)):
        if value is not None:
            if not isinstance(value, str):
                raise ValueError(f"the {name} must be a string")
            fields[name] = value or None
    fields["updated"] = iso_time(updated)
    return fields


def check_inventory(kind: str, documents: Sequence[dict[str, Any]] = ()) -> None:
    """ValueError for a kind not in `INVENTORY_KINDS` or a document without
    a non-empty string ``id``."""
    if kind not in INVENTORY_KINDS:
        raise ValueError(f"unknown inventory kind {kind!r}: one of {', '.join(INVENTORY_KINDS)}")
    for document in documents:
        doc_id = document.get("id") if isinstance(document, dict) else None
        if not isinstance(doc_id, str) or not doc_id:
            raise ValueError(f"a {kind} document needs a string id")


class Store(Protocol):
    def write_alerts(self, alerts: Sequence[dict[str, Any]]) -> None:
        """Store alert documents (idempotent by ``event.id``)."""

    def write_events(self, events: Sequence[dict[str, Any]]) -> None:
        """Store event documents (best effort, high volume)."""

    def get_alert(self, alert_id: str) -> dict[str, Any] | None: ...

    def search_alerts(self, query: AlertQuery) -> Page: ...

    def count_alerts(self, query: AlertQuery) -> int: ...

    def histogram(self, query: AlertQuery, interval: float) -> list[Bucket]:
        """Alerts per ``interval`` seconds (buckets aligned to multiples of
        the interval since the epoch, empty buckets omitted), by severity."""

    def top_many(self, query: AlertQuery,
                 sizes: Mapping[str, int]) -> dict[str, list[tuple[str, int]]]:
        """`top` of several fields (field -> size) at once, as a dashboard
        needs them."""

    def time_span(self, query: AlertQuery) -> tuple[float, float] | None:
        """The first and last ``@timestamp`` of matching alerts (epoch
        seconds, to the millisecond at least), None when none match."""

    def top(self, query: AlertQuery, field: str, size: int = 10) -> list[tuple[str, int]]:
        """The ``size`` most frequent values of ``field`` (one of
        `TOP_FIELDS`) among matching alerts, most frequent first, ties by
        value."""

    def set_triage(
        self, alert_id: str, *, status: str | None = None, assignee: str | None = None,
        resolution: str | None = None, updated: float,
    ) -> dict[str, Any] | None:
        """Set the alert's ``ics.alert.status`` (one of `STATUSES`, else
        ValueError), ``assignee`` and ``resolution`` (None leaves a field
        unchanged, "" clears it) and ``updated`` (ISO 8601 of the epoch
        seconds ``updated``). Visible to the next query at once (it also
        makes what this store wrote before visible). Returns the updated
        document, None for an unknown id."""

    def alerts_since(
        self, marker: str | None, size: int = 100
    ) -> tuple[list[dict[str, Any]], str]:
        """Alerts first stored after ``marker`` (an opaque value this
        method returned), oldest first, at most ``size``, and the marker to
        pass next. ``alerts_since(None)`` returns no alert and the marker of
        now: a live feed starts from there and sees every alert stored
        later exactly once (re-writing an alert does not make it new).
        ValueError for a marker this store did not return."""

    def first_marker(self) -> str:
        """The `alerts_since` marker before the first alert ever stored:
        a forwarder starting afresh reads the whole store from there."""

    def write_inventory(self, kind: str, documents: Sequence[dict[str, Any]]) -> None:
        """Store inventory documents of ``kind`` (one of `INVENTORY_KINDS`),
        each replacing the stored document of its ``id`` whole; visible to
        the next read. ValueError for an unknown kind or a document without
        a string ``id``."""

    def list_inventory(self, kind: str, size: int = 10_000) -> list[dict[str, Any]]:
        """Up to ``size`` documents of ``kind``, ordered by ``id``."""

    def get_inventory(self, kind: str, doc_id: str) -> dict[str, Any] | None: ...

    def flush(self) -> None:
        """Make everything written so far visible to queries."""

    def close(self) -> None: ...
