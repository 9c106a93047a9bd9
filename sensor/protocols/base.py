"""What a protocol module declares, and the interface the flow table drives."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sensor.event import IcsEvent
    from sensor.flows.flow import Flow

Emit = Callable[["IcsEvent"], None]


class Session(Protocol):
    """The decoder of one flow. The flow table calls ``feed`` with reassembled,
    in-order TCP bytes (or one UDP datagram), ``gap`` when bytes were lost
    (``size`` 0 when unknown: a capture picked up mid-stream), and ``close``
    when the flow ends or is evicted; ``close`` returns counters to add to
    the run's summary (e.g. requests never answered)."""

    def feed(self, from_initiator: bool, data: bytes, ts: float, packet: int) -> None: ...

    def gap(self, from_initiator: bool, size: int) -> None: ...

    def close(self, ts: float) -> Mapping[str, int]: ...


@dataclass(frozen=True, slots=True)
class ProtocolSpec:
    """A protocol's declaration, found by the registry in its module as ``PROTOCOL``.

    ``probe(data, from_initiator)`` judges the first payload of a flow on a
    port no protocol claims; it must be cheap and strict (header invariants,
    not guesses). ``session(flow, emit)`` builds the decoder of one flow.
    """

    name: str
    transport: str  # "tcp", "udp" or "tcp+udp"
    ports: tuple[int, ...]
    probe: Callable[[bytes, bool], bool]
    session: Callable[[Flow, Emit], Session]
    operations: tuple[str, ...] = ()
    # (name, kind) of each protocol field, for rule validation; kinds are
    # listed in detectors/rules/fields.py.
    fields: tuple[tuple[str, str], ...] = ()
    # Fields computed from an event rather than read off the wire, e.g.
    # the address range a Modbus request touches: name -> (kind, function).
    derived: Mapping[str, tuple[str, Callable[[IcsEvent], Any]]] = field(
        default_factory=dict
    )
