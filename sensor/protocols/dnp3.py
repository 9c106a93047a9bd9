"""DNP3 (IEEE 1815-2012) over TCP and UDP, port 20000.

Three layers, as the standard stacks them:

- data link (§9): frames start 0x05 0x64, carry a length, a control octet
  (DIR, PRM, FCB/FCV or DFC, function), destination and source addresses
  and a header CRC, then user data in 16-octet blocks each with its own
  CRC. A bad CRC makes the frame a ``bad_crc`` event and it is dropped, as
  a receiving station drops it;
- transport (§8): one octet (FIN, FIR, sequence) in front of each frame's
  user data; segments are reassembled per direction and per link address
  pair into application fragments;
- application (§4): control (FIR, FIN, CON, UNS, sequence), function code,
  internal indications in responses, then object headers (group,
  variation, qualifier, range) and the points of each object.

One `IcsEvent` per application fragment, with the points of its objects as
list fields, and one per link frame that carries no user data (link
status, resets, acknowledgements). Field names are Wireshark's (``dnp3.*``
without the prefix). Responses are paired with requests by application
sequence number and link addresses.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any, Final

from sensor.event import (
    BAD_CRC,
    BAD_LENGTH,
    BAD_PROTOCOL_ID,
    BAD_VALUE,
    CONTROL,
    OTHER,
    READ,
    REQUEST,
    RESPONSE,
    TRUNCATED,
    UNKNOWN_FUNCTION,
    WRITE,
    IcsEvent,
)
from sensor.flows.flow import CONFIRMED, UDP, Flow
from sensor.protocols.base import Emit, ProtocolSpec
from sensor.protocols.dnp3_objects import (
    ABSOLUTE,
    ACCESS,
    ANALOG_OUTPUT_BLOCK_GROUP,
    BO_COMMAND_EVENT,
    COMMAND_FUNCTIONS,
    CROB,
    CROB_GROUP,
    DELAY,
    DEVICE_ATTRIBUTE,
    FILE_OBJECT,
    FIXED,
    HEADER_ONLY_FUNCTIONS,
    IIN_BITS,
    NO_DATA,
    NO_RESPONSE_FUNCTIONS,
    OCTETS,
    OPERATION,
    PACKED_2BIT,
    PACKED_BIT,
    PRIMARY_LINK_OPERATIONS,
    RELATIVE,
    RESPONSE_FUNCTIONS,
    SECONDARY_LINK_OPERATIONS,
    USER_DATA_LINK_FUNCTIONS,
    ObjectSpec,
    object_spec,
    point_format,
)

PROTOCOL_NAME: Final = "dnp3"
PORT: Final = 20000
HEADER_LENGTH: Final = 10
MIN_LENGTH: Final = 5  # control, destination, source: a frame without user data
MAX_FRAGMENT: Final = 65536  # far above any stack's fragment size (2048 by default)
MAX_REASSEMBLIES: Final = 32  # link address pairs reassembling at once, per direction
MAX_PENDING_REQUESTS: Final = 1024
VIOLATIONS_BEFORE_DISABLE: Final = 3
IIN_ERRORS: Final = 0x0007  # IIN2: function not implemented, object unknown, bad parameter

# -- CRC (IEEE 1815-2012 §9.2.5: CRC-16/DNP, polynomial 0x3D65 reflected) ----


def _byte_table() -> list[int]:
    table = []
    for value in range(256):
        crc = value
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA6BC if crc & 1 else crc >> 1
        table.append(crc)
    return table


_T8: Final = _byte_table()
# Two octets at a time: a reflected 16-bit CRC XORed with the next 16 data
# bits depends on nothing else, so one look-up replaces two.
_T16: Final = [(c >> 8) ^ _T8[c & 0xFF] for c in ((x >> 8) ^ _T8[x & 0xFF] for x in range(65536))]
_WORDS: Final = [struct.Struct(f"<{n}H") for n in range(9)]


def crc16(data: bytes, start: int, end: int) -> int:
    """DNP3 CRC of ``data[start:end]`` (at most 16 octets), as stored on the
    wire (little-endian after the block)."""
    table = _T16
    crc = 0
    count = end - start
    for word in _WORDS[count >> 1].unpack_from(data, start):
        crc = table[crc ^ word]
    if count & 1:
        crc = (crc >> 8) ^ _T8[(crc ^ data[end - 1]) & 0xFF]
    return ~crc & 0xFFFF


def frame_size(length: int) -> int:
    """Octets on the wire of a frame whose length field is ``length``."""
    user = length - MIN_LENGTH
    return HEADER_LENGTH + user + 2 * ((user + 15) >> 4)


_ADDRESSES: Final = struct.Struct("<HHH")
_U8: Final = struct.Struct("<B")
_U16: Final = struct.Struct("<H")
_U32: Final = struct.Struct("<I")
_PREFIX_WIDTH: Final = (0, 1, 2, 4, 1, 2, 4)
_PREFIX_FORMAT: Final = ("", "B", "H", "I", "B", "H", "I")
_RANGES: Final = (struct.Struct("<BB"), struct.Struct("<HH"), struct.Struct("<II"))
_SINGLE: Final = (_U8, _U16, _U32)
_CROB: Final = "BBIIB"
_FILE_COMMAND: Final = struct.Struct("<HHIHHIIHHH")
_FILE_STATUS: Final = struct.Struct("<IIHHB")
_FILE_TRANSPORT: Final = struct.Struct("<II")
_FILE_DESCRIPTOR: Final = struct.Struct("<HHHIIHHH")
_POINT_STRUCTS: dict[tuple[int, int], struct.Struct] = {}


def _point_struct(gv: int, spec: ObjectSpec, prefix: int) -> struct.Struct:
    key = (gv, prefix)
    found = _POINT_STRUCTS.get(key)
    if found is None:
        body = _CROB if spec.layout == CROB else point_format(spec)
        found = _POINT_STRUCTS[key] = struct.Struct(f"<{_PREFIX_FORMAT[prefix]}{body}")
    return found


def _link_fields(length: int, ctl: int, dst: int, src: int) -> dict[str, Any]:
    """Wireshark's data link fields of one frame."""
    fields: dict[str, Any] = {
        "len": length, "ctl": ctl, "ctl.dir": bool(ctl & 0x80), "ctl.prm": bool(ctl & 0x40),
    }
    if ctl & 0x40:
        fields["ctl.fcb"] = bool(ctl & 0x20)
        fields["ctl.fcv"] = bool(ctl & 0x10)
        fields["ctl.prifunc"] = ctl & 0x0F
    else:
        fields["ctl.dfc"] = bool(ctl & 0x10)
        fields["ctl.secfunc"] = ctl & 0x0F
    fields["dst"] = dst
    fields["src"] = src
    return fields


