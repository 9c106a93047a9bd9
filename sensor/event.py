"""`IcsEvent`: one industrial protocol operation, the record sensors hand to detectors.

An event is built once per protocol data unit on the hot path, so it holds a
reference to its flow (shared by every event of the flow) instead of copies of
the endpoints, and a plain dict of protocol fields named as Wireshark names
them (``func_code``, ``reference_num``, ``word_cnt``…, without the
``modbus.`` prefix; the protocol name is the namespace).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from sensor.flows.flow import Flow

# Direction of the operation, not of the packet: a Modbus response travels
# from the responder (server) to the initiator (client).
REQUEST: Final = "request"
RESPONSE: Final = "response"

# The protocol-neutral access classes (DESIGN.md "Core records").
READ: Final = "read"
WRITE: Final = "write"
CONTROL: Final = "control"
DIAGNOSTIC: Final = "diagnostic"
PROGRAM: Final = "program"
FILE: Final = "file"
OTHER: Final = "other"
ACCESS_CLASSES: Final = frozenset({READ, WRITE, CONTROL, DIAGNOSTIC, PROGRAM, FILE, OTHER})

# The fixed vocabulary of `malformed` reasons (Zeek's weirds, in spirit).
TRUNCATED: Final = "truncated"
BAD_LENGTH: Final = "bad_length"
BAD_PROTOCOL_ID: Final = "bad_protocol_id"
BAD_CRC: Final = "bad_crc"
BAD_VALUE: Final = "bad_value"
UNKNOWN_FUNCTION: Final = "unknown_function"
MALFORMED_REASONS: Final = frozenset(
    {TRUNCATED, BAD_LENGTH, BAD_PROTOCOL_ID, BAD_CRC, BAD_VALUE, UNKNOWN_FUNCTION}
)


@dataclass(slots=True, eq=False)
class IcsEvent:
    """One request, response or exception of an industrial protocol.

    ``from_initiator`` tells which side of ``flow`` sent the PDU; ``source``
    and ``destination`` of the ECS record follow from it. ``packet`` is the
    1-based number of the frame that completed the PDU in its capture (the
    number Wireshark shows), 0 when unknown.
    """

    ts: float
    flow: Flow
    from_initiator: bool
    protocol: str
    direction: str
    access: str
    operation: str
    unit: int | None
    fields: dict[str, Any]
    packet: int = 0
    malformed: str | None = None
    response_time: float | None = None
    request_packet: int = 0
    exception: bool = False

    @property
    def src_ip(self) -> str:
        return self.flow.initiator_ip if self.from_initiator else self.flow.responder_ip

    @property
    def dst_ip(self) -> str:
        return self.flow.responder_ip if self.from_initiator else self.flow.initiator_ip

    @property
    def src_port(self) -> int:
        return self.flow.initiator_port if self.from_initiator else self.flow.responder_port

    @property
    def dst_port(self) -> int:
        return self.flow.responder_port if self.from_initiator else self.flow.initiator_port

    @property
    def src_mac(self) -> str | None:
        return self.flow.initiator_mac if self.from_initiator else self.flow.responder_mac

    @property
    def dst_mac(self) -> str | None:
        return self.flow.responder_mac if self.from_initiator else self.flow.initiator_mac
