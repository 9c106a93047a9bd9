"""The store contract: writing ECS documents and the queries the console needs.

Documents are the ECS dicts `sensor.ecs.event_document` and
`detectors.alert.alert_document` build; every alert carries a deterministic
``event.id``, so writing the same alert twice (a retry, a second replay)
keeps one copy. Both stores must answer every query below with the same
numbers for the same documents; tests compare them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

# Fields `Store.top` can aggregate on (ECS names).
TOP_FIELDS: Final = frozenset({
    "rule.id", "threat.technique.id", "source.ip", "destination.ip", "network.protocol",
    "ics.alert.severity", "organization.id", "ics.alert.status",
})
SEVERITY_ORDER: Final = ("low", "medium", "high", "critical")


@dataclass(frozen=True, slots=True)
class AlertQuery:
    """A filter over alerts. Every given criterion must hold; a list means
    any of its values. Times are epoch seconds, ``start`` inclusive, ``end``
    exclusive, on ``@timestamp`` (when the alert was last seen, to the
    microsecond). ``assets`` match an IP as source or destination. A lone
    string given where a sequence is expected is one value. ``text`` is
    full text over the rule name, the explanation (``message``) and the
    Chinese title: it is cut into terms as Elasticsearch's standard
    analyzer cuts it (`console.stores.sqlite.search_terms`), and every term
    must appear in one field, its tokens adjacent and in order. Pages are
    ordered by ``@timestamp`` then ``event.id``. ``cursor`` is the opaque
    value a previous `Page` returned. Malformed arguments (a foreign cursor,
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
    text: str | None = None
    size: int = 50
    cursor: str | None = None
    newest_first: bool = True


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

    def top(self, query: AlertQuery, field: str, size: int = 10) -> list[tuple[str, int]]:
        """The ``size`` most frequent values of ``field`` (one of
        `TOP_FIELDS`) among matching alerts, most frequent first, ties by
        value."""

    def flush(self) -> None:
        """Make everything written so far visible to queries."""

    def close(self) -> None: ...
