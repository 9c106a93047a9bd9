"""`Alert`: what a detector concluded, and its Elastic Common Schema document."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Final

from detectors.attack import TECHNIQUE_NAMES_ZH, TECHNIQUES
from sensor.ecs import endpoint, event_document, iso_timestamp
from sensor.event import IcsEvent

SEVERITIES: Final = ("low", "medium", "high", "critical")
# ECS event.severity is numeric; these follow the usual 21/47/73/99 scale.
SEVERITY_SCORES: Final = {"low": 21, "medium": 47, "high": 73, "critical": 99}
MAX_SAMPLE_EVENTS: Final = 10


@dataclass(slots=True, eq=False)
class Alert:
    """One alert. ``events`` holds up to `MAX_SAMPLE_EVENTS` of the events that
    caused it (first ones kept); ``count`` is how many there were in all."""

    rule_id: str
    title: str
    title_zh: str
    severity: str
    techniques: tuple[str, ...]
    explanation: str
    first_ts: float
    last_ts: float
    count: int
    events: list[IcsEvent]
    protocol: str
    source_ip: str | None
    destination_ip: str | None
    description: str = ""
    # The rule's Chinese description and explanation ("" when it has none).
    description_zh: str = ""
    explanation_zh: str = ""
    references: tuple[str, ...] = ()
    organization: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """Deterministic: the same capture replayed gives the same ids, so a
        store indexing by id never holds an alert twice."""
        first = self.events[0] if self.events else None
        basis = "|".join((
            self.rule_id,
            repr(self.first_ts),
            first.flow.community_id if first is not None else "",
            str(first.packet) if first is not None else "",
            self.source_ip or "",
            self.destination_ip or "",
        ))
        return hashlib.sha1(basis.encode()).hexdigest()[:20]


def alert_document(alert: Alert) -> dict[str, Any]:
    """The ECS document of an alert, the same for JSON lines and Elasticsearch.

    ECS fields (``rule.description``, ``message``, ``event.reason``,
    ``threat.technique.name``) are English; the Chinese texts live beside
    them under ``ics.alert``: ``title_zh``, ``description_zh`` and
    ``reason_zh`` (when the rule has them) and ``technique_names_zh`` (in the
    order of ``threat.technique.id``)."""
    first = alert.events[0] if alert.events else None
    doc: dict[str, Any] = {
        "@timestamp": iso_timestamp(alert.last_ts),
        "event": {
            "kind": "alert",
            "id": alert.id,
            "category": ["intrusion_detection"],
            "type": ["info"],
            "dataset": "ics.alert",
            "severity": SEVERITY_SCORES[alert.severity],
            "start": iso_timestamp(alert.first_ts),
            "end": iso_timestamp(alert.last_ts),
            "count": alert.count,
            "reason": alert.explanation,
        },
        "rule": {
            "id": alert.rule_id,
            "name": alert.title,
            "description": alert.description,
            "reference": list(alert.references),
        },
        "threat": {
            "framework": "MITRE ATT&CK for ICS",
            "technique": {
                "id": list(alert.techniques),
                "name": [TECHNIQUES.get(t, t) for t in alert.techniques],
            },
        },
        "message": alert.explanation,
        "network": {"protocol": alert.protocol},
        "ics": {
            "alert": {
                "severity": alert.severity,
                "title_zh": alert.title_zh,
                **({"description_zh": alert.description_zh} if alert.description_zh else {}),
                **({"reason_zh": alert.explanation_zh} if alert.explanation_zh else {}),
                "technique_names_zh": [TECHNIQUE_NAMES_ZH.get(t, t) for t in alert.techniques],
                "events": [event_document(e) for e in alert.events],
            },
        },
    }
    if first is not None:
        doc["network"]["transport"] = first.flow.transport_name
        doc["network"]["community_id"] = first.flow.community_id
        doc["source"] = endpoint(first.src_ip, first.src_port, first.src_mac)
        doc["destination"] = endpoint(first.dst_ip, first.dst_port, first.dst_mac)
    if alert.source_ip is not None:
        doc.setdefault("source", {})["ip"] = alert.source_ip
    if alert.destination_ip is not None:
        doc.setdefault("destination", {})["ip"] = alert.destination_ip
    if alert.organization is not None:
        doc["organization"] = {"id": alert.organization}
    if alert.extra:
        doc["ics"]["alert"].update(alert.extra)
    return doc