class _Reassembly:
    """Transport segments of one fragment so far (§8.2)."""

    __slots__ = ("data", "next_seq")

    def __init__(self, data: bytes, next_seq: int) -> None:
        self.data = bytearray(data)
        self.next_seq = next_seq


class _Side:
    """Stream state of one direction of the flow."""

    __slots__ = ("buffer", "reassembly", "resync")

    def __init__(self) -> None:
        self.buffer = b""
        self.resync = False
        # Keyed by source << 16 | destination link address.
        self.reassembly: dict[int, _Reassembly] = {}


class _Request:
    """What a response needs from its request (kept until paired)."""

    __slots__ = ("access", "operation", "packet", "ts")

    def __init__(self, ts: float, packet: int, operation: str, access: str) -> None:
        self.ts = ts
        self.packet = packet
        self.operation = operation
        self.access = access


class _Malformed(Exception):
    """An object the fragment cannot hold: ``reason`` and a readable detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class Dnp3Session:
    """Decoder of one DNP3 flow (a TCP connection or a UDP conversation)."""

    __slots__ = (
        "emit",
        "flow",
        "from_initiator",
        "from_responder",
        "incomplete",
        "pending",
        "unanswered",
        "violations",
    )

    def __init__(self, flow: Flow, emit: Emit) -> None:
        self.flow = flow
        self.emit = emit
        self.from_initiator = _Side()
        self.from_responder = _Side()
        self.pending: dict[tuple[int, int, int], _Request] = {}
        self.violations = 0
        self.unanswered = 0
        self.incomplete = 0

    # -- data link framing -----------------------------------------------------

    def feed(self, from_initiator: bool, data: bytes, ts: float, packet: int) -> None:
        side = self.from_initiator if from_initiator else self.from_responder
        if side.buffer:
            data = side.buffer + data
            side.buffer = b""
        size = len(data)
        offset = 0
        if side.resync:
            offset = _find_frame(data, 0)
            if offset < 0:
                self._unframeable(data)
                if data[-1] == 0x05:
                    side.buffer = data[-1:]
                return
            side.resync = False
        while size - offset >= HEADER_LENGTH:
            if data[offset] != 0x05 or data[offset + 1] != 0x64:
                following = _find_frame(data, offset + 1)
                self._junk(from_initiator, data, offset, following, ts, packet)
                if following < 0:
                    side.resync = True
                    if data[-1] == 0x05:
                        side.buffer = data[-1:]
                    return
                offset = following
                continue
            length = data[offset + 2]
            ctl = data[offset + 3]
            dst, src, header_crc = _ADDRESSES.unpack_from(data, offset + 4)
            if crc16(data, offset, offset + 8) != header_crc:
                fields = _link_fields(length, ctl, dst, src)
                fields["hdr.CRC"] = header_crc
                self._link_malformed(from_initiator, fields, ctl, dst, src, BAD_CRC,
                                     f"header CRC 0x{header_crc:04x} is wrong", ts, packet)
                offset = _find_frame(data, offset + 2)
                if offset < 0:
                    side.resync = True
                    return
                continue
            if length < MIN_LENGTH:
                self._link_malformed(from_initiator, _link_fields(length, ctl, dst, src), ctl,
                                     dst, src, BAD_LENGTH,
                                     f"length {length} is below the minimum 5", ts, packet)
                offset += HEADER_LENGTH
                continue
            end = offset + frame_size(length)
            if end > size:
                break
            self._frame(from_initiator, side, data, offset, end, length, ctl, dst, src, ts,
                        packet)
            offset = end
        if offset < size:
            rest = data[offset:]
            if self.flow.transport == UDP:
                # A datagram holds whole frames: what is left is cut short.
                self._junk(from_initiator, data, offset, -1, ts, packet, TRUNCATED)
            else:
                side.buffer = rest

    def gap(self, from_initiator: bool, size: int) -> None:
        """Bytes were lost: drop the partial frame and the fragments being
        reassembled, and resynchronise on the next valid frame header."""
        side = self.from_initiator if from_initiator else self.from_responder
        side.buffer = b""
        side.resync = True
        self.incomplete += len(side.reassembly)
        side.reassembly.clear()

    def close(self, ts: float) -> Mapping[str, int]:
        for from_initiator, side in ((True, self.from_initiator), (False, self.from_responder)):
            if side.buffer and self.flow.session is not None:
                self._junk(from_initiator, side.buffer, 0, -1, ts, 0, TRUNCATED)
            side.buffer = b""
            self.incomplete += len(side.reassembly)
            side.reassembly.clear()
        self.unanswered += len(self.pending)
        self.pending.clear()
        counters: dict[str, int] = {}
        if self.unanswered:
            counters["dnp3_unanswered_requests"] = self.unanswered
        if self.incomplete:
            counters["dnp3_incomplete_fragments"] = self.incomplete
        return counters

    def _frame(
        self, from_initiator: bool, side: _Side, data: bytes, offset: int, end: int,
        length: int, ctl: int, dst: int, src: int, ts: float, packet: int,
    ) -> None:
        """One whole frame with a good header CRC: ``data[offset:end]``."""
        flow = self.flow
        if flow.analyzer_status != CONFIRMED:
            flow.confirm()
        function = ctl & 0x0F
        primary = ctl & 0x40
        if length == MIN_LENGTH:
            self._link_event(from_initiator, length, ctl, dst, src, ts, packet)
            return
        # User data: 16-octet blocks, each followed by its CRC.
        p = offset + HEADER_LENGTH
        blocks: list[bytes] = []
        number = 0
        while p < end:
            block_end = min(p + 16, end - 2)
            (block_crc,) = _U16.unpack_from(data, block_end)
            if crc16(data, p, block_end) != block_crc:
                fields = _link_fields(length, ctl, dst, src)
                if number == 0:
                    _transport_fields(data[p], fields)
                self._link_malformed(
                    from_initiator, fields, ctl, dst, src, BAD_CRC,
                    f"CRC 0x{block_crc:04x} of data block {number} is wrong", ts, packet)
                return
            blocks.append(data[p:block_end])
            p = block_end + 2
            number += 1
        if not primary or function not in USER_DATA_LINK_FUNCTIONS:
            self._link_malformed(
                from_initiator, _link_fields(length, ctl, dst, src), ctl, dst, src, BAD_LENGTH,
                f"link function {function} carries {length - MIN_LENGTH} octets of user data",
                ts, packet)
            return
        user = blocks[0] if number == 1 else b"".join(blocks)
        self._segment(from_initiator, side, user, length, ctl, dst, src, ts, packet)

    def _link_event(
        self, from_initiator: bool, length: int, ctl: int, dst: int, src: int, ts: float,
        packet: int,
    ) -> None:
        """A frame without user data: link reset, test, status, acknowledgement."""
        function = ctl & 0x0F
        primary = ctl & 0x40
        operation = (PRIMARY_LINK_OPERATIONS if primary else SECONDARY_LINK_OPERATIONS).get(
            function)
        fields = _link_fields(length, ctl, dst, src)
        if operation is None:
            self._link_malformed(from_initiator, fields, ctl, dst, src, UNKNOWN_FUNCTION,
                                 f"unknown {'primary' if primary else 'secondary'} link "
                                 f"function {function}", ts, packet)
            return
        if primary and function in USER_DATA_LINK_FUNCTIONS:
            self._link_malformed(from_initiator, fields, ctl, dst, src, BAD_LENGTH,
                                 "user data frame without user data", ts, packet)
            return
        self.emit(IcsEvent(
            ts, self.flow, from_initiator, PROTOCOL_NAME, REQUEST if primary else RESPONSE,
            OTHER, operation, dst if ctl & 0x80 else src, fields, packet,
        ))

    def _link_malformed(
        self, from_initiator: bool, fields: dict[str, Any], ctl: int, dst: int, src: int,
        reason: str, detail: str, ts: float, packet: int,
    ) -> None:
        fields["error"] = detail
        self._violation(detail)
        self.emit(IcsEvent(
            ts, self.flow, from_initiator, PROTOCOL_NAME,
            REQUEST if ctl & 0x80 else RESPONSE, OTHER, "malformed",
            dst if ctl & 0x80 else src, fields, packet, reason,
        ))

    def _junk(
        self, from_initiator: bool, data: bytes, offset: int, following: int, ts: float,
        packet: int, reason: str = BAD_PROTOCOL_ID,
    ) -> None:
        """Octets that are no frame: before the next frame header, or a
        frame cut short."""
        end = len(data) if following < 0 else following
        detail = (f"{end - offset} octets without a frame header (start 0x0564)"
                  if reason == BAD_PROTOCOL_ID else f"frame cut short after {end - offset} "
                  "octets")
        fields: dict[str, Any] = {"error": detail}
        if end - offset >= 3 and data[offset] == 0x05 and data[offset + 1] == 0x64:
            fields["len"] = data[offset + 2]
        self._violation(detail)
        self.emit(IcsEvent(
            ts, self.flow, from_initiator, PROTOCOL_NAME, REQUEST if from_initiator else RESPONSE,
            OTHER, "malformed", None, fields, packet, reason,
        ))

    def _violation(self, detail: str) -> None:
        flow = self.flow
        self.violations += 1
        flow.violation(detail)
        if flow.analyzer_status != CONFIRMED and self.violations >= VIOLATIONS_BEFORE_DISABLE:
            flow.disable(f"not DNP3: {detail}")

    def _unframeable(self, data: bytes) -> None:
        """A segment without a frame header while resynchronising: on a flow
        never confirmed as DNP3 it counts towards disabling the analyzer."""
        flow = self.flow
        if flow.analyzer_status == CONFIRMED:
            return
        self.violations += 1
        if self.violations >= VIOLATIONS_BEFORE_DISABLE:
            flow.disable(f"not DNP3: {len(data)} octets with no frame header")

    # -- transport reassembly ----------------------------------------------------

    def _segment(
        self, from_initiator: bool, side: _Side, user: bytes, length: int, ctl: int, dst: int,
        src: int, ts: float, packet: int,
    ) -> None:
        """One transport segment (§8.2): complete a fragment or keep it."""
        transport = user[0]
        seq = transport & 0x3F
        key = src << 16 | dst
        reassembly = side.reassembly
        partial = reassembly.get(key)
        if transport & 0x40:  # FIR
            if partial is not None:
                del reassembly[key]
                self.incomplete += 1
            if transport & 0x80:  # FIN: the common single-segment fragment
                self._fragment(from_initiator, user, 1, length, ctl, dst, src, ts, packet)
                return
            if len(reassembly) >= MAX_REASSEMBLIES:
                del reassembly[next(iter(reassembly))]
                self.incomplete += 1
            reassembly[key] = _Reassembly(user[1:], (seq + 1) & 0x3F)
            return
        if partial is None:
            # A middle or last segment of a fragment whose start was not
            # seen (capture started mid-fragment): nothing to decode.
            self.incomplete += 1
            return
        if seq != partial.next_seq:
            if seq == (partial.next_seq - 1) & 0x3F:
                return  # a repeated segment (§8.2.3.3): discarded
            del reassembly[key]
            fields = _link_fields(length, ctl, dst, src)
            _transport_fields(transport, fields)
            self._link_malformed(
                from_initiator, fields, ctl, dst, src, TRUNCATED,
                f"transport segment {seq} out of sequence (expected {partial.next_seq}): "
                "fragment dropped", ts, packet)
            return
        data = partial.data
        data += user[1:]
        if len(data) > MAX_FRAGMENT:
            del reassembly[key]
            fields = _link_fields(length, ctl, dst, src)
            _transport_fields(transport, fields)
            self._link_malformed(from_initiator, fields, ctl, dst, src, BAD_LENGTH,
                                 f"fragment longer than {MAX_FRAGMENT} octets", ts, packet)
            return
        partial.next_seq = (seq + 1) & 0x3F
        if transport & 0x80:
            del reassembly[key]
            self._fragment(from_initiator, bytes([transport]) + data, 1, length, ctl, dst, src,
                           ts, packet)

    # -- application layer -------------------------------------------------------

    def _fragment(
        self, from_initiator: bool, user: bytes, start: int, length: int, ctl: int, dst: int,
        src: int, ts: float, packet: int,
    ) -> None:
        """A whole application fragment ``user[start:]`` (``user[0]`` is the
        transport octet of its last segment)."""
        fields = _link_fields(length, ctl, dst, src)
        _transport_fields(user[0], fields)
        unit = dst if ctl & 0x80 else src
        size = len(user) - start
        if size < 2:
            fields["error"] = f"application fragment of {size} octets"
            self._violation(fields["error"])
            self.emit(IcsEvent(ts, self.flow, from_initiator, PROTOCOL_NAME,
                               REQUEST if ctl & 0x80 else RESPONSE, OTHER, "malformed", unit,
                               fields, packet, BAD_LENGTH))
            return
        control = user[start]
        function = user[start + 1]
        seq = control & 0x0F
        fields["al.ctl"] = control
        fields["al.fir"] = bool(control & 0x80)
        fields["al.fin"] = bool(control & 0x40)
        fields["al.con"] = bool(control & 0x20)
        fields["al.uns"] = bool(control & 0x10)
        fields["al.seq"] = seq
        fields["al.func"] = function
        response = function in RESPONSE_FUNCTIONS
        malformed: str | None = None
        p = start + 2
        exception = False
        if response:
            if size < 4:
                malformed = BAD_LENGTH
                fields["error"] = "response without internal indications"
            else:
                iin = user[p] << 8 | user[p + 1]
                fields["al.iin"] = iin
                exception = bool(iin & IIN_ERRORS)
                p += 2
        operation = OPERATION.get(function)
        groups: set[int] = set()
        if operation is None:
            operation = "unknown_function"
            malformed = UNKNOWN_FUNCTION
            fields["error"] = f"unknown application function code {function}"
        elif malformed is None:
            try:
                _objects(user, p, not response and function in HEADER_ONLY_FUNCTIONS, fields,
                         groups)
            except _Malformed as error:
                malformed = error.reason
                fields["error"] = error.detail
        access = ACCESS.get(function, OTHER)
        if function in COMMAND_FUNCTIONS:
            access = WRITE if ANALOG_OUTPUT_BLOCK_GROUP in groups and CROB_GROUP not in groups \
                else CONTROL
        response_time: float | None = None
        request_packet = 0
        if malformed is not None:
            self._violation(fields["error"])
        if not response:
            if function not in NO_RESPONSE_FUNCTIONS:
                pending = self.pending
                if len(pending) >= MAX_PENDING_REQUESTS:
                    del pending[next(iter(pending))]
                    self.unanswered += 1
                pending[(dst, src, seq)] = _Request(ts, packet, operation, access)
            direction = REQUEST
        else:
            direction = RESPONSE
            if function == 130:
                access = READ
            else:
                request = self.pending.pop((src, dst, seq), None)
                if request is not None:
                    response_time = ts - request.ts
                    request_packet = request.packet
                    operation = request.operation
                    access = request.access
                    if not control & 0x40:  # more fragments follow, each next sequence
                        self.pending[(src, dst, (seq + 1) & 0x0F)] = request
        self.emit(IcsEvent(
            ts, self.flow, from_initiator, PROTOCOL_NAME, direction, access, operation, unit,
            fields, packet, malformed, response_time, request_packet, exception,
        ))


def _transport_fields(transport: int, fields: dict[str, Any]) -> None:
    fields["tr.ctl"] = transport
    fields["tr.fin"] = bool(transport & 0x80)
    fields["tr.fir"] = bool(transport & 0x40)
    fields["tr.seq"] = transport & 0x3F


def _append(fields: dict[str, Any], name: str, value: Any) -> None:
    values = fields.get(name)
    if values is None:
        fields[name] = [value]
    else:
        values.append(value)


def _extend(fields: dict[str, Any], name: str, values: Any) -> None:
    if not values:
        return
    existing = fields.get(name)
    if existing is None:
        fields[name] = list(values)
    else:
        existing.extend(values)


def _objects(
    data: bytes, p: int, header_only: bool, fields: dict[str, Any], groups: set[int]
) -> None:
    """Object headers and their points from ``data[p:]`` into ``fields``
    (IEEE 1815-2012 §4.2.2.7). Raises `_Malformed`."""
    end = len(data)
    while p < end:
        if end - p < 3:
            raise _Malformed(TRUNCATED, f"object header cut short: {end - p} octets left")
        group = data[p]
        gv = group << 8 | data[p + 1]
        qualifier = data[p + 2]
        p += 3
        prefix = (qualifier >> 4) & 0x07
        code = qualifier & 0x0F
        groups.add(group)
        _append(fields, "al.obj", gv)
        _append(fields, "al.objq.prefix", prefix)
        _append(fields, "al.objq.range", code)
        first = 0
        if code <= 2:
            ranges = _RANGES[code]
            if end - p < ranges.size:
                raise _Malformed(TRUNCATED, f"range of object g{group}v{gv & 0xFF} cut short")
            first, last = ranges.unpack_from(data, p)
            p += ranges.size
            _append(fields, "al.range.start", first)
            _append(fields, "al.range.stop", last)
            count = last - first + 1
            if count <= 0:
                raise _Malformed(BAD_VALUE, f"object g{group}v{gv & 0xFF} range stops at "
                                 f"{last}, before its start {first}")
        elif code <= 5 or 7 <= code <= 9 or code == 11:
            single = _SINGLE[(code - 3) % 4] if code <= 9 else _U8
            if end - p < single.size:
                raise _Malformed(TRUNCATED, f"range of object g{group}v{gv & 0xFF} cut short")
            (value,) = single.unpack_from(data, p)
            p += single.size
            if code <= 5:
                _append(fields, "al.range.abs", value)
                first, count = value, 1
            else:
                _append(fields, "al.range.quantity", value)
                count = value
        elif code == 6:
            count = 0
        else:
            raise _Malformed(BAD_VALUE, f"reserved qualifier range code {code} "
                             f"(object g{group}v{gv & 0xFF})")
        if prefix == 7:
            raise _Malformed(BAD_VALUE, f"reserved qualifier prefix code 7 "
                             f"(object g{group}v{gv & 0xFF})")
        if count == 0 or (header_only and prefix == 0):
            continue
        p = _points(data, p, end, gv, prefix, first, count, header_only, fields)


def _points(
    data: bytes, p: int, end: int, gv: int, prefix: int, first: int, count: int,
    header_only: bool, fields: dict[str, Any],
) -> int:
    """The ``count`` points of object ``gv`` at ``data[p:]``; the offset after them."""
    width = _PREFIX_WIDTH[prefix]
    if header_only and prefix <= 3:
        # A request naming points by index (read, freeze): indexes only.
        needed = count * width
        if end - p < needed:
            raise _Malformed(TRUNCATED, f"{count} indexes of object g{gv >> 8}v{gv & 0xFF} "
                             "cut short")
        fmt = struct.Struct(f"<{count}{_PREFIX_FORMAT[prefix]}")
        _extend(fields, "al.index", fmt.unpack_from(data, p))
        return p + needed
    spec = object_spec(gv)
    name = f"g{gv >> 8}v{gv & 0xFF}"
    if spec is None:
        if prefix >= 4:
            return _sized_objects(data, p, end, gv, prefix, count, fields)
        raise _Malformed(BAD_VALUE, f"unknown object {name}: its size is unknown")
    layout = spec.layout
    if layout == NO_DATA:
        raise _Malformed(BAD_VALUE, f"object {name} carries no data, yet {count} points")
    if layout in (FIXED, CROB, BO_COMMAND_EVENT):
        point = _point_struct(gv, spec, prefix) if layout != BO_COMMAND_EVENT else \
            struct.Struct(f"<{_PREFIX_FORMAT[prefix]}B{'IH' if spec.time else ''}")
        available = (end - p) // point.size
        taken = count if count <= available else available
        chunk = data[p : p + taken * point.size]
        p += taken * point.size
        if taken:
            columns = list(zip(*point.iter_unpack(chunk), strict=True))
            column = _index_columns(columns, prefix, first, taken, fields)
            if layout == FIXED:
                _fixed_columns(spec, columns, column, fields)
            elif layout == CROB:
                codes = columns[column]
                _extend(fields, "ctl.op", [code & 0x0F for code in codes])
                _extend(fields, "ctl.clr", [(code >> 4) & 0x03 for code in codes])
                _extend(fields, "ctl.trip", [code >> 6 for code in codes])
                _extend(fields, "al.count", columns[column + 1])
                _extend(fields, "al.on_time", columns[column + 2])
                _extend(fields, "al.off_time", columns[column + 3])
                _extend(fields, "al.ctrlstatus", [s & 0x7F for s in columns[column + 4]])
            else:
                states = columns[column]
                _extend(fields, "al.bocs", [bool(s & 0x80) for s in states])
                _extend(fields, "al.ctrlstatus", [s & 0x7F for s in states])
                if spec.time:
                    _extend(fields, "al.timestamp", [
                        low | high << 32
                        for low, high in zip(columns[column + 1], columns[column + 2],
                                             strict=True)])
        if taken < count:
            raise _Malformed(TRUNCATED, f"object {name}: {count} points announced, "
                             f"{taken} present")
        return p
    if layout in (PACKED_BIT, PACKED_2BIT):
        return _packed(data, p, end, gv, layout == PACKED_2BIT, prefix, first, count, fields)
    if layout == OCTETS:
        size = spec.size + width
        available = (end - p) // size if size else count
        taken = min(count, available)
        indexes: list[int] = []
        strings: list[str] = []
        for _ in range(taken):
            if width:
                indexes.append(int.from_bytes(data[p : p + width], "little"))
            strings.append(data[p + width : p + size].hex())
            p += size
        _index_list(fields, prefix, indexes, first, taken)
        _extend(fields, "al.octet_string", strings)
        if taken < count:
            raise _Malformed(TRUNCATED, f"object {name}: {count} octet strings announced, "
                             f"{taken} present")
        return p
    if layout in (FILE_OBJECT, DEVICE_ATTRIBUTE):
        if prefix >= 4:
            return _sized_objects(data, p, end, gv, prefix, count, fields)
        if layout == DEVICE_ATTRIBUTE:
            return _device_attributes(data, p, end, prefix, first, count, fields)
        raise _Malformed(BAD_VALUE, f"object {name} needs an object size prefix, "
                         f"qualifier prefix is {prefix}")
    raise _Malformed(BAD_VALUE, f"object {name} cannot be decoded")  # pragma: no cover


def _index_columns(
    columns: list[tuple[Any, ...]], prefix: int, first: int, taken: int, fields: dict[str, Any]
) -> int:
    """Record the point numbers (a prefix column, or counted from the
    range start); the number of the first value column."""
    if prefix == 0:
        _extend(fields, "al.point_index", range(first, first + taken))
        return 0
    _extend(fields, "al.index" if prefix <= 3 else "al.size", columns[0])
    return 1


def _index_list(
    fields: dict[str, Any], prefix: int, column: list[int], first: int, taken: int
) -> None:
    if prefix == 0:
        _extend(fields, "al.point_index", range(first, first + taken))
    else:
        _extend(fields, "al.index" if prefix <= 3 else "al.size", column)


def _fixed_columns(
    spec: ObjectSpec, columns: list[tuple[Any, ...]], column: int, fields: dict[str, Any]
) -> None:
    if spec.status_before:
        _extend(fields, "al.ctrlstatus", [s & 0x7F for s in columns[column]])
        column += 1
    if spec.quality is not None:
        flags = columns[column]
        _extend(fields, spec.quality, flags)
        if spec.double_bit:
            _extend(fields, "al.2bit", [f >> 6 for f in flags])
        column += 1
    if spec.value is not None:
        assert spec.value_field is not None
        _extend(fields, spec.value_field, columns[column])
        column += 1
    if spec.status_after:
        _extend(fields, "al.ctrlstatus", [s & 0x7F for s in columns[column]])
        column += 1
    time = spec.time
    if time == ABSOLUTE:
        _extend(fields, "al.timestamp", [
            low | high << 32 for low, high in zip(columns[column], columns[column + 1],
                                                  strict=True)])
    elif time == RELATIVE:
        _extend(fields, "al.reltimestamp", columns[column])
    elif time == DELAY:
        _extend(fields, "al.time_delay", columns[column])


def _packed(
    data: bytes, p: int, end: int, gv: int, two_bits: bool, prefix: int, first: int,
    count: int, fields: dict[str, Any],
) -> int:
    """Points packed into bits (g1v1, g10v1, g12v3, g80v1) or bit pairs
    (g3v1), or, with an index prefix, one octet per point (value in bit 0)."""
    name = "al.2bit" if two_bits else "al.bit"
    if prefix:
        width = _PREFIX_WIDTH[prefix]
        size = width + 1
        taken = min(count, (end - p) // size)
        indexes = []
        values: list[Any] = []
        for _ in range(taken):
            indexes.append(int.from_bytes(data[p : p + width], "little"))
            octet = data[p + width]
            values.append(octet & 0x03 if two_bits else bool(octet & 1))
            p += size
        _extend(fields, "al.index" if prefix <= 3 else "al.size", indexes)
        _extend(fields, name, values)
    else:
        per_octet = 4 if two_bits else 8
        taken = min(count, (end - p) * per_octet)
        if two_bits:
            values = [(data[p + (i >> 2)] >> ((i & 3) << 1)) & 0x03 for i in range(taken)]
        else:
            values = [bool(data[p + (i >> 3)] >> (i & 7) & 1) for i in range(taken)]
        _extend(fields, "al.point_index", range(first, first + taken))
        _extend(fields, name, values)
        p += (taken + per_octet - 1) // per_octet
    if taken < count:
        raise _Malformed(TRUNCATED, f"object g{gv >> 8}v{gv & 0xFF}: {count} points "
                         f"announced, {taken} present")
    return p


def _sized_objects(
    data: bytes, p: int, end: int, gv: int, prefix: int, count: int, fields: dict[str, Any]
) -> int:
    """Objects each preceded by their size (free-format qualifier): files
    are decoded, others skipped whole."""
    single = _SINGLE[prefix - 4]
    width = single.size
    for _ in range(count):
        if end - p < width:
            raise _Malformed(TRUNCATED, f"object g{gv >> 8}v{gv & 0xFF} size cut short")
        (size,) = single.unpack_from(data, p)
        p += width
        _append(fields, "al.size", size)
        if end - p < size:
            raise _Malformed(TRUNCATED, f"object g{gv >> 8}v{gv & 0xFF} of {size} octets "
                             f"cut short at {end - p}")
        if gv >> 8 == 70:
            _file_object(data, p, p + size, gv & 0xFF, fields)
        p += size
    return p


def _file_object(data: bytes, p: int, end: int, variation: int, fields: dict[str, Any]) -> None:
    """Group 70 file-control objects (IEEE 1815-2012 §A.33)."""
    size = end - p
    if variation == 3 and size >= _FILE_COMMAND.size:
        (name_offset, name_size, created_low, created_high, permissions, auth, file_size,
         mode, max_block, request) = _FILE_COMMAND.unpack_from(data, p)
        _append(fields, "al.file_string_offset", name_offset)
        _append(fields, "al.file_string_length", name_size)
        _append(fields, "al.timestamp", created_low | created_high << 32)
        _append(fields, "al.file.perms", permissions)
        _append(fields, "al.file.auth", auth)
        _append(fields, "al.file.size", file_size)
        _append(fields, "al.file.mode", mode)
        _append(fields, "al.file.maxblock", max_block)
        _append(fields, "al.file.reqID", request)
        name_start = p + _FILE_COMMAND.size
        _append(fields, "al.file_name",
                data[name_start : min(name_start + name_size, end)].decode("latin-1"))
    elif variation == 4 and size >= _FILE_STATUS.size:
        handle, file_size, max_block, request, status = _FILE_STATUS.unpack_from(data, p)
        _append(fields, "al.file.handle", handle)
        _append(fields, "al.file.size", file_size)
        _append(fields, "al.file.maxblock", max_block)
        _append(fields, "al.file.reqID", request)
        _append(fields, "al.file.status", status)
    elif (variation == 5 or variation == 6) and size >= _FILE_TRANSPORT.size:
        handle, block = _FILE_TRANSPORT.unpack_from(data, p)
        _append(fields, "al.file.handle", handle)
        _append(fields, "al.file.blocknum", block & 0x7FFFFFFF)
        _append(fields, "al.file.lastblock", bool(block & 0x80000000))
        if variation == 5:
            if end > p + 8:
                _append(fields, "al.file.data", data[p + 8 : end].hex())
        elif size > 8:
            _append(fields, "al.file.status", data[p + 8])
    elif variation == 7 and size >= _FILE_DESCRIPTOR.size:
        (name_offset, name_size, _file_type, file_size, created_low, created_high,
         permissions, request) = _FILE_DESCRIPTOR.unpack_from(data, p)
        _append(fields, "al.file_string_offset", name_offset)
        _append(fields, "al.file_string_length", name_size)
        _append(fields, "al.file.size", file_size)
        _append(fields, "al.timestamp", created_low | created_high << 32)
        _append(fields, "al.file.perms", permissions)
        _append(fields, "al.file.reqID", request)
        name_start = p + _FILE_DESCRIPTOR.size
        _append(fields, "al.file_name",
                data[name_start : min(name_start + name_size, end)].decode("latin-1"))
    elif variation == 8:
        _append(fields, "al.file_name", data[p:end].decode("latin-1"))


def _device_attributes(
    data: bytes, p: int, end: int, prefix: int, first: int, count: int, fields: dict[str, Any]
) -> int:
    """Group 0 device attributes: data type, length, value (§A.1)."""
    width = _PREFIX_WIDTH[prefix]
    for number in range(count):
        if end - p < width + 2:
            raise _Malformed(TRUNCATED, "device attribute cut short")
        if width:
            _append(fields, "al.index", int.from_bytes(data[p : p + width], "little"))
            p += width
        else:
            _append(fields, "al.point_index", first + number)
        data_type, size = data[p], data[p + 1]
        p += 2
        _append(fields, "al.datatype", data_type)
        _append(fields, "al.da.length", size)
        if end - p < size:
            raise _Malformed(TRUNCATED, "device attribute value cut short")
        value = data[p : p + size]
        if data_type == 1:
            _append(fields, "al.da.value", value.decode("latin-1"))
        elif data_type in (2, 3) and size in (1, 2, 4):
            signed = data_type == 3
            kind = "int" if signed else "uint"
            _append(fields, f"al.da.{kind}{size * 8}",
                    int.from_bytes(value, "little", signed=signed))
        elif data_type == 4 and size in (4, 8):
            (number_value,) = struct.unpack("<f" if size == 4 else "<d", value)
            _append(fields, "al.da.float" if size == 4 else "al.da.double", number_value)
        p += size
    return p


def _find_frame(data: bytes, start: int) -> int:
    """The offset of the next frame header (start octets and a good header
    CRC) in ``data`` from ``start``; a start too near the end to check
    counts as found; -1 when there is none."""
    size = len(data)
    offset = data.find(b"\x05\x64", start)
    while offset >= 0:
        if size - offset < HEADER_LENGTH:
            return offset
        if crc16(data, offset, offset + 8) == _U16.unpack_from(data, offset + 8)[0]:
            return offset
        offset = data.find(b"\x05\x64", offset + 1)
    return -1


def probe(data: bytes, from_initiator: bool) -> bool:
    """Does this payload start with a DNP3 frame header with a good CRC?
    Used on ports other than 20000."""
    return (
        len(data) >= HEADER_LENGTH
        and data[0] == 0x05
        and data[1] == 0x64
        and data[2] >= MIN_LENGTH
        and crc16(data, 0, 8) == _U16.unpack_from(data, 8)[0]
    )


# Every field a DNP3 event may carry, with its kind, for rule validation.
FIELDS: Final = (
    ("len", "int"), ("ctl", "int"), ("ctl.dir", "bool"), ("ctl.prm", "bool"),
    ("ctl.fcb", "bool"), ("ctl.fcv", "bool"), ("ctl.dfc", "bool"), ("ctl.prifunc", "int"),
    ("ctl.secfunc", "int"), ("dst", "int"), ("src", "int"), ("hdr.CRC", "int"),
    ("tr.ctl", "int"), ("tr.fin", "bool"), ("tr.fir", "bool"), ("tr.seq", "int"),
    ("al.ctl", "int"), ("al.fir", "bool"), ("al.fin", "bool"), ("al.con", "bool"),
    ("al.uns", "bool"), ("al.seq", "int"), ("al.func", "int"), ("al.iin", "int"),
    ("al.obj", "list[int]"), ("al.objq.prefix", "list[int]"), ("al.objq.range", "list[int]"),
    ("al.range.start", "list[int]"), ("al.range.stop", "list[int]"),
    ("al.range.abs", "list[int]"), ("al.range.quantity", "list[int]"),
    ("al.point_index", "list[int]"), ("al.index", "list[int]"), ("al.size", "list[int]"),
    ("al.bit", "list[bool]"), ("al.2bit", "list[int]"), ("al.biq", "list[int]"),
    ("al.boq", "list[int]"), ("al.ctrq", "list[int]"), ("al.aiq", "list[int]"),
    ("al.aoq", "list[int]"), ("al.cnt", "list[int]"), ("al.ana.int", "list[int]"),
    ("al.ana.float", "list[float]"), ("al.ana.double", "list[float]"),
    ("al.anaout.int", "list[int]"), ("al.anaout.float", "list[float]"),
    ("al.anaout.double", "list[float]"), ("al.ctrlstatus", "list[int]"),
    ("al.bocs", "list[bool]"), ("ctl.op", "list[int]"), ("ctl.clr", "list[int]"),
    ("ctl.trip", "list[int]"), ("al.count", "list[int]"), ("al.on_time", "list[int]"),
    ("al.off_time", "list[int]"), ("al.timestamp", "list[int]"),
    ("al.reltimestamp", "list[int]"), ("al.time_delay", "list[int]"),
    ("al.octet_string", "list[str]"), ("al.file.mode", "list[int]"),
    ("al.file.auth", "list[int]"), ("al.file.size", "list[int]"),
    ("al.file.maxblock", "list[int]"), ("al.file.reqID", "list[int]"),
    ("al.file.status", "list[int]"), ("al.file.handle", "list[int]"),
    ("al.file.blocknum", "list[int]"), ("al.file.lastblock", "list[bool]"),
    ("al.file.data", "list[str]"), ("al.file.perms", "list[int]"),
    ("al.file_string_offset", "list[int]"), ("al.file_string_length", "list[int]"),
    ("al.file_name", "list[str]"), ("al.datatype", "list[int]"), ("al.da.length", "list[int]"),
    ("al.da.value", "list[str]"), ("al.da.uint8", "list[int]"), ("al.da.uint16", "list[int]"),
    ("al.da.uint32", "list[int]"), ("al.da.int8", "list[int]"), ("al.da.int16", "list[int]"),
    ("al.da.int32", "list[int]"), ("al.da.float", "list[float]"), ("al.da.double", "list[float]"),
    ("error", "str"),
)


def _iin_bit(mask: int) -> Any:
    def bit(event: IcsEvent) -> bool | None:
        iin = event.fields.get("al.iin")
        return None if iin is None else bool(iin & mask)

    return bit


def object_groups(event: IcsEvent) -> list[int] | None:
    """The object groups an event carries (``al.obj`` >> 8), for rules such
    as ``dnp3.object_groups: {any: 12}`` (a CROB)."""
    objects = event.fields.get("al.obj")
    return None if objects is None else [gv >> 8 for gv in objects]


def point_indexes(event: IcsEvent) -> list[int] | None:
    """Every point index of the event, ranged (``al.point_index``) or
    prefixed (``al.index``)."""
    fields = event.fields
    ranged = fields.get("al.point_index")
    prefixed = fields.get("al.index")
    if ranged is None:
        return prefixed
    if prefixed is None:
        return ranged  # type: ignore[no-any-return]
    return [*ranged, *prefixed]


def master_address(event: IcsEvent) -> int | None:
    """The link address of the master side of the frame (DIR set: the
    source sent it from the master)."""
    fields = event.fields
    ctl = fields.get("ctl")
    if ctl is None:
        return None
    return fields["src"] if ctl & 0x80 else fields["dst"]  # type: ignore[no-any-return]


_DERIVED: dict[str, tuple[str, Any]] = {
    name: ("bool", _iin_bit(mask)) for name, mask in IIN_BITS.items()
}
_DERIVED["object_groups"] = ("list[int]", object_groups)
_DERIVED["point_indexes"] = ("list[int]", point_indexes)
_DERIVED["master_address"] = ("int", master_address)

PROTOCOL: Final = ProtocolSpec(
    name=PROTOCOL_NAME,
    transport="tcp+udp",
    ports=(PORT,),
    probe=probe,
    session=Dnp3Session,
    operations=tuple(sorted(
        set(OPERATION.values()) | set(PRIMARY_LINK_OPERATIONS.values())
        | set(SECONDARY_LINK_OPERATIONS.values()) | {"unknown_function", "malformed"}
    )),
    fields=FIELDS,
    derived=_DERIVED,
)
