"""Siemens S7 communication (S7comm) over ISO-on-TCP: TPKT (RFC 1006) frames
COTP (ISO 8073 class 0) TPDUs; COTP data TPDUs carry S7 PDUs (protocol id
0x32) or S7comm-plus PDUs (0x72, decoded by `sensor.protocols.s7comm_plus`).

One session per TCP flow frames TPKT out of the reassembled stream (several
per segment or one split across segments), joins COTP data TPDUs until the
one with the EOT bit, and turns every S7 PDU into an `IcsEvent`: setup
communication, read/write var with each item's area, DB, address, transport
size, length, value and return code, block upload/download, PLC control (PI
services) and stop, and userdata (SZL reads, block functions, time
functions…). COTP connection requests and confirms are events too: their
TSAPs tell the rack and slot of the CPU. SZL 0x0011/0x001C answers give the
module's identity (order number, firmware, names, serial number).

Field names are Wireshark's (``s7comm.*`` without the prefix, ``cotp.*`` with
it), except where a Wireshark name is both a value and the parent of others,
which a document store cannot hold: the raw item address is
``param.item.address.raw`` (beside ``.byte``/``.bit``/``.number``), raw
userdata ``data.userdata.raw`` and the SZL list length and count
``data.userdata.szl_partlist_len``/``_cnt`` (beside ``szl_id``).

Jobs are paired with their Ack/Ack_Data, userdata requests with their
responses, by PDU reference; downloads are driven by the PLC, whose jobs the
client acknowledges, so each side's jobs are kept apart.

Header invariants decide ownership: TPKT version 3 and a length that frames,
a COTP length indicator inside the TPKT, data starting with 0x32 or 0x72.
Port 102 is ISO-on-TCP for IEC 61850 MMS too: on a flow not yet confirmed by
an S7 PDU, COTP connection events are held back, non-S7 data and framing
errors raise no event, and three violations disable the analyzer; on a
confirmed flow each violation is a ``malformed`` event and decoding resumes
at the next segment.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Mapping
from typing import Any, Final

from sensor.event import (
    BAD_LENGTH,
    BAD_PROTOCOL_ID,
    CONTROL,
    FILE,
    OTHER,
    REQUEST,
    RESPONSE,
    TRUNCATED,
    UNKNOWN_FUNCTION,
    IcsEvent,
)
from sensor.flows.flow import CONFIRMED, Flow
from sensor.protocols import s7comm_plus
from sensor.protocols.base import Emit, ProtocolSpec
from sensor.protocols.s7comm_constants import (
    AREA_DATARECORD,
    AREA_NAMES,
    BIT_LENGTH_SIZES,
    BLOCK_TYPES,
    CONNECTION_TYPES,
    COTP_OPERATIONS,
    COTP_RESPONSES,
    FUNCTION_ACCESS,
    FUNCTION_OPERATIONS,
    NCK_ADDRESS_SIZES,
    PI_ARGUMENT_SERVICES,
    PI_BLOCK_SERVICES,
    PI_SERVICE_ACCESS,
    RETURN_OK,
    S7COMM_PLUS_PROTOCOL_ID,
    S7COMM_PROTOCOL_ID,
    SUBBLOCK_TYPES,
    SYNTAX_ID_S7ANY,
    SZL_001C_TEXTS,
    SZL_0011_INDEX_KEYS,
    SZL_COMPONENT_IDENTIFICATION,
    SZL_MODULE_IDENTIFICATION,
    TIMER_COUNTER_AREAS,
    TPKT_VERSION,
    USERDATA_GROUP_NAMES,
    USERDATA_GROUP_OPERATIONS,
    USERDATA_OPERATIONS,
    CotpType,
    Function,
    FunctionGroup,
    Rosctr,
    UserdataType,
)

PROTOCOL_NAME: Final = "s7comm"
PLUS_NAME: Final = s7comm_plus.PROTOCOL_NAME
TPKT_HEADER: Final = 4
MIN_TPKT_LENGTH: Final = 7  # TPKT header and the shortest COTP TPDU (DT class 0)
MAX_COTP_BYTES: Final = 256 * 1024  # joined DT TPDUs per direction
MAX_FRAGMENT_KEYS: Final = 16  # userdata data units being reassembled per direction
MAX_PENDING_REQUESTS: Final = 1024
VIOLATIONS_BEFORE_DISABLE: Final = 3
SIEMENS_MANUFACTURER_ID: Final = 0x002A  # PROFIBUS/PROFINET manufacturer id 42

_TPKT = struct.Struct("!BBH")
_HEADER = struct.Struct("!BBHHHH")
_U16 = struct.Struct("!H")
_U16X2 = struct.Struct("!HH")
_U16X3 = struct.Struct("!HHH")
_U16X4 = struct.Struct("!HHHH")
_U32 = struct.Struct("!I")
_ITEM = struct.Struct("!BHHB")  # transport size, length, DB, area (S7ANY)
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                  "Nov", "Dec")
_S7_EPOCH: Final = 441763200  # 1984-01-01 00:00:00 UTC


class _Malformed(Exception):
    """Raised inside a decoder: the PDU breaks the protocol."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _text(data: bytes, start: int, length: int) -> str:
    """A fixed-size ASCII field as Wireshark shows it: up to the first NUL,
    every non-ASCII byte replaced."""
    raw = data[start : start + length]
    if len(raw) != length:
        raise IndexError("string runs past the PDU")
    nul = raw.find(0)
    if nul >= 0:
        raw = raw[:nul]
    return raw.decode("ascii", "replace")


def _bcd(value: int) -> int:
    return 10 * (value >> 4) + (value & 0x0F)


