"""`IcsEvent` → Elastic Common Schema document: the one place events become JSON-able.

The same document goes to JSON lines, the embedded store and Elasticsearch.
Protocol fields sit under ``ics.<protocol>``; the protocol-neutral ones
(access, operation, direction, unit, malformed) under ``ics`` itself.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sensor.event import IcsEvent

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


def event_document(event: IcsEvent) -> dict[str, Any]:
    flow = event.flow
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
    ics[event.protocol] = event.fields
    outcome = "failure" if event.exception or event.malformed else "success"
    return {
        "@timestamp": iso_timestamp(event.ts),
        "event": {
            "kind": "event",
            "category": ["network"],
            "type": ["protocol"],
            "dataset": f"ics.{event.protocol}",
            "action": event.operation,
            "outcome": outcome,
        },
        "network": {
            "protocol": event.protocol,
            "transport": flow.transport_name,
            "community_id": flow.community_id,
        },
        "source": endpoint(event.src_ip, event.src_port, event.src_mac),
        "destination": endpoint(event.dst_ip, event.dst_port, event.dst_mac),
        "ics": ics,
    }
