"""Every protocol's events index into Elasticsearch: decoders keep
Wireshark's field names, where ``sco`` and ``sco.se`` (IEC 104) or ``ctl``
and ``ctl.clr`` (DNP3) sit side by side; the events template keeps each
protocol's fields flat (``subobjects: false``) so such pairs do not clash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from console.stores.elasticsearch import ElasticsearchStore
from sensor.ecs import event_document
from sensor.event import IcsEvent
from sensor.runtime import Sensor

PCAPS = Path(__file__).resolve().parents[3] / "pcaps"


def _events() -> dict[str, list[dict[str, Any]]]:
    by_protocol: dict[str, list[dict[str, Any]]] = {}

    def keep(event: IcsEvent) -> None:
        by_protocol.setdefault(event.protocol, []).append(event_document(event))

    Sensor(keep).replay(sorted(PCAPS.rglob("*.pcapng")))
    return by_protocol


def test_events_of_every_protocol_index_without_refusals(elasticsearch_url: str) -> None:
    store = ElasticsearchStore(elasticsearch_url)
    store.install_templates()
    by_protocol = _events()
    assert {"modbus", "dnp3", "iec104", "s7comm", "enip"} <= set(by_protocol)
    for protocol, documents in sorted(by_protocol.items()):
        refused = store.bulk("events", documents)
        assert not refused, f"{protocol}: {refused[0].reason}"
    store.flush()
    total = sum(len(documents) for documents in by_protocol.values())
    reply = store.client.count(index="icswatch-events")
    assert reply["count"] == total
    both = store.client.count(index="icswatch-events", query={"bool": {"filter": [
        {"exists": {"field": "ics.iec104.sco"}}, {"exists": {"field": "ics.iec104.sco.se"}}]}})
    assert both["count"] > 0
    store.close()
