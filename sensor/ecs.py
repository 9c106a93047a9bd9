"""`IcsEvent` → Elastic Common Schema document: the one place events become JSON-able.

The same document goes to JSON lines, the embedded store and Elasticsearch.
Protocol fields sit under ``ics.<protocol>``; the protocol-neutral ones
(access, operation, direction, unit, malformed) under ``ics`` itself.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sensor.event import IcsEvent
from sensor.flows.flow import Flow

_last_second = -1
_last_prefix = ""


def iso_timestamp(ts: float) -> str:
    """ISO 8601 in UTC with microseconds, as Elasticsearch's ``date`` reads it.

    Consecutive events mostly share their second: its formatted prefix is
    kept, so most calls only format the microseconds.
    """
    global _last_second, _last_prefix
    micros = round(ts * 1_000_000)
    second, fraction = divmod(micros, 1_000_000)
    if second != _last_second:
        _last_prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        _last_second = second
    return f"{_last_prefix}{fraction:06d}Z"


def endpoint(ip: str, port: int, mac: str | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"ip": ip, "port": port}
    if mac is not None:
        doc["mac"] = mac.replace(":", "-").upper()  # ECS writes MACs as AA-BB-…
    return doc


_DATASETS: dict[str, str] = {}


def _flow_parts(flow: Flow) -> tuple[dict[str, Any], dict[str, Any], str, str]:
    """The ECS pieces every event of a flow shares, built once per flow:
    initiator and responder endpoints, transport, Community ID."""
    parts = flow.ecs_parts
    if parts is None:
        parts = flow.ecs_parts = (
            endpoint(flow.initiator_ip, flow.initiator_port, flow.initiator_mac),
            endpoint(flow.responder_ip, flow.responder_port, flow.responder_mac),
            flow.transport_name,
            flow.community_id,
        )
    return parts


def event_document(event: IcsEvent) -> dict[str, Any]:
    """A fresh document per event (nested dicts are never shared between
    documents, so a consumer may change one)."""
    ics: dict[str, Any] = {
        "direction": event.direction,
        "access": event.access,
        "operation": event.operation,
    }
    if event.unit is not None:
        ics["unit"] = event.unit
    if event.malformed is not None:
        ics["malformed"] = event.malformed
    if event.exception:
        ics["exception"] = True
    if event.response_time is not None:
        ics["response_time"] = round(event.response_time, 6)
        ics["request_packet"] = event.request_packet
    if event.packet:
        ics["packet"] = event.packet
    protocol = event.protocol
    ics[protocol] = event.fields
    dataset = _DATASETS.get(protocol)
    if dataset is None:
        dataset = _DATASETS[protocol] = f"ics.{protocol}"
    initiator, responder, transport, community = _flow_parts(event.flow)
    if event.from_initiator:
        source, destination = initiator.copy(), responder.copy()
    else:
        source, destination = responder.copy(), initiator.copy()
    return {
        "@timestamp": iso_timestamp(event.ts),
        "event": {
            "kind": "event",
            "category": ["network"],
            "type": ["protocol"],
            "dataset": dataset,
            "action": event.operation,
            "outcome": "failure" if event.exception or event.malformed else "success",
        },
        "network": {"protocol": protocol, "transport": transport, "community_id": community},
        "source": source,
        "destination": destination,
        "ics": ics,
    }