def _s7_time(data: bytes, offset: int) -> str:
    """Block timestamps: milliseconds of the day and days since 1984."""
    (ms,) = _U32.unpack_from(data, offset)
    (days,) = _U16.unpack_from(data, offset + 4)
    t = time.gmtime(_S7_EPOCH + days * 86400 + ms // 1000)
    return (f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d}, {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{ms % 1000:03d}")


def _append(fields: dict[str, Any], name: str, value: Any) -> None:
    values = fields.get(name)
    if values is None:
        fields[name] = [value]
    else:
        values.append(value)


def tsap_text(tsap: bytes) -> str:
    """A TSAP as Wireshark shows it: the text when all printable, else hex."""
    if tsap and all(0x20 <= b <= 0x7E for b in tsap):
        return tsap.decode("ascii")
    return "0x" + tsap.hex()


class _Request:
    """What a response needs from its request (kept until paired)."""

    __slots__ = ("access", "function", "operation", "packet", "ts")

    def __init__(self, ts: float, packet: int, function: int, operation: str,
                 access: str) -> None:
        self.ts = ts
        self.packet = packet
        self.function = function
        self.operation = operation
        self.access = access


class _Verdict:
    """What an S7 PDU is, filled in as soon as it is known, so a PDU that
    turns out malformed still says what it was."""

    __slots__ = ("access", "direction", "exception", "operation", "pair")

    def __init__(self) -> None:
        self.operation = "unknown_function"
        self.access = OTHER
        self.direction = REQUEST
        self.exception = False
        self.pair = ""


class _Side:
    """Per-direction stream state."""

    __slots__ = ("buffer", "cotp", "plus", "resync", "units")

    def __init__(self) -> None:
        self.buffer = b""  # an incomplete TPKT
        self.cotp = b""  # data TPDUs waiting for the one with EOT
        self.plus = b""  # S7comm-plus data parts waiting for the PDU with a trailer
        self.units: dict[int, bytes] = {}  # userdata data units being reassembled
        self.resync = False


class S7Session:
    """Decoder of one ISO-on-TCP flow carrying S7comm and S7comm-plus."""

    __slots__ = ("emit", "flow", "held", "initiator", "pending", "plus", "responder",
                 "unanswered", "violations")

    def __init__(self, flow: Flow, emit: Emit) -> None:
        self.flow = flow
        self.emit = emit
        self.initiator = _Side()
        self.responder = _Side()
        self.pending: dict[int, _Request] = {}
        self.unanswered = 0
        self.violations = 0
        self.plus = False  # the flow carries S7comm-plus
        # COTP connection events wait until the flow shows S7: port 102 is
        # ISO-on-TCP for IEC 61850 MMS too, whose connections are not ours.
        self.held: list[IcsEvent] = []

    # -- stream framing ------------------------------------------------------

    def feed(self, from_initiator: bool, data: bytes, ts: float, packet: int) -> None:
        side = self.initiator if from_initiator else self.responder
        if side.buffer:
            data = side.buffer + data
            side.buffer = b""
        elif side.resync:
            if not _starts_tpkt(data):
                self._unframeable(data)
                return
            side.resync = False
        size = len(data)
        offset = 0
        while size - offset >= TPKT_HEADER:
            version, reserved, length = _TPKT.unpack_from(data, offset)
            if version != TPKT_VERSION or length < MIN_TPKT_LENGTH:
                self._framing_violation(from_initiator, side, version, reserved, length, ts,
                                        packet)
                return
            end = offset + length
            if end > size:
                break
            self._tpdu(from_initiator, side, data, offset + TPKT_HEADER, end, length, ts,
                       packet)
            if self.flow.session is not self:
                return  # disabled: not ISO-on-TCP carrying S7
            offset = end
        if offset < size:
            side.buffer = data[offset:]

    def gap(self, from_initiator: bool, size: int) -> None:
        """Bytes were lost: drop partial TPKTs and TPDUs of that direction and
        resynchronise on the next segment starting with a TPKT header."""
        side = self.initiator if from_initiator else self.responder
        side.buffer = side.cotp = side.plus = b""
        side.units.clear()
        side.resync = True

    def close(self, ts: float) -> Mapping[str, int]:
        if self.held and self.flow.session is not None and any(
                "rack" in e.fields or e.protocol == PLUS_NAME for e in self.held):
            self._flush()  # a connection to an S7 TSAP that carried no PDU
        self.held = []
        for from_initiator, side in ((True, self.initiator), (False, self.responder)):
            if (side.buffer or side.cotp) and self.flow.session is not None:
                rest = side.buffer or side.cotp
                self._malformed(from_initiator, PROTOCOL_NAME, {}, TRUNCATED, ts, 0,
                                f"{len(rest)} bytes of an unfinished "
                                f"{'TPKT' if side.buffer else 'COTP data unit'}")
            side.buffer = side.cotp = side.plus = b""
        self.unanswered += len(self.pending)
        self.pending.clear()
        return {"s7comm_unanswered_requests": self.unanswered} if self.unanswered else {}

    def _flush(self) -> None:
        held, self.held = self.held, []
        for event in held:
            self.emit(event)

    def _confirm(self) -> None:
        self.flow.analyzer_status = CONFIRMED
        if self.held:
            self._flush()

    def _unframeable(self, data: bytes) -> None:
        flow = self.flow
        if flow.analyzer_status == CONFIRMED:
            return
        self.violations += 1
        if self.violations >= VIOLATIONS_BEFORE_DISABLE:
            flow.disable(f"not ISO-on-TCP: {len(data)} bytes with no TPKT header")

    def _violation(self, reason: str, detail: str) -> None:
        flow = self.flow
        self.violations += 1
        flow.violation(f"{reason}: {detail}")
        if flow.analyzer_status != CONFIRMED and self.violations >= VIOLATIONS_BEFORE_DISABLE:
            flow.disable(f"not S7 over ISO-on-TCP: {detail}")
            self.held = []

    def _framing_violation(self, from_initiator: bool, side: _Side, version: int,
                           reserved: int, length: int, ts: float, packet: int) -> None:
        reason = BAD_PROTOCOL_ID if version != TPKT_VERSION else BAD_LENGTH
        fields = {"tpkt.version": version, "tpkt.reserved": reserved, "tpkt.length": length}
        detail = f"TPKT version {version}, length {length}"
        if self.flow.analyzer_status == CONFIRMED:
            self._malformed(from_initiator, self._name(), fields, reason, ts, packet, detail)
        self._violation(reason, detail)
        side.resync = True  # the rest of this segment cannot be framed

    def _name(self) -> str:
        return PLUS_NAME if self.plus else PROTOCOL_NAME

    def _malformed(self, from_initiator: bool, protocol: str, fields: dict[str, Any],
                   reason: str, ts: float, packet: int, detail: str) -> None:
        fields["malformed_detail"] = detail
        self.emit(IcsEvent(
            ts, self.flow, from_initiator, protocol, REQUEST if from_initiator else RESPONSE,
            OTHER, "malformed", None, fields, packet, reason,
        ))

    # -- COTP -------------------------------------------------------------------

    def _tpdu(self, from_initiator: bool, side: _Side, data: bytes, start: int, end: int,
              tpkt_length: int, ts: float, packet: int) -> None:
        li = data[start]
        code = data[start + 1] >> 4
        if li < 2 or start + 1 + li > end:
            fields = {"tpkt.length": tpkt_length, "cotp.li": li, "cotp.type": code}
            detail = f"COTP length indicator {li} in a TPKT of {tpkt_length} bytes"
            if self.flow.analyzer_status == CONFIRMED:
                self._malformed(from_initiator, self._name(), fields, BAD_LENGTH, ts, packet,
                                detail)
            self._violation(BAD_LENGTH, detail)
            return
        if code == CotpType.DT:
            if li != 2:
                fields = {"cotp.li": li, "cotp.type": code}
                detail = f"COTP DT with length indicator {li}, class 0 has 2"
                self._malformed(from_initiator, self._name(), fields, BAD_LENGTH, ts, packet,
                                detail)
                self._violation(BAD_LENGTH, detail)
                return
            payload = data[start + 3 : end]
            if not data[start + 2] & 0x80:  # more TPDUs follow
                if len(side.cotp) + len(payload) > MAX_COTP_BYTES:
                    detail = f"COTP data unit longer than {MAX_COTP_BYTES} bytes"
                    side.cotp = b""
                    self._malformed(from_initiator, self._name(), {"cotp.eot": False},
                                    BAD_LENGTH, ts, packet, detail)
                    return
                side.cotp += payload
                return
            if side.cotp:
                payload = side.cotp + payload
                side.cotp = b""
            if payload:
                self._data(from_initiator, side, payload, ts, packet)
            return
        self._cotp_control(from_initiator, data, start, end, li, code, ts, packet)

    def _cotp_control(self, from_initiator: bool, data: bytes, start: int, end: int, li: int,
                      code: int, ts: float, packet: int) -> None:
        """Connection request/confirm, disconnect, error and the other
        non-data TPDUs: one event each."""
        fields: dict[str, Any] = {"cotp.li": li, "cotp.type": code}
        operation = COTP_OPERATIONS.get(code)  # type: ignore[call-overload]
        malformed: str | None = None
        direction = RESPONSE if code in COTP_RESPONSES else REQUEST
        protocol = self._name()
        try:
            (fields["cotp.destref"],) = _U16.unpack_from(data, start + 2)
            if code in (CotpType.CR, CotpType.CC):
                (fields["cotp.srcref"],) = _U16.unpack_from(data, start + 4)
                option = data[start + 6]
                fields["cotp.class"] = option >> 4
                fields["cotp.opts.extended_formats"] = bool(option & 0x02)
                fields["cotp.opts.no_explicit_flow_control"] = bool(option & 0x01)
                protocol = self._cotp_parameters(data, start + 7, start + 1 + li, code, fields)
            elif code in (CotpType.DR, CotpType.DC):
                (fields["cotp.srcref"],) = _U16.unpack_from(data, start + 4)
                if code == CotpType.DR:
                    fields["cotp.cause"] = data[start + 6]
            elif code == CotpType.ER:
                fields["cotp.reject_cause"] = data[start + 4]
        except (IndexError, struct.error):
            malformed = TRUNCATED
            fields["malformed_detail"] = f"COTP {operation} shorter than its fields"
        if operation is None:
            operation = "unknown_function"
            malformed = UNKNOWN_FUNCTION
            fields["malformed_detail"] = f"unknown COTP TPDU code 0x{code:x}"
        event = IcsEvent(ts, self.flow, from_initiator, protocol, direction, OTHER, operation,
                         None, fields, packet, malformed)
        if malformed is not None:
            self._violation(malformed, fields["malformed_detail"])
        if self.flow.analyzer_status == CONFIRMED:
            self.emit(event)
        elif self.flow.session is self:
            self.held.append(event)

    def _cotp_parameters(self, data: bytes, p: int, end: int, code: int,
                         fields: dict[str, Any]) -> str:
        """CR/CC variable part: TPDU size and the TSAPs. Returns the protocol
        the connection is for: a called TSAP naming a SIMATIC object
        ("SIMATIC-ROOT-ES", "SIMATIC-ROOT-HMI") opens an S7comm-plus session."""
        protocol = self._name()
        while p < end:
            parameter = data[p]
            _append(fields, "cotp.parameter_code", parameter)
            if p + 1 >= end:
                break
            length = data[p + 1]
            _append(fields, "cotp.parameter_length", length)
            value = data[p + 2 : p + 2 + length]
            if len(value) != length or p + 2 + length > end:
                raise IndexError("COTP parameter runs past the TPDU")
            if parameter == 0xC0 and length == 1:
                fields["cotp.tpdu_size"] = 1 << value[0]
            elif parameter in (0xC1, 0xC2):
                name = "cotp.src-tsap" if parameter == 0xC1 else "cotp.dst-tsap"
                fields[name] = tsap_text(value)
                fields[name + "-bytes"] = value.hex()
                if parameter == 0xC2:
                    if length == 2:
                        fields["connection_type"] = CONNECTION_TYPES.get(value[0], value[0])
                        fields["rack"] = value[1] >> 5
                        fields["slot"] = value[1] & 0x1F
                    elif value.startswith(b"SIMATIC-"):
                        protocol = PLUS_NAME
                        if code == CotpType.CR:
                            self.plus = True
            p += 2 + length
        return protocol

    def _data(self, from_initiator: bool, side: _Side, pdu: bytes, ts: float,
              packet: int) -> None:
        protocol_id = pdu[0]
        if protocol_id == S7COMM_PROTOCOL_ID:
            self._s7(from_initiator, side, pdu, ts, packet)
        elif protocol_id == S7COMM_PLUS_PROTOCOL_ID:
            self.plus = True
            self._plus(from_initiator, side, pdu, ts, packet)
        else:
            detail = f"COTP data with protocol id 0x{protocol_id:02x} (not S7 or S7comm-plus)"
            if self.flow.analyzer_status == CONFIRMED:
                self._malformed(from_initiator, self._name(), {"header.protid": protocol_id},
                                BAD_PROTOCOL_ID, ts, packet, detail)
            self._violation(BAD_PROTOCOL_ID, detail)

    # -- pairing ------------------------------------------------------------------

    def _remember(self, key: int, ts: float, packet: int, function: int, operation: str,
                  access: str) -> None:
        pending = self.pending
        if len(pending) >= MAX_PENDING_REQUESTS:
            del pending[next(iter(pending))]  # never answered: forget the oldest
            self.unanswered += 1
        pending[key] = _Request(ts, packet, function, operation, access)

    # -- S7comm-plus --------------------------------------------------------------

    def _plus(self, from_initiator: bool, side: _Side, pdu: bytes, ts: float,
              packet: int) -> None:
        whole = s7comm_plus.complete(pdu)
        if whole is False:  # a fragment: keep its data part
            if len(side.plus) + len(pdu) > MAX_COTP_BYTES:
                side.plus = b""
            side.plus += pdu[s7comm_plus.HEADER_LENGTH:]
            return
        joined: bytes | None = None
        if whole and side.plus:
            joined = side.plus + pdu[s7comm_plus.HEADER_LENGTH : -s7comm_plus.TRAILER_LENGTH]
            side.plus = b""
        out = s7comm_plus.decode(pdu, joined)
        response_time: float | None = None
        request_packet = 0
        if out.pair_key >= 0:
            if out.direction == REQUEST:
                self._remember(_key(_PLUS, out.pair_key, from_initiator), ts, packet,
                               out.fields.get("data.function", 0), out.operation, out.access)
            else:
                request = self.pending.pop(_key(_PLUS, out.pair_key, not from_initiator), None)
                if request is not None:
                    response_time = ts - request.ts
                    request_packet = request.packet
        if out.malformed is None:
            self._confirm()
        else:
            if self.held:
                self._flush()
            out.fields["malformed_detail"] = f"S7comm-plus {out.operation}: {out.malformed}"
            self._violation(out.malformed, out.fields["malformed_detail"])
        self.emit(IcsEvent(ts, self.flow, from_initiator, PLUS_NAME, out.direction, out.access,
                           out.operation, None, out.fields, packet, out.malformed,
                           response_time, request_packet))

    # -- S7comm ---------------------------------------------------------------

    def _s7(self, from_initiator: bool, side: _Side, pdu: bytes, ts: float,
            packet: int) -> None:
        size = len(pdu)
        fields: dict[str, Any] = {}
        if size < 10:
            fields["header.protid"] = pdu[0]
            if self.held:
                self._flush()
            self._malformed(from_initiator, PROTOCOL_NAME, fields, TRUNCATED, ts, packet,
                            f"S7 PDU of {size} bytes, the header has 10")
            self._violation(TRUNCATED, "short S7 header")
            return
        protid, rosctr, redid, pduref, parlg, datlg = _HEADER.unpack_from(pdu, 0)
        fields["header.protid"] = protid
        fields["header.rosctr"] = rosctr
        fields["header.redid"] = redid
        fields["header.pduref"] = pduref
        fields["header.parlg"] = parlg
        fields["header.datlg"] = datlg
        verdict = _Verdict()
        malformed: str | None = None
        response_time: float | None = None
        request_packet = 0
        request: _Request | None = None
        header_length = 12 if rosctr in (Rosctr.ACK, Rosctr.ACK_DATA) else 10
        if rosctr in (Rosctr.ACK, Rosctr.ACK_DATA):
            verdict.direction = RESPONSE
            request = self.pending.pop(_key(_JOB, pduref, not from_initiator), None)
            if request is not None:
                response_time = ts - request.ts
                request_packet = request.packet
                verdict.operation, verdict.access = request.operation, request.access
            elif rosctr == Rosctr.ACK:
                verdict.operation = "ack"
        try:
            if rosctr not in (Rosctr.JOB, Rosctr.ACK, Rosctr.ACK_DATA, Rosctr.USERDATA):
                raise _Malformed(UNKNOWN_FUNCTION, f"unknown ROSCTR {rosctr}")
            if header_length == 12:
                errcls, errcod = pdu[10], pdu[11]
                fields["header.errcls"] = errcls
                fields["header.errcod"] = errcod
                if errcls or errcod:
                    fields["param.errcod"] = errcls << 8 | errcod
                    verdict.exception = True
            p = header_length
            if p + parlg + datlg != size:
                malformed = BAD_LENGTH
                fields["malformed_detail"] = (
                    f"header says {header_length} + {parlg} + {datlg} bytes, PDU has {size}")
            if rosctr == Rosctr.USERDATA:
                try:
                    self._userdata(side, pdu, p, parlg, datlg, fields, verdict)
                finally:
                    if verdict.pair == REQUEST:
                        self._remember(_key(_USERDATA, pduref, from_initiator), ts, packet,
                                       0, verdict.operation, verdict.access)
                    elif verdict.pair == RESPONSE:
                        request = self.pending.pop(
                            _key(_USERDATA, pduref, not from_initiator), None)
                        if request is not None:
                            response_time = ts - request.ts
                            request_packet = request.packet
            elif rosctr == Rosctr.JOB:
                try:
                    self._job(pdu, p, parlg, datlg, fields, verdict)
                finally:
                    self._remember(_key(_JOB, pduref, from_initiator), ts, packet,
                                   pdu[p] if parlg else -1, verdict.operation, verdict.access)
            elif rosctr == Rosctr.ACK_DATA and parlg:
                own = _Verdict()
                try:
                    self._ack_data(pdu, p, parlg, datlg, fields, own)
                finally:
                    if request is None or request.function != pdu[p]:
                        verdict.operation, verdict.access = own.operation, own.access
        except _Malformed as exc:
            malformed = exc.reason
            fields["malformed_detail"] = str(exc)
        except (IndexError, struct.error):
            malformed = TRUNCATED if malformed is None else malformed
            fields.setdefault("malformed_detail", "a field runs past the end of the S7 PDU")
        if malformed is None:
            self._confirm()
        else:
            if self.held:
                self._flush()  # an S7 PDU, even a broken one: the connection was S7
            self._violation(malformed, fields["malformed_detail"])
        self.emit(IcsEvent(ts, self.flow, from_initiator, PROTOCOL_NAME, verdict.direction,
                           verdict.access, verdict.operation, None, fields, packet, malformed,
                           response_time, request_packet, verdict.exception))

    # -- Job and Ack_Data ---------------------------------------------------------

    def _job(self, pdu: bytes, p: int, parlg: int, datlg: int, fields: dict[str, Any],
             verdict: _Verdict) -> None:
        if not parlg:
            verdict.operation = "job"
            return
        function = _function(pdu, p, parlg, datlg, fields, verdict)
        if function in (Function.READ_VAR, Function.WRITE_VAR):
            count = pdu[p + 1]
            fields["param.itemcount"] = count
            q = p + 2
            for i in range(count):
                length = _param_item(pdu, q, fields)
                q += length
                if length % 2 and i < count - 1:
                    q += 1
            if function == Function.WRITE_VAR and datlg:
                _data_items(pdu, q, count, fields)
        elif function == Function.SETUP_COMMUNICATION:
            _setup(pdu, p + 1, fields)
        elif function == Function.PLC_CONTROL:
            _pi_service(pdu, p, parlg, fields, verdict)
        elif function == Function.PLC_STOP:
            fields["param.pistart.unknown1"] = pdu[p + 1 : p + 6].hex()
            length = pdu[p + 6]
            fields["data.plccontrol.part2_len"] = length
            fields["param.pistart.servicename"] = _text(pdu, p + 7, length)
        elif Function.REQUEST_DOWNLOAD <= function <= Function.END_UPLOAD:
            _updownload(pdu, p, parlg, datlg, True, fields)
        else:
            _raw(pdu, p, parlg, datlg, fields)

    def _ack_data(self, pdu: bytes, p: int, parlg: int, datlg: int, fields: dict[str, Any],
                  verdict: _Verdict) -> None:
        function = _function(pdu, p, parlg, datlg, fields, verdict)
        if function in (Function.READ_VAR, Function.WRITE_VAR):
            count = pdu[p + 1]
            fields["param.itemcount"] = count
            if datlg:
                if function == Function.READ_VAR:
                    _data_items(pdu, p + parlg, count, fields)
                else:
                    q = p + parlg
                    for _ in range(count):
                        _append(fields, "data.returncode", pdu[q])
                        q += 1
        elif function == Function.SETUP_COMMUNICATION:
            _setup(pdu, p + 1, fields)
        elif Function.REQUEST_DOWNLOAD <= function <= Function.END_UPLOAD:
            _updownload(pdu, p, parlg, datlg, False, fields)
        elif function == Function.PLC_CONTROL:
            if parlg >= 2:
                fields["param.blockcontrol.functionstatus"] = pdu[p + 1]
        else:
            _raw(pdu, p, parlg, datlg, fields)

    # -- Userdata ---------------------------------------------------------------

    def _userdata(self, side: _Side, pdu: bytes, p: int, parlg: int, datlg: int,
                  fields: dict[str, Any], verdict: _Verdict) -> None:
        """Sets the verdict's operation, access, direction, error and how the
        PDU pairs (REQUEST, RESPONSE or "" for pushes), then decodes."""
        if parlg < 8:
            raise _Malformed(BAD_LENGTH, f"userdata parameter of {parlg} bytes, at least 8")
        head = pdu[p] << 16 | pdu[p + 1] << 8 | pdu[p + 2]
        fields["param.userdata.head"] = head
        fields["param.userdata.length"] = pdu[p + 3]
        fields["param.userdata.reqres1"] = pdu[p + 4]
        kind = pdu[p + 5] >> 4
        group = pdu[p + 5] & 0x0F
        subfunction = pdu[p + 6]
        fields["param.userdata.type"] = kind
        fields["param.userdata.funcgroup"] = group
        if group == FunctionGroup.MODE_TRANSITION:
            fields["param.modetrans.subfunc"] = subfunction
        else:
            fields["param.userdata.subfunc"] = subfunction
        if kind in (UserdataType.REQUEST, UserdataType.NC_REQUEST):
            verdict.pair = REQUEST
        elif kind in (UserdataType.RESPONSE, UserdataType.NC_RESPONSE):
            verdict.direction = verdict.pair = RESPONSE
        named = USERDATA_OPERATIONS.get(group << 8 | subfunction)
        if named is None:
            named = USERDATA_GROUP_OPERATIONS.get(group)  # type: ignore[call-overload]
        if named is None:
            group_name = USERDATA_GROUP_NAMES.get(group)
            if group_name is None:
                raise _Malformed(UNKNOWN_FUNCTION, f"unknown userdata function group {group}")
            raise _Malformed(UNKNOWN_FUNCTION,
                             f"unknown subfunction {subfunction} of userdata group {group_name}")
        verdict.operation, verdict.access = named
        fields["param.userdata.seq_num"] = pdu[p + 7]
        unit_ref = last_unit = 0
        if parlg >= 12:
            unit_ref = pdu[p + 8]
            last_unit = pdu[p + 9]
            fields["param.userdata.dataunitref"] = unit_ref
            fields["param.userdata.lastdataunit"] = last_unit
            (errcod,) = _U16.unpack_from(pdu, p + 10)
            fields["param.errcod"] = errcod
            verdict.exception = errcod != 0
        d = p + parlg
        if datlg < 4:
            return
        ret = pdu[d]
        tsize = pdu[d + 1]
        (length,) = _U16.unpack_from(pdu, d + 2)
        fields["data.returncode"] = [ret]
        fields["data.transportsize"] = [tsize]
        fields["data.length"] = [length]
        if length < 2:
            return
        q = d + 4
        body: bytes = pdu
        if unit_ref and group not in (FunctionGroup.NC_PROGRAMMING,
                                      FunctionGroup.PBC_BSEND_BRECV):
            # Fragmented over several PDUs: data units with the same
            # reference are joined up to the last one.
            units = side.units
            joined = units.pop(unit_ref, b"") + pdu[q : q + length]
            if last_unit:
                if len(units) >= MAX_FRAGMENT_KEYS:
                    del units[next(iter(units))]
                units[unit_ref] = joined[:MAX_COTP_BYTES]
                return
            body, q = joined, 0
        if not last_unit and q < len(body):
            self._userdata_data(body, q, kind, group, subfunction, ret, tsize, fields)

    def _userdata_data(self, body: bytes, q: int, kind: int, group: int, subfunction: int,
                       ret: int, tsize: int, fields: dict[str, Any]) -> None:
        response = kind == UserdataType.RESPONSE
        request = kind == UserdataType.REQUEST
        if group == FunctionGroup.CPU_FUNCTIONS and subfunction == 0x01:
            _szl(body, q, request, response, ret, fields)
        elif group == FunctionGroup.BLOCK_FUNCTIONS:
            _block_functions(body, q, request, response, subfunction, ret, tsize, fields)
        elif group == FunctionGroup.TIME_FUNCTIONS and (
                (response and subfunction in (1, 3)) or (request and subfunction in (2, 4))):
            if ret == RETURN_OK:
                _timestamp(body, q, fields)
        else:
            fields["data.userdata.raw"] = body[q:].hex()


# What a pending request is (its key's top bits): jobs and userdata pair by
# PDU reference, S7comm-plus by sequence number; each side's own.
_JOB: Final = 0
_USERDATA: Final = 1
_PLUS: Final = 2


def _key(kind: int, reference: int, from_initiator: bool) -> int:
    return kind << 20 | reference << 1 | from_initiator


def _starts_tpkt(data: bytes) -> bool:
    return len(data) >= TPKT_HEADER and data[0] == TPKT_VERSION and data[1] == 0


# -- parameter and data parts -------------------------------------------------------------


def _setup(pdu: bytes, q: int, fields: dict[str, Any]) -> None:
    fields["param.setup_reserved1"] = pdu[q]
    calling, called, pdu_length = _U16X3.unpack_from(pdu, q + 1)
    fields["param.maxamq_calling"] = calling
    fields["param.maxamq_called"] = called
    fields["param.pdu_length"] = pdu_length


def _function(pdu: bytes, p: int, parlg: int, datlg: int, fields: dict[str, Any],
              verdict: _Verdict) -> int:
    """The job's or ack's function code, with its operation and access set
    on the verdict; an unknown code is malformed (its bytes kept raw)."""
    function = pdu[p]
    fields["param.func"] = function
    operation = FUNCTION_OPERATIONS.get(function)  # type: ignore[call-overload]
    if operation is None:
        _raw(pdu, p, parlg, datlg, fields)
        raise _Malformed(UNKNOWN_FUNCTION, f"unknown function 0x{function:02x}")
    verdict.operation = operation
    verdict.access = FUNCTION_ACCESS[function]  # type: ignore[index]
    return function


def _raw(pdu: bytes, p: int, parlg: int, datlg: int, fields: dict[str, Any]) -> None:
    if parlg > 1:
        fields["param.data"] = pdu[p + 1 : p + parlg].hex()
    if datlg:
        _append(fields, "resp.data", pdu[p + parlg : p + parlg + datlg].hex())


def _param_item(pdu: bytes, q: int, fields: dict[str, Any]) -> int:
    """One read/write item address; returns its length in bytes."""
    varspec, spec_length, syntax_id = pdu[q], pdu[q + 1], pdu[q + 2]
    _append(fields, "param.item.varspec", varspec)
    _append(fields, "param.item.varspec_length", spec_length)
    _append(fields, "param.item.syntaxid", syntax_id)
    if varspec == 0x12 and spec_length == 10 and syntax_id == SYNTAX_ID_S7ANY:
        tsize, length, db, area = _ITEM.unpack_from(pdu, q + 3)
        address = pdu[q + 9] << 16 | pdu[q + 10] << 8 | pdu[q + 11]
        _append(fields, "param.item.transp_size", tsize)
        _append(fields, "param.item.area", area)
        if area == AREA_DATARECORD:
            _append(fields, "readrec.mlen", length)
            _append(fields, "readrec.index", db)
            _append(fields, "readrec.id", address)
        else:
            _append(fields, "param.item.length", length)
            _append(fields, "param.item.db", db)
            _append(fields, "param.item.address.raw", address)
            if area in TIMER_COUNTER_AREAS:
                _append(fields, "param.item.address.number", address & 0xFFFF)
            else:
                _append(fields, "param.item.address.byte", (address & 0x7FFF8) >> 3)
                _append(fields, "param.item.address.bit", address & 0x7)
        _append(fields, "item", _item_name(area, db, address, tsize, length))
    elif q + 2 + spec_length > len(pdu):
        raise IndexError("item address runs past the PDU")
    return spec_length + 2


def _item_name(area: int, db: int, address: int, tsize: int, length: int) -> str:
    """The address as an engineer writes it: ``DB1.DBX 4.0 BYTE 8``, ``M 0.0 BYTE 2``."""
    name = AREA_NAMES.get(area, f"0x{area:02x}")
    if area in TIMER_COUNTER_AREAS:
        return f"{name} {address}"
    prefix = f"DB{db}.DBX " if area == 0x84 else f"DI{db}.DIX " if area == 0x85 \
        else f"{name} "
    return f"{prefix}{address >> 3}.{address & 7} {_TRANSPORT_NAMES.get(tsize, tsize)} {length}"


_TRANSPORT_NAMES: Final[dict[int, str]] = {
    1: "BIT", 2: "BYTE", 3: "CHAR", 4: "WORD", 5: "INT", 6: "DWORD", 7: "DINT", 8: "REAL",
    10: "TOD", 11: "TIME", 12: "S5TIME", 15: "DATE_AND_TIME", 28: "COUNTER", 29: "TIMER",
    30: "IEC_TIMER", 31: "IEC_COUNTER", 32: "HS_COUNTER",
}


def _data_items(pdu: bytes, q: int, count: int, fields: dict[str, Any]) -> None:
    """Read response / write request data: per item a return code, a
    transport size, a length (in bits for sizes 3-5; shown in bytes, as
    Wireshark does) and the value, padded to even length between items."""
    if count and pdu[q + 1] in NCK_ADDRESS_SIZES:
        fields["data.returncode"] = [pdu[q]]
        fields["data.transportsize"] = [pdu[q + 1]]
        fields["data.userdata.raw"] = pdu[q + 2 :].hex()
        return
    end = len(pdu)
    for i in range(count):
        ret, tsize = pdu[q], pdu[q + 1]
        (length,) = _U16.unpack_from(pdu, q + 2)
        if tsize in BIT_LENGTH_SIZES:
            length = (length + 7) >> 3
        _append(fields, "data.returncode", ret)
        _append(fields, "data.transportsize", tsize)
        _append(fields, "data.length", length)
        q += 4
        if ret in (RETURN_OK, 0x00):
            if q + length > end:
                raise IndexError("item value runs past the PDU")
            _append(fields, "resp.data", pdu[q : q + length].hex())
            q += length
            if length % 2 and i < count - 1:
                _append(fields, "data.fillbyte", pdu[q])
                q += 1


def _filename(pdu: bytes, q: int, fields: dict[str, Any]) -> int:
    length = pdu[q]
    fields["param.blockcontrol.filename_len"] = length
    name = _text(pdu, q + 1, length)
    fields["param.blockcontrol.filename"] = name
    if length == 9 and pdu[q + 1] == 0x5F and 0x3038 <= (pdu[q + 2] << 8 | pdu[q + 3]) <= 0x3046:
        _block_address(pdu, q + 2, fields, True)
    return q + 1 + length


def _block_address(pdu: bytes, q: int, fields: dict[str, Any], identifier: bool) -> None:
    """``_0A00001P``: identifier, block type, number (5 digits), file system."""
    if identifier:
        _append(fields, "data.blockcontrol.file_identifier", chr(pdu[q - 1]))
    kind = pdu[q : q + 2]
    number = _text(pdu, q + 2, 5)
    _append(fields, "data.blockcontrol.block_type", kind.decode("ascii", "replace"))
    _append(fields, "data.blockcontrol.block_number", number)
    _append(fields, "data.blockcontrol.dest_filesys", chr(pdu[q + 7]))
    _append(fields, "block", f"{BLOCK_TYPES.get(kind, kind.hex())}{_number(number)}")


def _number(text: str) -> str:
    return str(int(text)) if text.isdigit() else text


def _updownload(pdu: bytes, p: int, parlg: int, datlg: int, job: bool,
                fields: dict[str, Any]) -> None:
    function = pdu[p]
    q = p + 1
    if function == Function.REQUEST_DOWNLOAD:
        if job:
            fields["param.blockcontrol.functionstatus"] = pdu[q]
            fields["data.blockcontrol.unknown1"] = [pdu[q + 1 : q + 3].hex(),
                                                    pdu[q + 3 : q + 7].hex()]
            q = _filename(pdu, q + 7, fields)
            if parlg > 18:
                fields["data.blockcontrol.part2_len"] = pdu[q]
                fields["data.blockcontrol.part2_unknown"] = _text(pdu, q + 1, 1)
                fields["data.blockcontrol.loadmem_len"] = _text(pdu, q + 2, 6)
                fields["data.blockcontrol.mc7code_len"] = _text(pdu, q + 8, 6)
        elif parlg >= 2:
            fields["param.blockcontrol.functionstatus"] = pdu[q]
    elif function == Function.START_UPLOAD:
        fields["param.blockcontrol.functionstatus"] = pdu[q]
        fields["data.blockcontrol.unknown1"] = [pdu[q + 1 : q + 3].hex()]
        (fields["data.blockcontrol.uploadid"],) = _U32.unpack_from(pdu, q + 3)
        if job:
            _filename(pdu, q + 7, fields)
        elif parlg > 8:
            length = pdu[q + 7]
            fields["param.blockcontrol.upl_lenstring_len"] = length
            fields["param.blockcontrol.upl_lenstring"] = _text(pdu, q + 8, length)
    elif function in (Function.UPLOAD, Function.DOWNLOAD_BLOCK):
        if job:
            fields["param.blockcontrol.functionstatus"] = pdu[q]
            unknown = [pdu[q + 1 : q + 3].hex()]
            fields["data.blockcontrol.unknown1"] = unknown
            if function == Function.UPLOAD:
                (fields["data.blockcontrol.uploadid"],) = _U32.unpack_from(pdu, q + 3)
            else:
                unknown.append(pdu[q + 3 : q + 7].hex())
                _filename(pdu, q + 7, fields)
        else:
            if parlg >= 2:
                fields["param.blockcontrol.functionstatus"] = pdu[q]
            if datlg:
                d = p + parlg
                (length,) = _U16.unpack_from(pdu, d)
                fields["data.length"] = [length]
                fields["data.blockcontrol.unknown1"] = [pdu[d + 2 : d + 4].hex()]
                if datlg < 4 or d + datlg > len(pdu):
                    raise IndexError("block data runs past the PDU")
                fields["resp.data"] = [pdu[d + 4 : d + datlg].hex()]
    elif job:  # end upload, download ended
        fields["param.blockcontrol.functionstatus"] = pdu[q]
        (fields["data.blockcontrol.errorcode"],) = _U16.unpack_from(pdu, q + 1)
        if function == Function.END_UPLOAD:
            (fields["data.blockcontrol.uploadid"],) = _U32.unpack_from(pdu, q + 3)
        else:
            fields["data.blockcontrol.unknown1"] = [pdu[q + 3 : q + 7].hex()]
            _filename(pdu, q + 7, fields)
    elif parlg >= 2:
        fields["param.blockcontrol.functionstatus"] = pdu[q]


def _pi_service(pdu: bytes, p: int, parlg: int, fields: dict[str, Any],
                verdict: _Verdict) -> None:
    """PLC control (function 0x28, Wireshark's "PI-Service"): a parameter
    block and the name of the program invocation service, which decides the
    access class."""
    fields["param.pistart.unknown1"] = pdu[p + 1 : p + 8].hex()
    if parlg <= 8:
        return
    (block_length,) = _U16.unpack_from(pdu, p + 8)
    fields["param.pistart.parameterblock_len"] = block_length
    block = p + 10
    q = block + block_length
    length = pdu[q]
    fields["param.pi.n_x.string_len"] = [length]
    service = _text(pdu, q + 1, length)
    fields["param.pistart.servicename"] = service
    verdict.access = FILE if service.startswith("_N_") else PI_SERVICE_ACCESS.get(
        service, CONTROL)
    if service in PI_BLOCK_SERVICES:
        count = pdu[block]
        fields["data.plccontrol.block_cnt"] = count
        fields["param.pi.inse.unknown"] = pdu[block + 1]
        r = block + 2
        for _ in range(count):
            _append(fields, "param.blockcontrol.filename", _text(pdu, r, 8))
            _block_address(pdu, r, fields, False)
            r += 8
    elif service in PI_ARGUMENT_SERVICES and block_length:
        fields["param.pistart.argument"] = _text(pdu, block, block_length)


# -- userdata data parts ----------------------------------------------------------


def _szl(body: bytes, q: int, request: bool, response: bool, ret: int,
         fields: dict[str, Any]) -> None:
    """Read SZL: the request names a partial list (id, index); the response
    carries it, as records of ``partlist_len`` bytes. Module (0x0011) and
    component (0x001C) identification become the ``identity`` asset facts."""
    if request:
        szl_id, index = _U16X2.unpack_from(body, q)
        fields["data.userdata.szl_id"] = szl_id
        fields["data.userdata.szl_index"] = index
        return
    if not response or ret != RETURN_OK:
        return
    szl_id, index, record_length, count = _U16X4.unpack_from(body, q)
    fields["data.userdata.szl_id"] = szl_id
    fields["data.userdata.szl_index"] = index
    fields["data.userdata.szl_partlist_len"] = record_length
    fields["data.userdata.szl_partlist_cnt"] = count
    remaining = len(body) - q
    if count * record_length > remaining - 8:
        # Some CPUs send 0xFFFF as the count of a fragmented list.
        count = (remaining - 8) // record_length if record_length else 0
    r = q + 8
    if remaining <= 8 or not count * record_length:
        return
    identity: dict[str, Any] = {}
    for _ in range(count):
        if szl_id in SZL_MODULE_IDENTIFICATION:
            r = _szl_0011(body, r, identity, fields)
        elif szl_id in SZL_COMPONENT_IDENTIFICATION:
            r = _szl_001c(body, r, identity, fields)
        else:
            _append(fields, "param.userdata.szl_part_list", body[r : r + record_length].hex())
            r += record_length
    if identity:
        fields["identity"] = identity


def _szl_0011(body: bytes, r: int, identity: dict[str, Any], fields: dict[str, Any]) -> int:
    """Module identification: index, order number (MlfB, 20 chars), module
    type, and two version words ('V', major / minor, patch for firmware)."""
    (index,) = _U16.unpack_from(body, r)
    order = _text(body, r + 2, 20)
    module_type, version_high, version_low = _U16X3.unpack_from(body, r + 22)
    _append(fields, "szl.xy11.0001.index", index)
    _append(fields, "szl.xy11.0001.anz", order)
    _append(fields, "szl.xy11.0001.bgtyp", module_type)
    _append(fields, "szl.xy11.0001.ausbg", version_high)
    _append(fields, "szl.xy11.0001.ausbe", version_low)
    key = SZL_0011_INDEX_KEYS.get(index)
    if key is not None and order.strip():
        identity[key] = order.strip()
    version = f"V{version_high & 0xFF}.{version_low >> 8}.{version_low & 0xFF}" \
        if version_high >> 8 == 0x56 else None  # 'V', major, minor, patch
    if index == 0x0007 and version is not None:
        identity["firmware_version"] = version
    elif index == 0x0006:
        identity["hardware_version"] = str(version_low)
    return r + 28


def _szl_001c(body: bytes, r: int, identity: dict[str, Any], fields: dict[str, Any]) -> int:
    """Component identification: 34-byte records, a text per index."""
    (index,) = _U16.unpack_from(body, r)
    _append(fields, "szl.001c.000x.index", index)
    kind = index & 0x0F
    text = SZL_001C_TEXTS.get(kind)
    if text is not None:
        name, key, length = text
        value = _text(body, r + 2, length)
        fields[name] = value
        if value.strip():
            identity[key] = value.strip()
        if length < 32:
            _append(fields, "szl.001c.000x.res", body[r + 2 + length : r + 34].hex())
    elif kind == 0x09:
        manufacturer, profile, profile_type = _U16X3.unpack_from(body, r + 2)
        fields["szl.001c.0009.manufacturer_id"] = manufacturer
        fields["szl.001c.0009.profile_id"] = profile
        fields["szl.001c.0009.profile_spec_typ"] = profile_type
        _append(fields, "szl.001c.000x.res", body[r + 8 : r + 34].hex())
        if manufacturer == SIEMENS_MANUFACTURER_ID:
            identity["vendor"] = "Siemens AG"
    elif kind == 0x0A:
        fields["szl.001c.000a.oem_copyright_string"] = _text(body, r + 2, 26)
        (fields["szl.001c.000a.oem_id"],) = _U16.unpack_from(body, r + 28)
        (fields["szl.001c.000a.oem_add_id"],) = _U32.unpack_from(body, r + 30)
    else:
        _append(fields, "szl.001c.000x.res", body[r + 2 : r + 34].hex())
    if r + 34 > len(body):
        raise IndexError("SZL record runs past the PDU")
    return r + 34


def _block_functions(body: bytes, q: int, request: bool, response: bool, subfunction: int,
                     ret: int, tsize: int, fields: dict[str, Any]) -> None:
    remaining = len(body) - q
    if subfunction == 0x01 and response:  # list blocks: type and count per block type
        for _ in range(remaining // 4):
            _append(fields, "blockinfo.blocktype", _text(body, q, 2))
            _append(fields, "blockinfo.block_count", body[q + 2] << 8 | body[q + 3])
            q += 4
    elif subfunction == 0x02:  # list blocks of type
        if tsize and request:
            _append(fields, "blockinfo.blocktype", _text(body, q, 2))
        elif tsize and response:
            for _ in range(remaining // 4):
                _append(fields, "blockinfo.block_num", body[q] << 8 | body[q + 1])
                _append(fields, "blockinfo.flags", body[q + 2])
                _append(fields, "blockinfo.block_lang", body[q + 3])
                q += 4
    elif subfunction == 0x03:  # get block info
        if tsize and request:
            _append(fields, "blockinfo.blocktype", _text(body, q, 2))
            number = _text(body, q + 2, 5)
            fields["data.blockinfo.block_number"] = number
            fields["data.blockinfo.filesys"] = chr(body[q + 7])
            fields["block"] = [f"{BLOCK_TYPES.get(body[q : q + 2], body[q : q + 2].hex())}"
                               f"{_number(number)}"]
        elif response and ret == RETURN_OK:
            _block_info(body, q, fields)
    elif remaining > 0:
        fields["data.userdata.raw"] = body[q:].hex()


def _block_info(body: bytes, q: int, fields: dict[str, Any]) -> None:
    _append(fields, "blockinfo.blocktype", _text(body, q, 2))
    fields["blockinfo.res_infolength"], fields["blockinfo.res_unknown2"] = \
        _U16X2.unpack_from(body, q + 2)
    fields["blockinfo.res_const3"] = _text(body, q + 6, 2)
    fields["blockinfo.res_unknown"] = [body[q + 8 : q + 9].hex()]
    fields["param.userdata.blockinfo.flags"] = body[q + 9]
    _append(fields, "blockinfo.block_lang", body[q + 10])
    subblock = body[q + 11]
    fields["blockinfo.subblk_type"] = subblock
    number = body[q + 12] << 8 | body[q + 13]
    _append(fields, "blockinfo.block_num", number)
    fields["block"] = [f"{SUBBLOCK_TYPES.get(subblock, hex(subblock))}{number}"]
    fields["blockinfo.load_mem_len"], fields["blockinfo.blocksecurity"] = \
        struct.unpack_from("!II", body, q + 14)
    fields["blockinfo.code_timestamp"] = _s7_time(body, q + 22)
    fields["blockinfo.interface_timestamp"] = _s7_time(body, q + 28)
    (fields["blockinfo.ssb_len"], fields["blockinfo.add_len"],
     fields["blockinfo.localdata_len"], fields["blockinfo.mc7_len"]) = \
        _U16X4.unpack_from(body, q + 34)
    fields["blockinfo.author"] = _text(body, q + 42, 8)
    fields["blockinfo.family"] = _text(body, q + 50, 8)
    fields["blockinfo.headername"] = _text(body, q + 58, 8)
    version = body[q + 66]
    fields["blockinfo.headerversion"] = f"{version >> 4}.{version & 0x0F}"
    fields["blockinfo.res_unknown"].append(body[q + 67 : q + 68].hex())
    (fields["blockinfo.checksum"],) = _U16.unpack_from(body, q + 68)
    fields["blockinfo.reserved1"], fields["blockinfo.reserved2"] = \
        struct.unpack_from("!II", body, q + 70)


def _timestamp(body: bytes, q: int, fields: dict[str, Any]) -> None:
    """Read/set clock: a 10-byte BCD DATE_AND_TIME."""
    raw = body[q : q + 10]
    if len(raw) != 10:
        raise IndexError("timestamp runs past the PDU")
    month = _bcd(raw[3])
    if not 1 <= month <= 12:
        return
    fields["data.ts_reserved"] = _bcd(raw[0])
    fields["data.ts_year1"] = _bcd(raw[1])
    fields["data.ts_year2"] = _bcd(raw[2])
    fields["data.ts_month"] = month
    fields["data.ts_day"] = _bcd(raw[4])
    fields["data.ts_hour"] = _bcd(raw[5])
    fields["data.ts_minute"] = _bcd(raw[6])
    fields["data.ts_second"] = _bcd(raw[7])
    fields["data.ts_millisecond"] = _bcd(raw[8]) * 10 + _bcd(raw[9] >> 4)
    fields["data.ts_weekday"] = raw[9] & 0x0F


# -- detection ------------------------------------------------------------------


def probe(data: bytes, from_initiator: bool) -> bool:
    """Is this segment ISO-on-TCP carrying S7? Whole TPKTs (version 3) whose
    COTP TPDUs are a connection request/confirm naming an S7 TSAP (2-byte
    called TSAP of connection type PG/OP/S7 basic, or a SIMATIC object name)
    or data TPDUs whose payload starts with 0x32 or 0x72."""
    size = len(data)
    offset = 0
    while size - offset >= MIN_TPKT_LENGTH:
        version, reserved, length = _TPKT.unpack_from(data, offset)
        if version != TPKT_VERSION or reserved or length < MIN_TPKT_LENGTH:
            return False
        end = offset + length
        if end > size:
            return False
        li = data[offset + 4]
        code = data[offset + 5] >> 4
        if li < 2 or offset + 5 + li > end:
            return False
        if code == CotpType.DT:
            if li != 2 or (end > offset + 7 and data[offset + 7] not in (
                    S7COMM_PROTOCOL_ID, S7COMM_PLUS_PROTOCOL_ID)):
                return False
        elif code in (CotpType.CR, CotpType.CC):
            if not _s7_tsap(data, offset + 11, offset + 5 + li):
                return False
        else:
            return False
        offset = end
    return offset == size and size > 0


def _s7_tsap(data: bytes, p: int, end: int) -> bool:
    while p + 2 <= end:
        parameter, length = data[p], data[p + 1]
        if parameter == 0xC2:
            value = data[p + 2 : p + 2 + length]
            return (length == 2 and value[0] in CONNECTION_TYPES) or \
                value.startswith(b"SIMATIC-")
        p += 2 + length
    return False


FIELDS: Final = (
    ("tpkt.version", "int"), ("tpkt.reserved", "int"), ("tpkt.length", "int"),
    ("cotp.li", "int"), ("cotp.type", "int"), ("cotp.destref", "int"), ("cotp.srcref", "int"),
    ("cotp.class", "int"), ("cotp.opts.extended_formats", "bool"),
    ("cotp.opts.no_explicit_flow_control", "bool"), ("cotp.parameter_code", "list[int]"),
    ("cotp.parameter_length", "list[int]"), ("cotp.tpdu_size", "int"),
    ("cotp.src-tsap", "str"), ("cotp.src-tsap-bytes", "str"), ("cotp.dst-tsap", "str"),
    ("cotp.dst-tsap-bytes", "str"), ("cotp.cause", "int"), ("cotp.reject_cause", "int"),
    ("cotp.eot", "bool"), ("connection_type", "str"), ("rack", "int"), ("slot", "int"),
    ("header.protid", "int"), ("header.rosctr", "int"), ("header.redid", "int"),
    ("header.pduref", "int"), ("header.parlg", "int"), ("header.datlg", "int"),
    ("header.errcls", "int"), ("header.errcod", "int"), ("param.errcod", "int"),
    ("param.func", "int"), ("param.setup_reserved1", "int"), ("param.maxamq_calling", "int"),
    ("param.maxamq_called", "int"), ("param.pdu_length", "int"), ("param.itemcount", "int"),
    ("param.data", "str"), ("param.item.varspec", "list[int]"),
    ("param.item.varspec_length", "list[int]"), ("param.item.syntaxid", "list[int]"),
    ("param.item.transp_size", "list[int]"), ("param.item.length", "list[int]"),
    ("param.item.db", "list[int]"), ("param.item.area", "list[int]"),
    ("param.item.address.raw", "list[int]"), ("param.item.address.byte", "list[int]"),
    ("param.item.address.bit", "list[int]"), ("param.item.address.number", "list[int]"),
    ("readrec.mlen", "list[int]"), ("readrec.index", "list[int]"), ("readrec.id", "list[int]"),
    ("item", "list[str]"), ("data.returncode", "list[int]"),
    ("data.transportsize", "list[int]"), ("data.length", "list[int]"),
    ("resp.data", "list[str]"), ("data.fillbyte", "list[int]"), ("data.userdata.raw", "str"),
    ("param.blockcontrol.functionstatus", "int"), ("data.blockcontrol.unknown1", "list[str]"),
    ("data.blockcontrol.uploadid", "int"), ("data.blockcontrol.errorcode", "int"),
    ("param.blockcontrol.filename_len", "int"), ("param.blockcontrol.filename", "str"),
    ("data.blockcontrol.file_identifier", "list[str]"),
    ("data.blockcontrol.block_type", "list[str]"),
    ("data.blockcontrol.block_number", "list[str]"),
    ("data.blockcontrol.dest_filesys", "list[str]"), ("block", "list[str]"),
    ("data.blockcontrol.part2_len", "int"), ("data.blockcontrol.part2_unknown", "str"),
    ("data.blockcontrol.loadmem_len", "str"), ("data.blockcontrol.mc7code_len", "str"),
    ("param.blockcontrol.upl_lenstring_len", "int"),
    ("param.blockcontrol.upl_lenstring", "str"), ("param.pistart.unknown1", "str"),
    ("param.pistart.parameterblock_len", "int"), ("param.pi.n_x.string_len", "list[int]"),
    ("param.pistart.servicename", "str"), ("param.pistart.argument", "str"),
    ("data.plccontrol.block_cnt", "int"), ("param.pi.inse.unknown", "int"),
    ("data.plccontrol.part2_len", "int"), ("param.userdata.head", "int"),
    ("param.userdata.length", "int"), ("param.userdata.reqres1", "int"),
    ("param.userdata.type", "int"), ("param.userdata.funcgroup", "int"),
    ("param.userdata.subfunc", "int"), ("param.modetrans.subfunc", "int"),
    ("param.userdata.seq_num", "int"), ("param.userdata.dataunitref", "int"),
    ("param.userdata.lastdataunit", "int"), ("data.userdata.szl_id", "int"),
    ("data.userdata.szl_index", "int"), ("data.userdata.szl_partlist_len", "int"),
    ("data.userdata.szl_partlist_cnt", "int"),
    ("param.userdata.szl_part_list", "list[str]"), ("szl.xy11.0001.index", "list[int]"),
    ("szl.xy11.0001.anz", "list[str]"), ("szl.xy11.0001.bgtyp", "list[int]"),
    ("szl.xy11.0001.ausbg", "list[int]"), ("szl.xy11.0001.ausbe", "list[int]"),
    ("szl.001c.000x.index", "list[int]"), ("szl.001c.000x.res", "list[str]"),
    *((name, "str") for name, _key, _length in SZL_001C_TEXTS.values()),
    ("szl.001c.0009.manufacturer_id", "int"), ("szl.001c.0009.profile_id", "int"),
    ("szl.001c.0009.profile_spec_typ", "int"), ("szl.001c.000a.oem_copyright_string", "str"),
    ("szl.001c.000a.oem_id", "int"), ("szl.001c.000a.oem_add_id", "int"),
    ("identity", "map"), ("blockinfo.blocktype", "list[str]"),
    ("blockinfo.block_count", "list[int]"), ("blockinfo.block_num", "list[int]"),
    ("blockinfo.flags", "list[int]"), ("blockinfo.block_lang", "list[int]"),
    ("data.blockinfo.block_number", "str"), ("data.blockinfo.filesys", "str"),
    ("blockinfo.res_infolength", "int"), ("blockinfo.res_unknown2", "int"),
    ("blockinfo.res_const3", "str"), ("blockinfo.res_unknown", "list[str]"),
    ("param.userdata.blockinfo.flags", "int"), ("blockinfo.subblk_type", "int"),
    ("blockinfo.load_mem_len", "int"), ("blockinfo.blocksecurity", "int"),
    ("blockinfo.code_timestamp", "str"), ("blockinfo.interface_timestamp", "str"),
    ("blockinfo.ssb_len", "int"), ("blockinfo.add_len", "int"),
    ("blockinfo.localdata_len", "int"), ("blockinfo.mc7_len", "int"),
    ("blockinfo.author", "str"), ("blockinfo.family", "str"), ("blockinfo.headername", "str"),
    ("blockinfo.headerversion", "str"), ("blockinfo.checksum", "int"),
    ("blockinfo.reserved1", "int"), ("blockinfo.reserved2", "int"),
    ("data.ts_reserved", "int"), ("data.ts_year1", "int"), ("data.ts_year2", "int"),
    ("data.ts_month", "int"), ("data.ts_day", "int"), ("data.ts_hour", "int"),
    ("data.ts_minute", "int"), ("data.ts_second", "int"), ("data.ts_millisecond", "int"),
    ("data.ts_weekday", "int"), ("malformed_detail", "str"),
)


def error_code(event: IcsEvent) -> int | None:
    """The error of a response in one number: the header's error class and
    code of an Ack/Ack_Data, the parameter error code of a userdata
    response (0xD209 "block not found", 0x8104 "not implemented"…)."""
    code: int | None = event.fields.get("param.errcod")
    return code


PROTOCOL: Final = ProtocolSpec(
    name=PROTOCOL_NAME,
    transport="tcp",
    ports=(102,),
    probe=probe,
    session=S7Session,
    operations=tuple(sorted(
        set(FUNCTION_OPERATIONS.values())
        | {name for name, _access in USERDATA_OPERATIONS.values()}
        | {name for name, _access in USERDATA_GROUP_OPERATIONS.values()}
        | set(COTP_OPERATIONS.values())
        | {"ack", "ack_data", "job", "unknown_function", "malformed"}
    )),
    fields=FIELDS,
    derived={"error_code": ("int", error_code)},
)

