"""IEC 60870-5-104 (IEC 60870-5-104:2006 with the ASDUs of IEC 60870-5-101:2003).

Frames APDUs out of the reassembled byte stream (several per segment or one
split across segments) exactly as Wireshark's dissector does, so both see the
same PDUs; decodes the APCI of I, S and U frames and, in I frames, the ASDU
with every information object of every standard type. One `IcsEvent` per
APDU: per ASDU, per S frame, per U frame. Field names are Wireshark's
(``iec60870_104.*`` and ``iec60870_asdu.*``, aliases ``104apci.*`` and
``104asdu.*``) without the prefix; per-object values are lists in wire order.

Operations are the standard's type identifications (``C_SC_NA_1``,
``M_ME_NC_1``…), ``STARTDT_ACT``/``STARTDT_CON``, ``STOPDT_ACT``/``_CON``,
``TESTFR_ACT``/``_CON`` for U frames, ``S_FRAME`` for S frames, and
``unknown_type`` / ``malformed``. The unit is the common address of the ASDU
(the station). Requests are what the controlling station (the side that
opened the connection) sends, responses what the controlled station sends;
U frames are requests when they activate and responses when they confirm.

Send sequence numbers are followed per direction: an N(S) other than the
next one expected sets ``seq_error`` (``ns_skip`` or ``ns_repeat``, with
``tx_expected``), an N(R) acknowledging I frames the peer never sent sets
``nr_ahead`` (with ``rx_max``). The APDU still decodes: the frame is well
formed, the conversation is not.

Framing follows Wireshark 4.0 (``get_iec104apdu_len``): an APDU starts at the
first 0x68 of the remaining bytes (bytes before it are kept as ``data`` and
make the event malformed, ``bad_protocol_id``); its length is the octet after
0x68. A flow on port 2404 that never produced a well-formed APDU is disabled
after three violations.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any, Final

from sensor.event import (
    BAD_LENGTH,
    BAD_PROTOCOL_ID,
    BAD_VALUE,
    DIAGNOSTIC,
    OTHER,
    REQUEST,
    RESPONSE,
    TRUNCATED,
    UNKNOWN_FUNCTION,
    IcsEvent,
)
from sensor.flows.flow import CONFIRMED, Flow
from sensor.protocols.base import Emit, ProtocolSpec
from sensor.protocols.iec104_types import (
    ACCESS,
    FIELDS,
    LAYOUTS,
    TYPE_NAMES,
    WIRESHARK_DECODED,
    Cause,
    Layout,
    TypeId,
    UFunction,
)

PROTOCOL_NAME: Final = "iec104"
START: Final = 0x68
APCI_LENGTH: Final = 6  # start, length and the four control octets
APDU_MIN: Final = 4
APDU_MAX: Final = 253
ASDU_HEADER: Final = 6  # type, VSQ, COT, originator, common address (2)
SEQ_MODULO: Final = 0x7FFF
MAX_PENDING_COMMANDS: Final = 1024
MAX_JUNK: Final = 512  # octets before (or without) a 0x68 kept in ``data``
VIOLATIONS_BEFORE_DISABLE: Final = 3

U_OPERATIONS: Final[dict[int, str]] = {f.value: f.name for f in UFunction}
U_ACTIVATIONS: Final = frozenset(
    {UFunction.STARTDT_ACT, UFunction.STOPDT_ACT, UFunction.TESTFR_ACT}
)
# Confirmations a command's activation may get; a negative one, or any of
# the "unknown …" causes, ends the command.
_ANSWERS: Final = frozenset(int(cause) for cause in (
    Cause.ACTIVATION_CON, Cause.DEACTIVATION_CON, Cause.ACTIVATION_TERMINATION,
    Cause.UNKNOWN_TYPE_ID, Cause.UNKNOWN_CAUSE, Cause.UNKNOWN_COMMON_ADDRESS,
    Cause.UNKNOWN_IOA,
))
_FINAL_ANSWERS: Final = _ANSWERS - {int(Cause.ACTIVATION_CON)}
_READ_KEY: Final = 0  # pending reads are keyed by type 0: any type answers them
# Plain ints for the hot path (an IntEnum member costs a lookup per use).
_ACT: Final = int(Cause.ACTIVATION)
_DEACT: Final = int(Cause.DEACTIVATION)
_REQ: Final = int(Cause.REQUEST)
_UNKNOWN_TYPE_ID: Final = int(Cause.UNKNOWN_TYPE_ID)
_UNKNOWN_IOA: Final = int(Cause.UNKNOWN_IOA)
_C_RD_NA_1: Final = int(TypeId.C_RD_NA_1)
_F_SG_NA_1: Final = int(TypeId.F_SG_NA_1)

_CONTROL = struct.Struct("<HH")
_HEADER = struct.Struct("<BBBBH")
_IOA = struct.Struct("<HB")


def _u_access(function: int) -> str:
    return DIAGNOSTIC if function >= UFunction.TESTFR_ACT else OTHER


class Iec104Session:
    """Decoder of one IEC 60870-5-104 flow."""

    __slots__ = (
        "buffer_from_initiator",
        "buffer_from_responder",
        "emit",
        "flow",
        "next_tx_initiator",
        "next_tx_responder",
        "pending",
        "pending_u",
        "resync_initiator",
        "resync_responder",
        "unanswered",
        "violations",
    )

    def __init__(self, flow: Flow, emit: Emit) -> None:
        self.flow = flow
        self.emit = emit
        self.buffer_from_initiator = b""
        self.buffer_from_responder = b""
        self.resync_initiator = False
        self.resync_responder = False
        # The N(S) each side sends next; -1 until seen (a capture picked up
        # mid-stream), 0 on a connection seen from its start.
        first = -1 if flow.midstream else 0
        self.next_tx_initiator = first
        self.next_tx_responder = first
        # Activations waiting for their confirmation: (type, common address,
        # first object address) -> [time, packet, answered].
        self.pending: dict[tuple[int, int, int], list[Any]] = {}
        # U-frame activations: (sent by initiator, function) -> (time, packet).
        self.pending_u: dict[tuple[bool, int], tuple[float, int]] = {}
        self.violations = 0
        self.unanswered = 0

    # -- stream framing ------------------------------------------------------

    def feed(self, from_initiator: bool, data: bytes, ts: float, packet: int) -> None:
        if from_initiator:
            if self.buffer_from_initiator:
                data = self.buffer_from_initiator + data
                self.buffer_from_initiator = b""
            elif self.resync_initiator:
                if not _plausible(data):
                    self._unframeable(data)
                    return
                self.resync_initiator = False
        else:
            if self.buffer_from_responder:
                data = self.buffer_from_responder + data
                self.buffer_from_responder = b""
            elif self.resync_responder:
                if not _plausible(data):
                    self._unframeable(data)
                    return
                self.resync_responder = False
        size = len(data)
        offset = 0
        # Like Wireshark's tcp_dissect_pdus: six octets are needed to find
        # the length; the APDU starts at the first 0x68 that is not the last
        # octet, and anything before it belongs to that APDU as junk.
        while size - offset >= APCI_LENGTH:
            if data[offset] == START:
                start = offset
            else:
                start = data.find(b"\x68", offset, size - 1)
                if start < 0:
                    self._junk(from_initiator, data[offset:], ts, packet)
                    offset = size
                    break
            end = start + 2 + data[start + 1]
            if end > size:
                break
            if end - offset < APCI_LENGTH:
                # Shorter than the six octets it took to frame it: Wireshark's
                # TCP layer reports a bounds error and drops the rest of the
                # segment; so does icswatch, after a malformed event.
                self._apdu(from_initiator, data, offset, start, end, ts, packet)
                offset = size
                break
            self._apdu(from_initiator, data, offset, start, end, ts, packet)
            if self.flow.session is None:  # disabled: not IEC 104
                return
            offset = end
        if offset < size:
            rest = data[offset:]
            if from_initiator:
                self.buffer_from_initiator = rest
            else:
                self.buffer_from_responder = rest

    def gap(self, from_initiator: bool, size: int) -> None:
        """Bytes were lost: drop the partial APDU, forget the sequence number
        expected, and resynchronise on the next segment that starts with a
        plausible APCI."""
        if from_initiator:
            self.buffer_from_initiator = b""
            self.resync_initiator = True
            self.next_tx_initiator = -1
        else:
            self.buffer_from_responder = b""
            self.resync_responder = True
            self.next_tx_responder = -1

    def close(self, ts: float) -> Mapping[str, int]:
        for from_initiator, rest in (
            (True, self.buffer_from_initiator),
            (False, self.buffer_from_responder),
        ):
            if rest and self.flow.session is not None:
                fields: dict[str, Any] = {}
                if rest[0] == START and len(rest) > 1:
                    fields["apdulen"] = rest[1]
                fields["data"] = rest.hex()
                self._event(from_initiator, fields, TRUNCATED, ts, 0)
        self.buffer_from_initiator = self.buffer_from_responder = b""
        self.unanswered += sum(1 for entry in self.pending.values() if not entry[2])
        self.pending.clear()
        self.pending_u.clear()
        return {"iec104_unanswered_commands": self.unanswered} if self.unanswered else {}

    def _unframeable(self, data: bytes) -> None:
        """A segment that does not start with an APCI while resynchronising:
        on a flow never confirmed as IEC 104 it counts towards disabling."""
        flow = self.flow
        if flow.analyzer_status == CONFIRMED:
            return
        self.violations += 1
        if self.violations >= VIOLATIONS_BEFORE_DISABLE:
            flow.disable(f"not IEC 60870-5-104: {len(data)} bytes with no APCI")

    def _junk(self, from_initiator: bool, junk: bytes, ts: float, packet: int) -> None:
        """Six or more octets with no 0x68: Wireshark shows them as one PDU of
        ``data``; so does icswatch, as a malformed event (with the first
        `MAX_JUNK` octets)."""
        self._event(from_initiator, {"data": junk[:MAX_JUNK].hex()}, BAD_PROTOCOL_ID, ts,
                    packet)

    def _event(
        self, from_initiator: bool, fields: dict[str, Any], reason: str, ts: float, packet: int
    ) -> None:
        """A malformed event that names no operation."""
        self._violation(reason)
        self.emit(IcsEvent(
            ts, self.flow, from_initiator, PROTOCOL_NAME,
            REQUEST if from_initiator else RESPONSE, OTHER, "malformed", None, fields,
            packet, reason,
        ))

    def _violation(self, reason: str) -> None:
        flow = self.flow
        self.violations += 1
        flow.violation(reason)
        if flow.analyzer_status != CONFIRMED and self.violations >= VIOLATIONS_BEFORE_DISABLE:
            flow.disable(f"not IEC 60870-5-104: {reason}")

    # -- APCI ----------------------------------------------------------------

    def _apdu(
        self, from_initiator: bool, data: bytes, offset: int, start: int, end: int,
        ts: float, packet: int,
    ) -> None:
        """One APDU ``data[start:end]``, with junk ``data[offset:start]``."""
        length = data[start + 1]
        fields: dict[str, Any] = {}
        malformed: str | None = None
        if start > offset:
            fields["data"] = data[offset : min(start, offset + MAX_JUNK)].hex()
            malformed = BAD_PROTOCOL_ID
        fields["apdulen"] = length
        if length < APDU_MIN:
            self._event(from_initiator, fields, BAD_LENGTH, ts, packet)
            return
        if length > APDU_MAX and malformed is None:
            malformed = BAD_LENGTH
        first = data[start + 2]
        if first & 1 == 0:
            self._i_frame(from_initiator, data, start, end, fields, malformed, ts, packet)
            return
        tx_field, rx_field = _CONTROL.unpack_from(data, start + 2)
        if first & 3 == 1:
            fields["type"] = 1
            nr = rx_field >> 1
            fields["rx"] = nr
            self._check_nr(from_initiator, nr, fields)
            if length != APDU_MIN and malformed is None:
                malformed = BAD_LENGTH
            operation = "S_FRAME"
            access = OTHER
            direction = REQUEST if from_initiator else RESPONSE
            response_time: float | None = None
            request_packet = 0
        else:
            function = first >> 2
            fields["type"] = 3
            fields["utype"] = function
            name = U_OPERATIONS.get(function)
            if malformed is None:
                if name is None:
                    malformed = UNKNOWN_FUNCTION
                elif length != APDU_MIN:
                    malformed = BAD_LENGTH
                elif tx_field >> 8 or rx_field:
                    malformed = BAD_VALUE
            operation = name or "malformed"
            access = _u_access(function)
            response_time = None
            request_packet = 0
            if function in U_ACTIVATIONS:
                direction = REQUEST
                self.pending_u[(from_initiator, function)] = (ts, packet)
            elif name is None:
                direction = REQUEST if from_initiator else RESPONSE
            else:
                direction = RESPONSE
                activation = self.pending_u.pop((not from_initiator, function >> 1), None)
                if activation is not None:
                    response_time = ts - activation[0]
                    request_packet = activation[1]
        flow = self.flow
        if malformed is None:
            if flow.analyzer_status != CONFIRMED:
                flow.confirm()
        else:
            self._violation(malformed)
        self.emit(IcsEvent(
            ts, flow, from_initiator, PROTOCOL_NAME, direction, access, operation, None,
            fields, packet, malformed, response_time, request_packet,
        ))

    def _check_nr(self, from_initiator: bool, nr: int, fields: dict[str, Any]) -> None:
        """The N(R) of an S frame, against the N(S) the peer sends next."""
        peer = self.next_tx_responder if from_initiator else self.next_tx_initiator
        _sequence(fields, -1, nr, -1, peer)

    # -- I frames and their ASDU --------------------------------------------

    def _i_frame(
        self, from_initiator: bool, data: bytes, start: int, end: int,
        fields: dict[str, Any], malformed: str | None, ts: float, packet: int,
    ) -> None:
        tx_field, rx_field = _CONTROL.unpack_from(data, start + 2)
        ns = tx_field >> 1
        nr = rx_field >> 1
        if from_initiator:
            expected = self.next_tx_initiator
            self.next_tx_initiator = (ns + 1) & SEQ_MODULO
            peer = self.next_tx_responder
        else:
            expected = self.next_tx_responder
            self.next_tx_responder = (ns + 1) & SEQ_MODULO
            peer = self.next_tx_initiator
        p = start + APCI_LENGTH
        if end - p < ASDU_HEADER:
            fields["type"] = 0
            fields["tx"] = ns
            fields["rx"] = nr
            _sequence(fields, ns, nr, expected, peer)
            self._short_asdu(from_initiator, data, p, end, fields, malformed, ts, packet)
            return
        type_id, vsq, cot, originator, common_address = _HEADER.unpack_from(data, p)
        count = vsq & 0x7F
        sequence = vsq >= 0x80
        cause = cot & 0x3F
        fields.update({
            "type": 0, "tx": ns, "rx": nr, "typeid": type_id, "sq": sequence,
            "numix": count, "causetx": cause, "nega": cot & 0x40 != 0, "test": cot >= 0x80,
            "oa": originator, "addr": common_address,
        })
        if (expected >= 0 and ns != expected) or (
                peer >= 0 and 0 < (nr - peer) & SEQ_MODULO < 0x4000):
            _sequence(fields, ns, nr, expected, peer)
        q = p + ASDU_HEADER
        operation = TYPE_NAMES.get(type_id)
        layout = LAYOUTS.get(type_id)
        if layout is not None:
            if not _objects(layout, data, q, end, count, sequence, fields) and malformed is None:
                malformed = BAD_LENGTH
            if type_id not in WIRESHARK_DECODED and end - q > 3:
                fields["rawdata"] = data[q + 3 : end].hex()
        else:
            # F_SG_NA_1, the IEC 62351-5 types and unknown types: the first
            # object address and the rest raw, as Wireshark shows them.
            if end - q >= 3:
                low, high = _IOA.unpack_from(data, q)
                fields["ioa"] = [low | high << 16]
                if end - q > 3:
                    fields["rawdata"] = data[q + 3 : end].hex()
            elif malformed is None:
                malformed = BAD_LENGTH
            if type_id == _F_SG_NA_1 and end - q >= 7:
                fields["nof"] = [data[q + 3] | data[q + 4] << 8]
                fields["nos"] = [data[q + 5]]
                fields["los"] = [data[q + 6]]
                if (count != 1 or data[q + 6] != end - q - 7) and malformed is None:
                    malformed = BAD_LENGTH
        if operation is None:
            operation = "unknown_type"
            if malformed is None:
                malformed = UNKNOWN_FUNCTION
        if cause == 0 and malformed is None:
            malformed = BAD_VALUE  # cause 0 is not defined (§7.2.3)
        response_time: float | None = None
        request_packet = 0
        if from_initiator:
            direction = REQUEST
            if cause in (_ACT, _DEACT) or (cause == _REQ and type_id == _C_RD_NA_1):
                self._remember(type_id, common_address, fields, ts, packet)
        else:
            direction = RESPONSE
            if cause in _ANSWERS or cause == _REQ:
                answered = self._answer(type_id, cause, cot, common_address, fields)
                if answered is not None:
                    response_time = ts - answered[0]
                    request_packet = answered[1]
        flow = self.flow
        if malformed is None:
            if flow.analyzer_status != CONFIRMED:
                flow.confirm()
        else:
            self._violation(malformed)
        self.emit(IcsEvent(
            ts, flow, from_initiator, PROTOCOL_NAME, direction, ACCESS.get(type_id, OTHER),
            operation, common_address, fields, packet, malformed, response_time,
            request_packet, cot & 0x40 != 0 or _UNKNOWN_TYPE_ID <= cause <= _UNKNOWN_IOA,
        ))

    def _remember(
        self, type_id: int, common_address: int, fields: dict[str, Any], ts: float, packet: int
    ) -> None:
        """An activation (or a read) waiting for its confirmation, keyed by
        type, common address and first object address."""
        ioas = fields.get("ioa")
        key = (_READ_KEY if type_id == _C_RD_NA_1 else type_id, common_address,
               ioas[0] if ioas else 0)
        pending = self.pending
        pending.pop(key, None)
        if len(pending) >= MAX_PENDING_COMMANDS:
            # Never confirmed: forget the oldest.
            oldest = pending.pop(next(iter(pending)))
            if not oldest[2]:
                self.unanswered += 1
        pending[key] = [ts, packet, False]

    def _answer(
        self, type_id: int, cause: int, cot: int, common_address: int, fields: dict[str, Any]
    ) -> list[Any] | None:
        """The activation a confirmation (or a read's answer) belongs to;
        it stays pending until its termination, a negative confirmation or
        an "unknown …" cause."""
        ioas = fields.get("ioa")
        ioa = ioas[0] if ioas else 0
        pending = self.pending
        if cause == _REQ:
            entry = pending.pop((_READ_KEY, common_address, ioa), None)
        else:
            key = (_READ_KEY if type_id == _C_RD_NA_1 else type_id, common_address, ioa)
            if cause in _FINAL_ANSWERS or cot & 0x40:
                entry = pending.pop(key, None)
            else:
                entry = pending.get(key)
        if entry is not None:
            entry[2] = True
        return entry

    def _short_asdu(
        self, from_initiator: bool, data: bytes, p: int, end: int, fields: dict[str, Any],
        malformed: str | None, ts: float, packet: int,
    ) -> None:
        """An I frame whose ASDU is shorter than its header: what is there,
        field by field (Wireshark stops at the first missing octet)."""
        size = end - p
        operation = "malformed"
        access = OTHER
        if size >= 1:
            type_id = data[p]
            fields["typeid"] = type_id
            operation = TYPE_NAMES.get(type_id, "unknown_type")
            access = ACCESS.get(type_id, OTHER)
        if size >= 2:
            fields["sq"] = data[p + 1] >= 0x80
            fields["numix"] = data[p + 1] & 0x7F
        if size >= 3:
            fields["causetx"] = data[p + 2] & 0x3F
            fields["nega"] = data[p + 2] & 0x40 != 0
            fields["test"] = data[p + 2] >= 0x80
        if size >= 4:
            fields["oa"] = data[p + 3]
        reason = malformed or BAD_LENGTH
        self._violation(reason)
        self.emit(IcsEvent(
            ts, self.flow, from_initiator, PROTOCOL_NAME,
            REQUEST if from_initiator else RESPONSE, access, operation, None, fields,
            packet, reason,
        ))


def _sequence(fields: dict[str, Any], ns: int, nr: int, expected: int, peer: int) -> None:
    """Sequence errors (IEC 60870-5-104 §5.1): an N(S) other than the one
    ``expected`` (-1: unknown), an N(R) acknowledging I frames beyond the
    N(S) the ``peer`` sends next (the peer's last frame is ``peer`` - 1)."""
    if expected >= 0 and ns != expected:
        fields["seq_error"] = "ns_skip" if (ns - expected) & SEQ_MODULO < 0x4000 else "ns_repeat"
        fields["tx_expected"] = expected
    if peer >= 0 and 0 < (nr - peer) & SEQ_MODULO < 0x4000:
        fields.setdefault("seq_error", "nr_ahead")
        fields["rx_max"] = peer


def _objects(
    layout: Layout, data: bytes, q: int, end: int, count: int, sequence: bool,
    fields: dict[str, Any],
) -> bool:
    """Decode ``count`` information objects from ``data[q:end]`` into
    ``fields``; False when they do not fill it exactly. Objects that do not
    fit are left out as Wireshark leaves them out: an object address is shown
    when its three octets are there (and, in a sequence, for the object after
    the last complete one)."""
    available = end - q
    size = layout.size
    if count == 0:
        return available == 0
    if sequence:
        if available < 3:
            return False
        low, high = _IOA.unpack_from(data, q)
        first = low | high << 16
        whole = count if size == 0 else min(count, (available - 3) // size)
        fields["ioa"] = list(range(first, first + (whole if whole == count else whole + 1)))
        if whole and size:
            if whole == 1:
                rows: Any = (layout.element.unpack_from(data, q + 3),)
            else:
                rows = list(layout.element.iter_unpack(
                    memoryview(data)[q + 3 : q + 3 + whole * size]))
            layout.fill(fields, rows, 0)
        return available == 3 + count * size
    stride = 3 + size
    whole = min(count, available // stride)
    if whole == 1:
        rows = (layout.with_ioa.unpack_from(data, q),)
    elif whole:
        rows = list(layout.with_ioa.iter_unpack(memoryview(data)[q : q + whole * stride]))
    else:
        rows = ()
    ioas = [row[0] | row[1] << 16 for row in rows]
    rest = q + whole * stride
    if whole < count and end - rest >= 3:
        low, high = _IOA.unpack_from(data, rest)
        ioas.append(low | high << 16)
    if ioas:
        fields["ioa"] = ioas
    layout.fill(fields, rows, 2)
    return available == count * stride


def _plausible(data: bytes) -> bool:
    """Does this segment start with an APCI (after a gap)?"""
    if len(data) < APCI_LENGTH or data[0] != START:
        return False
    length = data[1]
    if length < APDU_MIN or length > APDU_MAX:
        return False
    first = data[2]
    if first & 1 == 0:
        return length >= APDU_MIN + ASDU_HEADER
    if first & 3 == 1:
        return length == APDU_MIN
    return length == APDU_MIN and first >> 2 in U_OPERATIONS


def probe(data: bytes, from_initiator: bool) -> bool:
    """Is this segment a run of whole, well-formed APDUs (U and S frames of
    four octets, I frames of a known type)? Used to find IEC 104 on ports
    other than 2404."""
    size = len(data)
    offset = 0
    while offset < size:
        if size - offset < APCI_LENGTH or not _plausible(data[offset : offset + APCI_LENGTH + 1]):
            return False
        if data[offset + 2] & 1 == 0 and (
                offset + APCI_LENGTH >= size or data[offset + APCI_LENGTH] not in TYPE_NAMES):
            return False
        offset += 2 + data[offset + 1]
    return offset == size and size > 0


PROTOCOL: Final = ProtocolSpec(
    name=PROTOCOL_NAME,
    transport="tcp",
    ports=(2404,),
    probe=probe,
    session=Iec104Session,
    operations=tuple(sorted({*TYPE_NAMES.values(), *U_OPERATIONS.values(), "S_FRAME",
                              "unknown_type", "malformed"})),
    fields=FIELDS,
)
