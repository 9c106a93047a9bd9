"""S7comm-plus (S7-1200/1500, TIA Portal) identification: header, protocol
version, opcode, function, sequence number, session id and the integrity
part, carried in COTP data TPDUs beside classic S7comm on TCP 102.

There is no public specification and Wireshark 4.0 ships no dissector for
it: the layout and the field names (``s7comm-plus.*`` without the prefix)
follow Thomas Wiens' s7commwireshark plugin (GPL, read, not copied):

- header: protocol id 0x72, version (1 = V1, 2 = V2, 3 = V3, 0xFE extended
  keep-alive, 0xFF keep-alive), data length (2 bytes);
- V3 only: the integrity part (digest length 0x20, 32-byte digest) right
  after the header; V2: integrity id and digest at the end of the data;
- data: opcode (0x31 request, 0x32 response, 0x33 notification, 0x02
  response2), reserved (2), function (2), reserved (2), sequence number (2);
  requests then carry a session id (4) and transport flags (1), responses
  transport flags (1);
- trailer: 0x72, version, 0x0000. A PDU without trailer is a fragment; the
  fragments' data parts are joined until one with a trailer arrives.

Versions 2 and 3 protect every PDU of the session with an integrity digest
(a keyed hash of the session key); V1 sessions (S7-1200 up to firmware 3)
have none, so ``integrity_protected`` is a property of the session.

The session class lives in `sensor.protocols.s7comm`, which frames TPKT/COTP
and hands S7comm-plus PDUs to `decode` here; this module declares the
``s7comm_plus`` protocol so rules can name its fields and operations.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Final

from sensor.event import (
    BAD_LENGTH,
    BAD_VALUE,
    CONTROL,
    OTHER,
    READ,
    REQUEST,
    RESPONSE,
    TRUNCATED,
    UNKNOWN_FUNCTION,
    WRITE,
)
from sensor.protocols.base import Emit, ProtocolSpec

if TYPE_CHECKING:
    from sensor.flows.flow import Flow
    from sensor.protocols.base import Session

PROTOCOL_NAME: Final = "s7comm_plus"
PROTOCOL_ID: Final = 0x72
HEADER_LENGTH: Final = 4
TRAILER_LENGTH: Final = 4
DIGEST_LENGTH: Final = 32


class Version(IntEnum):
    V1 = 0x01
    V2 = 0x02
    V3 = 0x03
    EXTENDED_KEEP_ALIVE = 0xFE
    KEEP_ALIVE = 0xFF


class Opcode(IntEnum):
    REQUEST = 0x31
    RESPONSE = 0x32
    NOTIFICATION = 0x33
    RESPONSE2 = 0x02


class FunctionCode(IntEnum):
    ERROR = 0x04B1
    EXPLORE = 0x04BB
    CREATE_OBJECT = 0x04CA
    DELETE_OBJECT = 0x04D4
    SET_VARIABLE = 0x04F2
    GET_VARIABLE = 0x04FC
    ADD_LINK = 0x0506
    REMOVE_LINK = 0x051A
    GET_LINK = 0x0524
    SET_MULTI_VARIABLES = 0x0542
    GET_MULTI_VARIABLES = 0x054C
    BEGIN_SEQUENCE = 0x0556
    END_SEQUENCE = 0x0560
    INVOKE = 0x056B
    SET_VAR_SUB_STREAMED = 0x057C
    GET_VAR_SUB_STREAMED = 0x0586
    GET_VARIABLES_ADDRESS = 0x0590
    ABORT = 0x059A


OPERATIONS: Final = {f.value: f.name.lower() for f in FunctionCode}
# Without decoding the object model, a function says what kind of thing is
# done: writing variables (which also starts and stops a CPU), reading them,
# or managing objects and sessions. Invoke calls a method on the PLC.
ACCESS: Final = {
    FunctionCode.SET_VARIABLE: WRITE, FunctionCode.SET_MULTI_VARIABLES: WRITE,
    FunctionCode.SET_VAR_SUB_STREAMED: WRITE, FunctionCode.GET_VARIABLE: READ,
    FunctionCode.GET_MULTI_VARIABLES: READ, FunctionCode.GET_VAR_SUB_STREAMED: READ,
    FunctionCode.GET_VARIABLES_ADDRESS: READ, FunctionCode.EXPLORE: READ,
    FunctionCode.GET_LINK: READ, FunctionCode.INVOKE: CONTROL,
}

_HEADER = struct.Struct("!BBH")
_DATA_HEAD = struct.Struct("!BHHHH")
_U32 = struct.Struct("!I")


class Decoded:
    """What the S7 session needs to emit one S7comm-plus event."""

    __slots__ = ("access", "direction", "fields", "malformed", "operation", "pair_key")

    def __init__(self) -> None:
        self.direction = REQUEST
        self.access = OTHER
        self.operation = "unknown_function"
        self.fields: dict[str, Any] = {}
        self.malformed: str | None = None
        self.pair_key = -1  # sequence number pairing a response to its request


def complete(pdu: bytes) -> bool | None:
    """Is ``pdu`` (a whole COTP payload starting with 0x72) a complete
    S7comm-plus PDU (True), a fragment without trailer (False), or neither
    (None: let `decode` report it)?"""
    if len(pdu) < HEADER_LENGTH:
        return None
    version = pdu[1]
    if version >= Version.EXTENDED_KEEP_ALIVE:
        return True
    length = (pdu[2] << 8) | pdu[3]
    if len(pdu) == HEADER_LENGTH + length:
        return False
    return None if len(pdu) != HEADER_LENGTH + length + TRAILER_LENGTH else True


def decode(pdu: bytes, data: bytes | None = None) -> Decoded:
    """Decode one S7comm-plus PDU. ``data``, when given, replaces the PDU's
    own data part: the joined data parts of a fragmented PDU."""
    out = Decoded()
    fields = out.fields
    size = len(pdu)
    if size < HEADER_LENGTH:
        fields["header.protid"] = pdu[0]
        out.malformed = TRUNCATED
        out.operation = "malformed"
        return out
    protid, version, length = _HEADER.unpack_from(pdu, 0)
    fields["header.protid"] = protid
    fields["header.version"] = version
    if version == Version.KEEP_ALIVE:
        fields["header.keepalive_seqnum"] = pdu[2]
        out.operation = "keep_alive"
        if size != HEADER_LENGTH:
            out.malformed = BAD_LENGTH
        return out
    fields["header.datlg"] = length
    if version == Version.EXTENDED_KEEP_ALIVE:
        out.operation = "extended_keep_alive"
        if size != HEADER_LENGTH + length:
            out.malformed = BAD_LENGTH
        return out
    if version not in (Version.V1, Version.V2, Version.V3):
        out.operation = "malformed"
        out.malformed = BAD_VALUE
        return out
    fields["integrity_protected"] = version != Version.V1
    end = HEADER_LENGTH + length
    if end + TRAILER_LENGTH != size:
        out.malformed = BAD_LENGTH
        end = min(end, size)
    else:
        fields["trailer.protid"] = pdu[end]
        fields["trailer.version"] = pdu[end + 1]
        if pdu[end] != PROTOCOL_ID or pdu[end + 1] != version or pdu[end + 2] | pdu[end + 3]:
            out.malformed = BAD_VALUE
    body = pdu[HEADER_LENGTH:end] if data is None else data
    p = 0
    if version == Version.V3:
        # The integrity part leads every V3 PDU (fragments included).
        if len(body) < 1 + DIGEST_LENGTH or body[0] != DIGEST_LENGTH:
            out.malformed = out.malformed or BAD_LENGTH
            out.operation = "malformed"
            return out
        fields["integrity.digestlen"] = DIGEST_LENGTH
        p = 1 + DIGEST_LENGTH
    elif version == Version.V2 and len(body) >= 1 + DIGEST_LENGTH + 11 \
            and body[-1 - DIGEST_LENGTH] == DIGEST_LENGTH:
        fields["integrity.digestlen"] = DIGEST_LENGTH
    if len(body) - p < 1:
        out.malformed = out.malformed or TRUNCATED
        out.operation = "malformed"
        return out
    opcode = body[p]
    fields["data.opcode"] = opcode
    if opcode == Opcode.NOTIFICATION:
        out.direction = RESPONSE
        out.operation = "notification"
        out.access = READ
        return out
    if opcode not in (Opcode.REQUEST, Opcode.RESPONSE, Opcode.RESPONSE2):
        out.malformed = out.malformed or UNKNOWN_FUNCTION
        out.operation = "unknown_function"
        return out
    request = opcode == Opcode.REQUEST
    out.direction = REQUEST if request else RESPONSE
    need = 14 if request else 10
    if len(body) - p < need:
        out.malformed = out.malformed or TRUNCATED
        out.operation = "malformed"
        return out
    _op, reserved1, function, reserved2, seqnum = _DATA_HEAD.unpack_from(body, p)
    fields["data.reserved1"] = reserved1
    fields["data.function"] = function
    fields["data.reserved2"] = reserved2
    fields["data.seqnum"] = seqnum
    if request:
        (fields["data.sessionid"],) = _U32.unpack_from(body, p + 9)
        fields["data.transportflags"] = body[p + 13]
    else:
        fields["data.transportflags"] = body[p + 9]
    out.pair_key = seqnum
    name = OPERATIONS.get(function)
    if name is None:
        out.operation = "unknown_function"
        out.malformed = out.malformed or UNKNOWN_FUNCTION
    else:
        out.operation = name
        out.access = ACCESS.get(function, OTHER)
    return out


def probe(data: bytes, from_initiator: bool) -> bool:
    """S7comm-plus is found by the ``s7comm`` protocol's probe, which frames
    TPKT/COTP for both; this declaration never claims a flow itself."""
    return False


def _session(flow: Flow, emit: Emit) -> Session:
    from sensor.protocols.s7comm import S7Session  # import cycle: s7comm imports this module

    return S7Session(flow, emit)


FIELDS: Final = (
    ("header.protid", "int"), ("header.version", "int"), ("header.datlg", "int"),
    ("header.keepalive_seqnum", "int"), ("integrity.digestlen", "int"),
    ("integrity_protected", "bool"), ("data.opcode", "int"), ("data.reserved1", "int"),
    ("data.function", "int"), ("data.reserved2", "int"), ("data.seqnum", "int"),
    ("data.sessionid", "int"), ("data.transportflags", "int"), ("trailer.protid", "int"),
    ("trailer.version", "int"),
)

PROTOCOL: Final = ProtocolSpec(
    name=PROTOCOL_NAME,
    transport="tcp",
    ports=(102,),
    probe=probe,
    session=_session,
    operations=tuple(sorted(set(OPERATIONS.values()) | {
        "notification", "keep_alive", "extended_keep_alive", "unknown_function", "malformed",
    })),
    fields=FIELDS,
)
