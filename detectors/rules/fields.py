"""The catalogue of fields a rule may test, generated from `IcsEvent` and the
protocols' own field lists, with the getter and the kind of each.

Kinds: ``int``, ``float``, ``str``, ``bool``, ``ip``, ``list[int]``,
``list[float]``, ``list[bool]``, ``list[str]``, ``map`` and ``range`` (an inclusive
``(first, last)`` address pair a protocol derives, e.g. Modbus registers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from operator import attrgetter
from typing import Any

from sensor.event import IcsEvent
from sensor.protocols import registry

Getter = Callable[[IcsEvent], Any]

# Fields whose value is the same for every event of one flow direction: a
# matcher testing only these is evaluated once per flow direction.
FLOW_FIELDS = frozenset({
    "source.ip", "source.port", "source.mac", "destination.ip", "destination.port",
    "destination.mac", "network.transport", "network.community_id",
})

KINDS = frozenset(
    {"int", "float", "str", "bool", "ip", "list[int]", "list[float]", "list[bool]", "list[str]",
     "map", "range"}
)
# Kinds whose values are lists or dicts: keyed on (thresholds, distinct
# counts) through a hashable copy.
UNHASHABLE_KINDS = frozenset({"list[int]", "list[float]", "list[bool]", "list[str]", "map"})


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: str
    get: Getter
    protocol: str | None = None
    # The key in `IcsEvent.fields` of a protocol field read off the wire
    # (None for core and derived fields).
    key: str | None = None


def _attr(name: str) -> Getter:
    getter: Getter = attrgetter(name)
    return getter


def _core() -> dict[str, Field]:
    core: list[tuple[str, str, Getter]] = [
        ("protocol", "str", _attr("protocol")),
        ("direction", "str", _attr("direction")),
        ("access", "str", _attr("access")),
        ("operation", "str", _attr("operation")),
        ("unit", "int", _attr("unit")),
        ("malformed", "str", _attr("malformed")),
        ("exception", "bool", _attr("exception")),
        ("packet", "int", _attr("packet")),
        ("response_time", "float", _attr("response_time")),
        ("source.ip", "ip", _attr("src_ip")),
        ("source.port", "int", _attr("src_port")),
        ("source.mac", "str", _attr("src_mac")),
        ("destination.ip", "ip", _attr("dst_ip")),
        ("destination.port", "int", _attr("dst_port")),
        ("destination.mac", "str", _attr("dst_mac")),
        ("network.transport", "str", lambda event: event.flow.transport_name),
        ("network.community_id", "str", lambda event: event.flow.community_id),
    ]
    return {name: Field(name, kind, get) for name, kind, get in core}


def _protocol_field(protocol: str, name: str) -> Getter:
    def get(event: IcsEvent) -> Any:
        if event.protocol != protocol:
            return None
        return event.fields.get(name)

    return get


def _derived_field(protocol: str, derive: Callable[[IcsEvent], Any]) -> Getter:
    def get(event: IcsEvent) -> Any:
        if event.protocol != protocol:
            return None
        return derive(event)

    return get


@cache
def catalogue() -> dict[str, Field]:
    """Every field name a rule may use: the core ones and ``<protocol>.<field>``."""
    fields = _core()
    for spec in registry():
        for name, kind in spec.fields:
            full = f"{spec.name}.{name}"
            fields[full] = Field(full, kind, _protocol_field(spec.name, name), spec.name, name)
        for name, (kind, derive) in spec.derived.items():
            full = f"{spec.name}.{name}"
            fields[full] = Field(full, kind, _derived_field(spec.name, derive), spec.name)
    return fields


def protocol_names() -> frozenset[str]:
    return frozenset(spec.name for spec in registry())


def operations_of(protocol: str) -> tuple[str, ...]:
    for spec in registry():
        if spec.name == protocol:
            return spec.operations
    return ()
