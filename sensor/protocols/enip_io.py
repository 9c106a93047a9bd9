"""EtherNet/IP implicit (class 0/1) I/O on UDP 2222 (CIP Vol. 2 §2-6, §3-3.4).

Each datagram is a Common Packet Format with no encapsulation header: a
sequenced address item (connection id, 32-bit sequence number) and a
connected data item. Whether the data starts with a 16-bit CIP sequence
count and a run/idle header depends on the Forward Open that set the
connection up, which travels on another (TCP) flow: like Wireshark without
that Forward Open, icswatch keeps the whole item as ``data``.

One event per datagram, ``io_data``, access ``other`` (cyclic data is
neither a read nor a write request); direction ``request`` from the side that
sent first. Field names are Wireshark's without ``enip.``/``cipio.``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from sensor.event import BAD_LENGTH, OTHER, REQUEST, RESPONSE, IcsEvent
from sensor.flows.flow import CONFIRMED, Flow
from sensor.protocols.base import Emit, ProtocolSpec
from sensor.protocols.enip import ItemType, parse_cpf

PROTOCOL_NAME: Final = "enip_io"
VIOLATIONS_BEFORE_DISABLE: Final = 3


class EnipIoSession:
    """Decoder of one implicit I/O flow."""

    __slots__ = ("emit", "flow", "violations")

    def __init__(self, flow: Flow, emit: Emit) -> None:
        self.flow = flow
        self.emit = emit
        self.violations = 0

    def feed(self, from_initiator: bool, data: bytes, ts: float, packet: int) -> None:
        fields: dict[str, Any] = {}
        malformed, item_type, start, end = parse_cpf(data, 0, len(data), fields)
        if item_type == ItemType.CONNECTED_DATA:
            fields["data"] = data[start:end].hex()
        if malformed is None and "cpf.sai.connid" not in fields:
            malformed = BAD_LENGTH if not fields.get("cpf.typeid") else None
        flow = self.flow
        if malformed is None:
            if flow.analyzer_status != CONFIRMED:
                flow.confirm()
        else:
            self.violations += 1
            flow.violation(f"{malformed} in implicit I/O datagram")
            if flow.analyzer_status != CONFIRMED \
                    and self.violations >= VIOLATIONS_BEFORE_DISABLE:
                flow.disable(f"not EtherNet/IP I/O: {malformed}")
        self.emit(IcsEvent(ts, flow, from_initiator, PROTOCOL_NAME,
                           REQUEST if from_initiator else RESPONSE, OTHER, "io_data", None,
                           fields, packet, malformed))

    def gap(self, from_initiator: bool, size: int) -> None:
        """Datagrams are never split: nothing to resynchronise."""

    def close(self, ts: float) -> Mapping[str, int]:
        return {}


def probe(data: bytes, from_initiator: bool) -> bool:
    """Two items, a sequenced address (8 bytes) then connected data, filling
    the datagram exactly."""
    if len(data) < 18 or data[0:2] != b"\x02\x00" or data[2:6] != b"\x02\x80\x08\x00":
        return False
    return data[14:16] == b"\xb1\x00" and 18 + (data[16] | data[17] << 8) == len(data)


FIELDS: Final = (
    ("cpf.itemcount", "int"), ("cpf.typeid", "list[int]"), ("cpf.length", "list[int]"),
    ("cpf.sai.connid", "int"), ("cpf.sai.seq", "int"), ("cpf.cai.connid", "int"),
    ("cpf.data", "str"), ("data", "str"),
)

PROTOCOL: Final = ProtocolSpec(
    name=PROTOCOL_NAME,
    transport="udp",
    ports=(2222,),
    probe=probe,
    session=EnipIoSession,
    operations=("io_data",),
    fields=FIELDS,
)
