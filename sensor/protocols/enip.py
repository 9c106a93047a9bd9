"""EtherNet/IP encapsulation (CIP Vol. 2 chapter 2) and the CIP it carries.

TCP 44818 carries a stream of encapsulation messages (24-byte header, then
``length`` bytes of command data), split anywhere and several per segment;
UDP 44818 carries one or more per datagram (ListIdentity broadcasts and their
replies). SendRRData and SendUnitData wrap CIP in the Common Packet Format;
`sensor.protocols.enip_cip` decodes the CIP.

One event per CIP service: an encapsulation message without CIP (NOP,
ListIdentity, RegisterSession…) is one event; a CIP request or response is one
event, except that a Multiple Service Packet is one event *per embedded
service* (each with its own path, access and status, so that one write hidden
among reads is seen as a write) and an Unconnected Send is the event of the
request it carries, with the send's ``cm.*`` fields and route path beside it.
Every event of a message repeats the encapsulation and CPF fields.

Field names are Wireshark's without the ``enip.`` or ``cip.`` prefix
(``command``, ``session``, ``cpf.typeid``, ``service``, ``class``,
``symbol``, ``cm.ot_connid``, ``id.product_name``, ``lir.name``…; no two
collide). Wireshark has no name for a few things icswatch keeps:
``connection_path`` and ``route_path`` (the EPATHs of Forward Open/Close and
Unconnected Send, hex), ``attributes`` (the attribute ids a Get/Set Attribute
List or Get Attributes All names; Wireshark calls each ``cip.attribute``),
``tag.*`` (Logix tag service element count, offset, data type, which
Wireshark 4.0 leaves in ``cip.data``) and ``identity`` (the device identity
of a ListIdentity or Identity object reply, as one map for the inventory).

Header invariants decide ownership: a known command with options 0. Three
violations on a flow never confirmed disable the analyzer; on a confirmed flow
each becomes a ``malformed`` event. An unknown command is skipped by its
length like Wireshark does, unless that length runs past the segment: then
decoding resumes at the next segment that starts with a plausible header.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from enum import IntEnum
from typing import Any, Final

from sensor.event import (
    BAD_LENGTH,
    BAD_VALUE,
    DIAGNOSTIC,
    OTHER,
    REQUEST,
    RESPONSE,
    TRUNCATED,
    UNKNOWN_FUNCTION,
    IcsEvent,
)
from sensor.flows.flow import CONFIRMED, UDP, Flow
from sensor.protocols import enip_cip
from sensor.protocols.base import Emit, ProtocolSpec
from sensor.protocols.enip_cip import CipRequest, Parsed, parse_request, parse_response

PROTOCOL_NAME: Final = "enip"
HEADER: Final = 24
MAX_PENDING: Final = 1024
VIOLATIONS_BEFORE_DISABLE: Final = 3

_HEADER = struct.Struct("<HHII8sI")
_U16 = struct.Struct("<H")
_U16X2 = struct.Struct("<HH")
_U32 = struct.Struct("<I")
_IFACE = struct.Struct("<IH")
_SOCKADDR = struct.Struct(">HH4s")
_IDENTITY = struct.Struct("<HHHHHIB")  # vendor, type, product, revision(BE), status, serial, len
_REVISION = struct.Struct(">H")


class Command(IntEnum):
    """Encapsulation commands, CIP Vol. 2 §2-3.2."""

    NOP = 0x0000
    LIST_SERVICES = 0x0004
    LIST_IDENTITY = 0x0063
    LIST_INTERFACES = 0x0064
    REGISTER_SESSION = 0x0065
    UNREGISTER_SESSION = 0x0066
    SEND_RR_DATA = 0x006F
    SEND_UNIT_DATA = 0x0070
    INDICATE_STATUS = 0x0072
    CANCEL = 0x0073
    START_DTLS = 0x00C8


class ItemType(IntEnum):
    """Common Packet Format item type ids, CIP Vol. 2 §2-6.3."""

    NULL_ADDRESS = 0x0000
    LIST_IDENTITY = 0x000C
    CIP_SECURITY = 0x0086
    CONNECTED_ADDRESS = 0x00A1
    CONNECTED_DATA = 0x00B1
    UNCONNECTED_DATA = 0x00B2
    LIST_SERVICES = 0x0100
    SOCKADDR_O_T = 0x8000
    SOCKADDR_T_O = 0x8001
    SEQUENCED_ADDRESS = 0x8002


# Plain ints for the hot path (an IntEnum member costs an attribute look-up).
_LIST_SERVICES: Final = int(Command.LIST_SERVICES)
_LIST_IDENTITY: Final = int(Command.LIST_IDENTITY)
_LIST_INTERFACES: Final = int(Command.LIST_INTERFACES)
_REGISTER_SESSION: Final = int(Command.REGISTER_SESSION)
_SEND_RR_DATA: Final = int(Command.SEND_RR_DATA)
_NULL_ADDRESS: Final = int(ItemType.NULL_ADDRESS)
_LIST_IDENTITY_ITEM: Final = int(ItemType.LIST_IDENTITY)
_CIP_SECURITY: Final = int(ItemType.CIP_SECURITY)
_CONNECTED_ADDRESS: Final = int(ItemType.CONNECTED_ADDRESS)
_CONNECTED_DATA: Final = int(ItemType.CONNECTED_DATA)
_UNCONNECTED_DATA: Final = int(ItemType.UNCONNECTED_DATA)
_LIST_SERVICES_ITEM: Final = int(ItemType.LIST_SERVICES)
_SOCKADDR_ITEMS: Final = (int(ItemType.SOCKADDR_O_T), int(ItemType.SOCKADDR_T_O))
_SEQUENCED_ADDRESS: Final = int(ItemType.SEQUENCED_ADDRESS)
COMMAND_NAMES: Final = {c.value: c.name.lower() for c in Command}
COMMAND_ACCESS: Final = {
    Command.LIST_SERVICES: DIAGNOSTIC, Command.LIST_IDENTITY: DIAGNOSTIC,
    Command.LIST_INTERFACES: DIAGNOSTIC,
}
# Commands whose data has a fixed size (RegisterSession: version and flags).
FIXED_LENGTH: Final = {Command.NOP: -1, Command.REGISTER_SESSION: 4,
                       Command.UNREGISTER_SESSION: 0}
CIP_COMMANDS: Final = frozenset({0x6F, 0x70})  # SendRRData, SendUnitData


class _Pending:
    """A request waiting for its response."""

    __slots__ = ("packet", "request", "ts")

    def __init__(self, ts: float, packet: int, request: CipRequest | None) -> None:
        self.ts = ts
        self.packet = packet
        self.request = request


def parse_cpf(data: bytes, p: int, end: int, fields: dict[str, Any]
              ) -> tuple[str | None, int, int, int]:
    """Decode a Common Packet Format at ``p`` into ``fields``; return the
    malformed reason (or None) and the type, start and end of its data item
    (type -1 when there is none)."""
    if end - p < 2:
        return BAD_LENGTH, -1, 0, 0
    count = data[p] | data[p + 1] << 8
    fields["cpf.itemcount"] = count
    p += 2
    types: list[int] = []
    lengths: list[int] = []
    malformed: str | None = None
    data_type, data_start, data_end = -1, 0, 0
    for _ in range(count):
        if end - p < 4:
            malformed = BAD_LENGTH
            break
        item_type, length = _U16X2.unpack_from(data, p)
        types.append(item_type)
        lengths.append(length)
        p += 4
        stop = p + length
        if stop > end:
            malformed = BAD_LENGTH
            stop = end
        if length:
            if item_type in (_UNCONNECTED_DATA, _CONNECTED_DATA):
                data_type, data_start, data_end = item_type, p, stop
            elif item_type == _CONNECTED_ADDRESS and stop - p >= 4:
                (fields["cpf.cai.connid"],) = _U32.unpack_from(data, p)
            elif item_type == _SEQUENCED_ADDRESS and stop - p >= 8:
                fields["cpf.sai.connid"], fields["cpf.sai.seq"] = struct.unpack_from(
                    "<II", data, p)
            elif item_type == _LIST_IDENTITY_ITEM:
                if not _list_identity_item(data, p, stop, fields):
                    malformed = BAD_LENGTH
            elif item_type == _LIST_SERVICES_ITEM:
                if stop - p >= 4:
                    # (Wireshark's lsr.capaflags.tcp/.udp bits stay in the
                    # value: a field cannot also be the parent of others
                    # once the event is a JSON document.)
                    fields["encapver"], fields["lsr.capaflags"] = _U16X2.unpack_from(data, p)
                if stop - p < 20:
                    malformed = BAD_LENGTH
                else:
                    fields["lsr.servicename"] = (
                        data[p + 4 : p + 20].split(b"\0", 1)[0].decode("latin-1"))
            elif item_type in _SOCKADDR_ITEMS and stop - p >= 16:
                _sockaddr(data, p, fields)
            elif item_type != _NULL_ADDRESS and item_type != _CIP_SECURITY:
                fields["cpf.data"] = data[p:stop].hex()
        p = stop
    if types:
        fields["cpf.typeid"] = types
        fields["cpf.length"] = lengths
    return malformed, data_type, data_start, data_end


def _sockaddr(data: bytes, p: int, fields: dict[str, Any]) -> None:
    family, port, address = _SOCKADDR.unpack_from(data, p)
    fields["sinfamily"] = family
    fields["sinport"] = port
    fields["sinaddr"] = f"{address[0]}.{address[1]}.{address[2]}.{address[3]}"
    fields["sinzero"] = data[p + 8 : p + 16].hex()


def _list_identity_item(data: bytes, p: int, end: int, fields: dict[str, Any]) -> bool:
    """The identity item of a ListIdentity reply, CIP Vol. 2 §2-4.3.2."""
    if end - p < 34:
        return False
    fields["encapver"] = data[p] | data[p + 1] << 8
    _sockaddr(data, p + 2, fields)
    (vendor, device_type, product, _revision, status, serial,
     name_length) = _IDENTITY.unpack_from(data, p + 18)
    fields["lir.vendor"] = vendor
    fields["lir.devtype"] = device_type
    fields["lir.prodcode"] = product
    (fields["lir.revision"],) = _REVISION.unpack_from(data, p + 24)
    fields["lir.status"] = status
    fields["lir.serial"] = serial
    fields["lir.namelen"] = name_length
    if p + 33 + name_length >= end:
        fields["lir.name"] = data[p + 33 : end].decode("latin-1")
        return False
    fields["lir.name"] = data[p + 33 : p + 33 + name_length].decode("latin-1")
    fields["lir.state"] = data[p + 33 + name_length]
    fields["identity"] = enip_cip.identity_summary(fields, "lir.")
    return True


def _header_plausible(data: bytes, offset: int) -> bool:
    """A known command with options 0: how a segment must start after a gap."""
    if len(data) - offset < HEADER:
        return False
    command = data[offset] | data[offset + 1] << 8
    options = _U32.unpack_from(data, offset + 20)[0]
    return command in COMMAND_NAMES and options == 0


class EnipSession:
    """Decoder of one EtherNet/IP flow (TCP or UDP)."""

    __slots__ = (
        "buffer_from_initiator",
        "buffer_from_responder",
        "emit",
        "flow",
        "pending",
        "resync_initiator",
        "resync_responder",
        "udp",
        "unanswered",
        "violations",
    )

    def __init__(self, flow: Flow, emit: Emit) -> None:
        self.flow = flow
        self.emit = emit
        self.udp = flow.transport == UDP
        self.buffer_from_initiator = b""
        self.buffer_from_responder = b""
        self.pending: dict[Any, list[_Pending]] = {}
        self.violations = 0
        self.unanswered = 0
        self.resync_initiator = False
        self.resync_responder = False

    # -- framing -----------------------------------------------------------

    def feed(self, from_initiator: bool, data: bytes, ts: float, packet: int) -> None:
        if self.udp:
            self._datagram(from_initiator, data, ts, packet)
            return
        if from_initiator:
            if self.buffer_from_initiator:
                data = self.buffer_from_initiator + data
                self.buffer_from_initiator = b""
            elif self.resync_initiator:
                if not _header_plausible(data, 0):
                    self._unframeable(data)
                    return
                self.resync_initiator = False
        else:
            if self.buffer_from_responder:
                data = self.buffer_from_responder + data
                self.buffer_from_responder = b""
            elif self.resync_responder:
                if not _header_plausible(data, 0):
                    self._unframeable(data)
                    return
                self.resync_responder = False
        size = len(data)
        offset = 0
        while size - offset >= 4:
            command = data[offset] | data[offset + 1] << 8
            end = offset + HEADER + (data[offset + 2] | data[offset + 3] << 8)
            if command not in COMMAND_NAMES and (end > size or size - offset < HEADER):
                # No framing to trust: the rest of the segment is this message.
                self._message(from_initiator, data, offset, size, ts, packet)
                if from_initiator:
                    self.resync_initiator = True
                else:
                    self.resync_responder = True
                return
            if end > size:
                break
            self._message(from_initiator, data, offset, end, ts, packet)
            offset = end
        if offset < size:
            rest = data[offset:]
            if from_initiator:
                self.buffer_from_initiator = rest
            else:
                self.buffer_from_responder = rest

    def _datagram(self, from_initiator: bool, data: bytes, ts: float, packet: int) -> None:
        size = len(data)
        offset = 0
        while offset < size:
            end = size
            if size - offset >= 4:
                end = min(size, offset + HEADER + (data[offset + 2] | data[offset + 3] << 8))
            self._message(from_initiator, data, offset, end, ts, packet)
            offset = end

    def gap(self, from_initiator: bool, size: int) -> None:
        """Bytes were lost: drop the partial message and resynchronise on the
        next segment that starts with a plausible header."""
        if from_initiator:
            self.buffer_from_initiator = b""
            self.resync_initiator = True
        else:
            self.buffer_from_responder = b""
            self.resync_responder = True

    def close(self, ts: float) -> Mapping[str, int]:
        for from_initiator, rest in (
            (True, self.buffer_from_initiator),
            (False, self.buffer_from_responder),
        ):
            if rest and self.flow.session is not None:
                self._message(from_initiator, rest, 0, len(rest), ts, 0)
        self.buffer_from_initiator = self.buffer_from_responder = b""
        for waiting in self.pending.values():
            self.unanswered += len(waiting)
        self.pending.clear()
        return {"enip_unanswered_requests": self.unanswered} if self.unanswered else {}

    def _unframeable(self, data: bytes) -> None:
        flow = self.flow
        if flow.analyzer_status == CONFIRMED:
            return
        self.violations += 1
        if self.violations >= VIOLATIONS_BEFORE_DISABLE:
            flow.disable(f"not EtherNet/IP: {len(data)} bytes with no encapsulation header")

    # -- one encapsulation message ------------------------------------------

    def _message(self, from_initiator: bool, data: bytes, start: int, end: int, ts: float,
                 packet: int) -> None:
        """Decode ``data[start:end]``, one encapsulation message (complete
        unless the flow ended or the framing was lost)."""
        flow = self.flow
        direction = REQUEST if from_initiator else RESPONSE
        if end - start < HEADER:
            fields: dict[str, Any] = {}
            if end - start >= 4:
                fields["command"], fields["length"] = _U16X2.unpack_from(data, start)
            self._violation(f"truncated encapsulation header ({end - start} bytes)")
            self.emit(IcsEvent(ts, flow, from_initiator, PROTOCOL_NAME, direction, OTHER,
                               "malformed", None, fields, packet, TRUNCATED))
            return
        command, length, session, status, context, options = _HEADER.unpack_from(data, start)
        fields = {"command": command, "length": length, "session": session, "status": status}
        if command == _LIST_IDENTITY and (length == 0 or from_initiator):
            fields["listid_delay"] = data[start + 12] | data[start + 13] << 8
            fields["context"] = context[2:].hex()
        else:
            fields["context"] = context.hex()
        fields["options"] = options
        body = start + HEADER
        malformed: str | None = None
        if body + length > end:
            malformed = TRUNCATED if end == len(data) and not self.udp else BAD_LENGTH
        operation = COMMAND_NAMES.get(command)
        if operation is None:
            if length:
                fields["encap_data"] = data[body:end].hex()
            self._violation(f"unknown encapsulation command 0x{command:04x}")
            self.emit(IcsEvent(ts, flow, from_initiator, PROTOCOL_NAME, direction, OTHER,
                               "unknown_command", None, fields, packet, UNKNOWN_FUNCTION,
                               exception=status != 0))
            return
        if command in CIP_COMMANDS and length:
            self._cip_message(from_initiator, command, data, body, end, fields, malformed,
                              ts, packet)
            return
        fixed = FIXED_LENGTH.get(command)
        if command == _REGISTER_SESSION and end - body >= 4:
            fields["rs.version"], fields["rs.flags"] = _U16X2.unpack_from(data, body)
        elif command in (_LIST_SERVICES, _LIST_IDENTITY, _LIST_INTERFACES) and length:
            reason = parse_cpf(data, body, end, fields)[0]
            malformed = malformed or reason
        elif command in CIP_COMMANDS and status == 0:
            malformed = malformed or BAD_LENGTH  # no interface handle, no CPF
        if fixed is not None and fixed >= 0 and length != fixed and malformed is None \
                and status == 0:
            malformed = BAD_LENGTH
        if options != 0 and malformed is None:
            malformed = BAD_VALUE
        response_time: float | None = None
        request_packet = 0
        key: Any = (session, fields["context"]) if command in CIP_COMMANDS else command
        if from_initiator:
            self._remember(key, _Pending(ts, packet, None))
        else:
            request = self._answer(key)
            if request is not None:
                response_time = ts - request.ts
                request_packet = request.packet
        if malformed is None:
            if flow.analyzer_status != CONFIRMED:
                flow.confirm()
        else:
            self._violation(f"{malformed} in {operation}")
        self.emit(IcsEvent(ts, flow, from_initiator, PROTOCOL_NAME, direction,
                           COMMAND_ACCESS.get(command, OTHER), operation, None, fields, packet,
                           malformed, response_time, request_packet, status != 0))

    def _remember(self, key: Any, pending: _Pending) -> None:
        """Keep a request until its reply; at most MAX_PENDING per flow (the
        oldest are dropped as never answered)."""
        table = self.pending
        waiting = table.get(key)
        if waiting is None:
            if len(table) >= MAX_PENDING:
                self.unanswered += len(table.pop(next(iter(table))))
            table[key] = [pending]
            return
        if len(waiting) >= MAX_PENDING:
            del waiting[0]
            self.unanswered += 1
        waiting.append(pending)

    def _answer(self, key: Any) -> _Pending | None:
        """The oldest request waiting under ``key``, forgotten."""
        waiting = self.pending.get(key)
        if not waiting:
            return None
        request = waiting.pop(0)
        if not waiting:
            del self.pending[key]
        return request

    def _violation(self, reason: str) -> None:
        flow = self.flow
        self.violations += 1
        flow.violation(reason)
        if flow.analyzer_status != CONFIRMED and self.violations >= VIOLATIONS_BEFORE_DISABLE:
            flow.disable(f"not EtherNet/IP: {reason}")

    def _cip_message(self, from_initiator: bool, command: int, data: bytes, body: int, end: int,
                     fields: dict[str, Any], malformed: str | None, ts: float,
                     packet: int) -> None:
        """SendRRData / SendUnitData: interface handle, timeout, CPF, CIP."""
        flow = self.flow
        if end - body < 6:
            self._violation("SendRRData/SendUnitData without interface handle and timeout")
            self.emit(IcsEvent(ts, flow, from_initiator, PROTOCOL_NAME,
                               REQUEST if from_initiator else RESPONSE, OTHER,
                               COMMAND_NAMES[command], None, fields, packet, BAD_LENGTH))
            return
        iface, fields["timeout"] = _IFACE.unpack_from(data, body)
        fields["srrd.iface" if command == _SEND_RR_DATA else "sud.iface"] = iface
        reason, item_type, p, stop = parse_cpf(data, body + 6, end, fields)
        malformed = malformed or reason
        key: Any
        parsed: list[Parsed]
        if item_type == _CONNECTED_DATA and stop - p >= 2:
            sequence = data[p] | data[p + 1] << 8
            fields["seq"] = sequence
            key = sequence
            p += 2
        else:
            key = (fields["session"], fields["context"])
        carries_cip = item_type >= 0 and stop - p >= 2
        parsed = [({}, COMMAND_NAMES[command], OTHER, None, False, None)]
        response_time: float | None = None
        request_packet = 0
        if from_initiator:
            request = None
            if carries_cip:
                parsed, request = parse_request(data, p, stop)
            self._remember(key, _Pending(ts, packet, request))
        else:
            pending = self._answer(key)
            if pending is not None:
                response_time = ts - pending.ts
                request_packet = pending.packet
            if carries_cip:
                parsed = parse_response(data, p, stop,
                                        pending.request if pending is not None else None)
        direction = REQUEST if from_initiator else RESPONSE
        status_error = fields["status"] != 0
        last = len(parsed) - 1
        for index, (cip_fields, operation, access, reason, exception, _) in enumerate(parsed):
            event_fields = fields if index == last else dict(fields)
            event_fields.update(cip_fields)
            bad = malformed or reason
            if bad is None:
                if flow.analyzer_status != CONFIRMED:
                    flow.confirm()
            else:
                self._violation(f"{bad} in {operation}")
            self.emit(IcsEvent(ts, flow, from_initiator, PROTOCOL_NAME, direction, access,
                               operation, None, event_fields, packet, bad, response_time,
                               request_packet, exception or status_error))


def probe(data: bytes, from_initiator: bool) -> bool:
    """Is this payload a run of whole encapsulation messages with known
    commands and options 0? Finds EtherNet/IP on other ports."""
    size = len(data)
    offset = 0
    while size - offset >= HEADER:
        if not _header_plausible(data, offset):
            return False
        offset += HEADER + (data[offset + 2] | data[offset + 3] << 8)
    return offset == size and size > 0


FIELDS: Final = (
    ("command", "int"), ("length", "int"), ("session", "int"), ("status", "int"),
    ("context", "str"), ("listid_delay", "int"), ("options", "int"), ("encap_data", "str"),
    ("rs.version", "int"), ("rs.flags", "int"), ("srrd.iface", "int"), ("sud.iface", "int"),
    ("timeout", "int"), ("cpf.itemcount", "int"), ("cpf.typeid", "list[int]"),
    ("cpf.length", "list[int]"), ("cpf.cai.connid", "int"), ("cpf.sai.connid", "int"),
    ("cpf.sai.seq", "int"), ("cpf.data", "str"), ("seq", "int"), ("encapver", "int"),
    ("sinfamily", "int"), ("sinport", "int"), ("sinaddr", "ip"), ("sinzero", "str"),
    ("lir.vendor", "int"), ("lir.devtype", "int"), ("lir.prodcode", "int"),
    ("lir.revision", "int"), ("lir.status", "int"), ("lir.serial", "int"),
    ("lir.namelen", "int"), ("lir.name", "str"), ("lir.state", "int"),
    ("lsr.capaflags", "int"), ("lsr.servicename", "str"),
    # CIP
    ("service", "int"), ("request_path_size", "int"), ("epath", "str"), ("class", "int"),
    ("instance", "int"), ("attribute", "int"), ("member", "int"), ("connpoint", "int"),
    ("symbol", "str"), ("port", "int"), ("linkaddress.byte", "int"), ("genstat", "int"),
    ("addstat_size", "int"), ("addstat", "list[int]"), ("data", "str"),
    ("attributes", "list[int]"), ("getlist.attr_count", "int"),
    ("getlist.attr_status", "list[int]"), ("setlist.attr_count", "int"),
    ("setlist.attr_status", "list[int]"), ("reset.type", "int"), ("create.instance", "int"),
    ("find_next_object.max_instance", "int"), ("msp.num_services", "int"),
    ("msp.offset", "int"), ("class_revision", "int"), ("max_instance", "int"),
    ("num_instance", "int"), ("num_class_attr", "int"), ("num_inst_attr", "int"),
    ("id.vendor_id", "int"), ("id.device_type", "int"), ("id.product_code", "int"),
    ("id.major_rev", "int"), ("id.minor_rev", "int"), ("id.status", "int"),
    ("id.serial_number", "int"), ("id.product_name", "str"), ("id.state", "int"),
    ("id.config_value", "int"), ("id.heartbeat", "int"), ("identity", "map"),
    ("tag.type", "int"), ("tag.elements", "int"), ("tag.offset", "int"),
    # Connection Manager
    ("cm.priority", "int"), ("cm.tick_time", "int"), ("cm.timeout_tick", "int"),
    ("cm.timeout", "int"), ("cm.ot_connid", "int"), ("cm.to_connid", "int"),
    ("cm.conn_serial_num", "int"), ("cm.vendor", "int"), ("cm.orig_serial_num", "int"),
    ("cm.timeout_multiplier", "int"), ("cm.otrpi", "int"), ("cm.ot_net_params", "int"),
    ("cm.torpi", "int"), ("cm.to_net_params", "int"), ("cm.transport_type_trigger", "int"),
    ("cm.connpath_size", "int"), ("connection_path", "str"), ("cm.otapi", "int"),
    ("cm.toapi", "int"), ("cm.app_reply_size", "int"), ("cm.app_reply_data", "str"),
    ("cm.remain_path_size", "int"), ("cm.msg_req_size", "int"),
    ("cm.route_path_size", "int"), ("route_path", "str"),
)

def target(event: IcsEvent) -> str | None:
    """What a CIP service addresses, readable: the tag (``SCADA[1]``) or
    the object path (``class 0x01 instance 1 attribute 7``)."""
    fields = event.fields
    symbol = fields.get("symbol")
    member = fields.get("member")
    if symbol is not None:
        return f"{symbol}[{member}]" if member is not None else str(symbol)
    cls = fields.get("class")
    if cls is None:
        return None
    parts = [f"class 0x{cls:02x}"]
    for name in ("instance", "attribute", "member"):
        value = fields.get(name)
        if value is not None:
            parts.append(f"{name} {value}")
    return " ".join(parts)


PROTOCOL: Final = ProtocolSpec(
    name=PROTOCOL_NAME,
    transport="tcp+udp",
    ports=(44818,),
    probe=probe,
    session=EnipSession,
    operations=tuple(sorted(
        set(COMMAND_NAMES.values()) | enip_cip.OPERATIONS
        | {"unknown_command", "unconnected_send", "malformed"}
    )),
    fields=FIELDS,
    derived={"target": ("str", target)},
)
