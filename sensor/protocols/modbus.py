"""Modbus/TCP (Modbus Application Protocol V1.1b3, Messaging on TCP/IP V1.0b).

Frames MBAP ADUs out of the reassembled byte stream (several per segment or
one split across segments), decodes every public function code, pairs
responses with requests by transaction id, and turns each PDU into an
`IcsEvent`. Field names are Wireshark's (``modbus.*`` and ``mbtcp.*``,
without the prefix).

Header invariants decide ownership, as in Zeek's grammar: a protocol id other
than 0 or an MBAP length outside 2..254 is a violation. On a flow not yet
confirmed as Modbus, three violations disable the analyzer; on a confirmed
one each becomes a ``malformed`` event and decoding resumes at the next
segment.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from enum import IntEnum
from typing import Any, Final

from sensor.event import (
    BAD_LENGTH,
    BAD_PROTOCOL_ID,
    CONTROL,
    DIAGNOSTIC,
    FILE,
    OTHER,
    READ,
    REQUEST,
    RESPONSE,
    TRUNCATED,
    UNKNOWN_FUNCTION,
    WRITE,
    IcsEvent,
)
from sensor.flows.flow import CONFIRMED, Flow
from sensor.protocols.base import Emit, ProtocolSpec

PROTOCOL_NAME: Final = "modbus"
MBAP_LENGTH: Final = 7
MAX_ADU: Final = 260
MAX_PENDING_REQUESTS: Final = 1024
VIOLATIONS_BEFORE_DISABLE: Final = 3


class FunctionCode(IntEnum):
    """Public function codes, Modbus Application Protocol V1.1b3 §6."""

    READ_COILS = 1
    READ_DISCRETE_INPUTS = 2
    READ_HOLDING_REGISTERS = 3
    READ_INPUT_REGISTERS = 4
    WRITE_SINGLE_COIL = 5
    WRITE_SINGLE_REGISTER = 6
    READ_EXCEPTION_STATUS = 7
    DIAGNOSTICS = 8
    GET_COMM_EVENT_COUNTER = 11
    GET_COMM_EVENT_LOG = 12
    WRITE_MULTIPLE_COILS = 15
    WRITE_MULTIPLE_REGISTERS = 16
    REPORT_SERVER_ID = 17
    READ_FILE_RECORD = 20
    WRITE_FILE_RECORD = 21
    MASK_WRITE_REGISTER = 22
    READ_WRITE_MULTIPLE_REGISTERS = 23
    READ_FIFO_QUEUE = 24
    ENCAPSULATED_INTERFACE_TRANSPORT = 43


class DiagnosticCode(IntEnum):
    """Sub-function codes of function 8, §6.8.1."""

    RETURN_QUERY_DATA = 0
    RESTART_COMMUNICATIONS_OPTION = 1
    RETURN_DIAGNOSTIC_REGISTER = 2
    CHANGE_ASCII_INPUT_DELIMITER = 3
    FORCE_LISTEN_ONLY_MODE = 4
    CLEAR_COUNTERS_AND_DIAGNOSTIC_REGISTER = 10
    RETURN_BUS_MESSAGE_COUNT = 11
    RETURN_BUS_COMMUNICATION_ERROR_COUNT = 12
    RETURN_BUS_EXCEPTION_ERROR_COUNT = 13
    RETURN_SERVER_MESSAGE_COUNT = 14
    RETURN_SERVER_NO_RESPONSE_COUNT = 15
    RETURN_SERVER_NAK_COUNT = 16
    RETURN_SERVER_BUSY_COUNT = 17
    RETURN_BUS_CHARACTER_OVERRUN_COUNT = 18
    CLEAR_OVERRUN_COUNTER_AND_FLAG = 20


class MeiType(IntEnum):
    """MEI types of function 43, §6.19-6.21."""

    CANOPEN_GENERAL_REFERENCE = 13
    READ_DEVICE_IDENTIFICATION = 14


class ExceptionCode(IntEnum):
    """Exception codes, §7."""

    ILLEGAL_FUNCTION = 1
    ILLEGAL_DATA_ADDRESS = 2
    ILLEGAL_DATA_VALUE = 3
    SERVER_DEVICE_FAILURE = 4
    ACKNOWLEDGE = 5
    SERVER_DEVICE_BUSY = 6
    NEGATIVE_ACKNOWLEDGE = 7
    MEMORY_PARITY_ERROR = 8
    GATEWAY_PATH_UNAVAILABLE = 10
    GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND = 11


# Function codes the spec reserves for users (§5): not malformed, not decoded.
USER_DEFINED_CODES: Final = frozenset(range(65, 73)) | frozenset(range(100, 111))
# Schneider Electric's UMAS rides on function 90; seen on real plant networks.
UMAS_FUNCTION: Final = 90

OPERATION: Final[dict[int, str]] = {fc.value: fc.name.lower() for fc in FunctionCode}
OPERATION[UMAS_FUNCTION] = "schneider_umas"
ACCESS: Final[dict[int, str]] = {
    1: READ, 2: READ, 3: READ, 4: READ, 7: DIAGNOSTIC,
    5: WRITE, 6: WRITE, 15: WRITE, 16: WRITE, 22: WRITE, 23: WRITE,
    8: DIAGNOSTIC, 11: DIAGNOSTIC, 12: DIAGNOSTIC, 17: DIAGNOSTIC,
    20: FILE, 21: FILE, 24: READ, 43: DIAGNOSTIC, UMAS_FUNCTION: OTHER,
}
# Diagnostics that change the server's state rather than report on it.
CONTROL_DIAGNOSTICS: Final = frozenset(
    {DiagnosticCode.RESTART_COMMUNICATIONS_OPTION, DiagnosticCode.FORCE_LISTEN_ONLY_MODE,
     DiagnosticCode.CHANGE_ASCII_INPUT_DELIMITER,
     DiagnosticCode.CLEAR_COUNTERS_AND_DIAGNOSTIC_REGISTER,
     DiagnosticCode.CLEAR_OVERRUN_COUNTER_AND_FLAG}
)
MEI_OPERATIONS: Final[dict[int, str]] = {
    MeiType.READ_DEVICE_IDENTIFICATION: "read_device_identification",
    MeiType.CANOPEN_GENERAL_REFERENCE: "canopen_general_reference",
}
DIAGNOSTIC_NAMES: Final = {d.value: d.name.lower() for d in DiagnosticCode}
EXCEPTION_NAMES: Final = {e.value: e.name.lower() for e in ExceptionCode}
DEVICE_ID_OBJECTS: Final = {
    0: "vendor_name", 1: "product_code", 2: "major_minor_revision", 3: "vendor_url",
    4: "product_name", 5: "model_name", 6: "user_application_name",
}

_MBAP = struct.Struct("!HHHB")
_U16 = struct.Struct("!H")
_U16X2 = struct.Struct("!HH")
_U16X3 = struct.Struct("!HHH")
_U16X4 = struct.Struct("!HHHH")
_REGISTER_FORMATS: dict[int, struct.Struct] = {}


def _registers(data: bytes, start: int, count: int) -> list[int]:
    fmt = _REGISTER_FORMATS.get(count)
    if fmt is None:
        fmt = _REGISTER_FORMATS[count] = struct.Struct(f"!{count}H")
    return list(fmt.unpack_from(data, start))


def _bits(data: bytes, start: int, count: int) -> list[bool]:
    return [bool(data[start + (i >> 3)] >> (i & 7) & 1) for i in range(count)]


def _frames(data: bytes, offset: int) -> bool:
    """Could an ADU header at ``offset`` frame the rest of ``data``
    (whatever its protocol id)?"""
    if len(data) - offset < 8:
        return False
    length = (data[offset + 4] << 8) | data[offset + 5]
    return 2 <= length <= 254 and offset + 6 + length <= len(data)


class _Request:
    """What a response needs from its request (kept until paired)."""

    __slots__ = ("function", "packet", "quantity", "reference", "sub", "ts")

    def __init__(
        self, ts: float, packet: int, function: int, reference: int, quantity: int, sub: int
    ) -> None:
        self.ts = ts
        self.packet = packet
        self.function = function
        self.reference = reference
        self.quantity = quantity
        self.sub = sub


class ModbusSession:
    """Decoder of one Modbus/TCP flow."""

    __slots__ = (
        "buffer_from_initiator",
        "buffer_from_responder",
        "emit",
        "flow",
        "pending",
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
        self.pending: dict[int, _Request] = {}
        self.violations = 0
        self.unanswered = 0
        self.resync_initiator = False
        self.resync_responder = False

    # -- stream framing ------------------------------------------------------

    def feed(self, from_initiator: bool, data: bytes, ts: float, packet: int) -> None:
        if from_initiator:
            if self.buffer_from_initiator:
                data = self.buffer_from_initiator + data
                self.buffer_from_initiator = b""
            elif self.resync_initiator:
                if not probe(data, True):
                    self._unframeable(data)
                    return
                self.resync_initiator = False
        else:
            if self.buffer_from_responder:
                data = self.buffer_from_responder + data
                self.buffer_from_responder = b""
            elif self.resync_responder:
                if not probe(data, False):
                    self._unframeable(data)
                    return
                self.resync_responder = False
        size = len(data)
        offset = 0
        while size - offset >= 8:
            trans_id, prot_id, length, unit_id = _MBAP.unpack_from(data, offset)
            if prot_id != 0 or length < 2 or length > 254:
                self._framing_violation(
                    from_initiator, data, offset, trans_id, prot_id, length, unit_id, ts, packet
                )
                return
            end = offset + 6 + length
            if end > size:
                break
            if end + 4 <= size and data[end + 2] | data[end + 3] and not _frames(data, end):
                # What follows is no ADU, not even a damaged one: the MBAP
                # length is shorter than the PDU sent. The tail belongs to
                # this PDU, which the decoder flags bad_length.
                end = size
            if from_initiator:
                self._request(data, offset + 7, end, trans_id, length, unit_id, ts, packet)
            else:
                self._response(data, offset + 7, end, trans_id, length, unit_id, ts, packet)
            offset = end
        if offset < size:
            rest = data[offset:]
            if from_initiator:
                self.buffer_from_initiator = rest
            else:
                self.buffer_from_responder = rest

    def gap(self, from_initiator: bool, size: int) -> None:
        """Bytes were lost: drop the partial ADU and resynchronise on the next
        segment that starts with a plausible MBAP header."""
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
                self._malformed_event(from_initiator, rest, TRUNCATED, ts, 0)
        self.buffer_from_initiator = self.buffer_from_responder = b""
        self.unanswered += len(self.pending)
        self.pending.clear()
        return {"modbus_unanswered_requests": self.unanswered} if self.unanswered else {}

    def _unframeable(self, data: bytes) -> None:
        """A segment that does not start with an MBAP header while
        resynchronising: on a flow never confirmed as Modbus it counts
        towards disabling the analyzer."""
        flow = self.flow
        if flow.analyzer_status == CONFIRMED:
            return
        self.violations += 1
        if self.violations >= VIOLATIONS_BEFORE_DISABLE:
            flow.disable(f"not Modbus/TCP: {len(data)} bytes with no MBAP header")

    def _framing_violation(
        self,
        from_initiator: bool,
        data: bytes,
        offset: int,
        trans_id: int,
        prot_id: int,
        length: int,
        unit_id: int,
        ts: float,
        packet: int,
    ) -> None:
        reason = BAD_PROTOCOL_ID if prot_id != 0 else BAD_LENGTH
        flow = self.flow
        self.violations += 1
        flow.violation(f"{reason}: protocol id {prot_id}, length {length}")
        fields: dict[str, Any] = {
            "trans_id": trans_id, "prot_id": prot_id, "len": length, "unit_id": unit_id,
        }
        if offset + 7 < len(data):
            fields["func_code"] = data[offset + 7] & 0x7F
        self.emit(IcsEvent(
            ts, flow, from_initiator, PROTOCOL_NAME, REQUEST if from_initiator else RESPONSE,
            OTHER, "malformed", unit_id, fields, packet, reason,
        ))
        if flow.analyzer_status != CONFIRMED and self.violations >= VIOLATIONS_BEFORE_DISABLE:
            flow.disable(f"not Modbus/TCP: {reason} (protocol id {prot_id}, length {length})")
        # The rest of this segment cannot be framed; resume at the next one.
        if from_initiator:
            self.resync_initiator = True
        else:
            self.resync_responder = True

    def _malformed_event(
        self, from_initiator: bool, adu: bytes, reason: str, ts: float, packet: int
    ) -> None:
        fields: dict[str, Any] = {}
        if len(adu) >= 7:
            trans_id, prot_id, length, unit_id = _MBAP.unpack_from(adu, 0)
            fields = {"trans_id": trans_id, "prot_id": prot_id, "len": length,
                      "unit_id": unit_id}
        self.emit(IcsEvent(
            ts, self.flow, from_initiator, PROTOCOL_NAME,
            REQUEST if from_initiator else RESPONSE, OTHER, "malformed",
            fields.get("unit_id"), fields, packet, reason,
        ))

    # -- requests ------------------------------------------------------------

    def _request(
        self, data: bytes, start: int, end: int, trans_id: int, length: int, unit_id: int,
        ts: float, packet: int,
    ) -> None:
        """Decode one request PDU ``data[start:end]`` (function code at ``start``)."""
        fc = data[start]
        body = end - start - 1
        p = start + 1
        fields: dict[str, Any] = {
            "trans_id": trans_id, "len": length, "unit_id": unit_id, "func_code": fc,
        }
        malformed: str | None = None
        reference = quantity = sub = 0
        access = ACCESS.get(fc, OTHER)
        operation = OPERATION.get(fc)
        # A fixed-size request with bytes to spare is decoded (a server may
        # act on it, as Wireshark shows it) and flagged; a short one is not.
        if 1 <= fc <= 4:
            if body >= 4:
                reference, quantity = _U16X2.unpack_from(data, p)
                fields["reference_num"] = reference
                fields["bit_cnt" if fc <= 2 else "word_cnt"] = quantity
            if body != 4:
                malformed = BAD_LENGTH
        elif fc == 5 or fc == 6:
            if body >= 4:
                reference, value = _U16X2.unpack_from(data, p)
                fields["reference_num"] = reference
                fields["data"] = data[p + 2 : p + 4].hex()
                if fc == 5:
                    fields["bitval"] = [value == 0xFF00]
                else:
                    fields["regval_uint16"] = [value]
                quantity = 1
            if body != 4:
                malformed = BAD_LENGTH
        elif fc == 15 or fc == 16:
            if body >= 5:
                reference, quantity = _U16X2.unpack_from(data, p)
                byte_cnt = data[p + 4]
                fields["reference_num"] = reference
                fields["byte_cnt"] = byte_cnt
                if fc == 15:
                    fields["bit_cnt"] = quantity
                    if byte_cnt == body - 5 and byte_cnt * 8 >= quantity:
                        fields["bitval"] = _bits(data, p + 5, quantity)
                    else:
                        malformed = BAD_LENGTH
                else:
                    fields["word_cnt"] = quantity
                    if byte_cnt == body - 5 and byte_cnt == quantity * 2:
                        fields["regval_uint16"] = _registers(data, p + 5, quantity)
                    else:
                        malformed = BAD_LENGTH
            else:
                malformed = BAD_LENGTH
        elif fc == 8:
            if body >= 2:
                (sub,) = _U16.unpack_from(data, p)
                fields["diagnostic_code"] = sub
                fields["data"] = data[p + 2 : end].hex()
                name = DIAGNOSTIC_NAMES.get(sub)
                if name is not None:
                    fields["diagnostic"] = name
                if sub in CONTROL_DIAGNOSTICS:
                    access = CONTROL
            else:
                malformed = BAD_LENGTH
        elif fc in (7, 11, 12, 17):
            if body != 0:
                fields["data"] = data[p:end].hex()
                malformed = BAD_LENGTH
        elif fc == 22:
            if body >= 6:
                reference, and_mask, or_mask = _U16X3.unpack_from(data, p)
                fields["reference_num"] = reference
                fields["and_mask"] = and_mask
                fields["or_mask"] = or_mask
                quantity = 1
            if body != 6:
                malformed = BAD_LENGTH
        elif fc == 23:
            if body >= 9:
                read_ref, read_qty, write_ref, write_qty = _U16X4.unpack_from(data, p)
                byte_cnt = data[p + 8]
                fields["read_reference_num"] = read_ref
                fields["read_word_cnt"] = read_qty
                fields["write_reference_num"] = write_ref
                fields["write_word_cnt"] = write_qty
                fields["byte_cnt"] = byte_cnt
                reference, quantity = read_ref, read_qty
                if byte_cnt == body - 9 and byte_cnt == write_qty * 2:
                    fields["regval_uint16"] = _registers(data, p + 9, write_qty)
                else:
                    malformed = BAD_LENGTH
            else:
                malformed = BAD_LENGTH
        elif fc == 24:
            if body >= 2:
                (reference,) = _U16.unpack_from(data, p)
                fields["reference_num"] = reference
            if body != 2:
                malformed = BAD_LENGTH
        elif fc == 20 or fc == 21:
            malformed = self._file_record_request(fc, data, p, end, fields)
        elif fc == 43:
            if body >= 1:
                mei = sub = data[p]
                fields["mei"] = mei
                if mei == MeiType.READ_DEVICE_IDENTIFICATION:
                    operation = "read_device_identification"
                    if body >= 3:
                        fields["read_device_id"] = data[p + 1]
                        fields["object_id"] = data[p + 2]
                    if body != 3:
                        malformed = BAD_LENGTH
                elif mei == MeiType.CANOPEN_GENERAL_REFERENCE:
                    operation = "canopen_general_reference"
                    access = OTHER
                    fields["data"] = data[p + 1 : end].hex()
                else:
                    operation = "encapsulated_interface_transport"
                    access = OTHER
                    fields["data"] = data[p + 1 : end].hex()
            else:
                malformed = BAD_LENGTH
        elif fc == UMAS_FUNCTION:
            fields["data"] = data[p:end].hex()
        elif fc in USER_DEFINED_CODES:
            operation = "user_defined_function"
            fields["data"] = data[p:end].hex()
        else:
            operation = "unknown_function"
            fields["data"] = data[p:end].hex()
            malformed = UNKNOWN_FUNCTION
        if operation is None:
            operation = "unknown_function"
        if malformed is None and end - start != length - 1:
            malformed = BAD_LENGTH
        # Even a malformed request may be answered: keep it for pairing.
        pending = self.pending
        if len(pending) >= MAX_PENDING_REQUESTS:
            # The server never answers these: forget the oldest.
            del pending[next(iter(pending))]
            self.unanswered += 1
        pending[trans_id << 8 | unit_id] = _Request(ts, packet, fc, reference, quantity, sub)
        if malformed is not None:
            self.flow.violation(f"{malformed} in function {fc} request")
        self.emit(IcsEvent(
            ts, self.flow, True, PROTOCOL_NAME, REQUEST, access, operation, unit_id,
            fields, packet, malformed,
        ))

    @staticmethod
    def _file_record_request(
        fc: int, data: bytes, p: int, end: int, fields: dict[str, Any]
    ) -> str | None:
        """Functions 20 and 21: a byte count, then 7-byte sub-request headers
        (reference type 6, file number, record number, record length), each
        followed by the record data in function 21."""
        if p >= end:
            return BAD_LENGTH
        byte_cnt = data[p]
        fields["byte_cnt"] = byte_cnt
        if byte_cnt != end - p - 1:
            return BAD_LENGTH
        files: list[int] = []
        records: list[int] = []
        lengths: list[int] = []
        q = p + 1
        while q + 7 <= end:
            ref_type = data[q]
            file_number, record_number, record_length = _U16X3.unpack_from(data, q + 1)
            if ref_type != 6:
                fields["reference_type"] = ref_type
                return BAD_LENGTH
            files.append(file_number)
            records.append(record_number)
            lengths.append(record_length)
            q += 7
            if fc == 21:
                q += record_length * 2
        if q != end:
            return BAD_LENGTH
        if files:
            fields["reference_type"] = 6
        fields["file_number"] = files
        fields["record_number"] = records
        fields["record_length"] = lengths
        return None

    # -- responses -----------------------------------------------------------

    def _response(
        self, data: bytes, start: int, end: int, trans_id: int, length: int, unit_id: int,
        ts: float, packet: int,
    ) -> None:
        code = data[start]
        fc = code & 0x7F
        body = end - start - 1
        p = start + 1
        flow = self.flow
        fields: dict[str, Any] = {
            "trans_id": trans_id, "len": length, "unit_id": unit_id, "func_code": fc,
        }
        request = self.pending.pop(trans_id << 8 | unit_id, None)
        response_time: float | None = None
        request_packet = 0
        if request is not None:
            response_time = ts - request.ts
            request_packet = request.packet
            if request.function != fc:
                # Some servers (pymodbus among them) answer an unsupported
                # function with function code 0x80: keep what was asked.
                fields["request_func_code"] = request.function
                request = None
        access = ACCESS.get(fc, OTHER)
        operation = OPERATION.get(fc)
        malformed: str | None = None
        if code & 0x80:
            if body >= 1:
                exception_code = data[p]
                fields["exception_code"] = exception_code
                name = EXCEPTION_NAMES.get(exception_code)
                if name is not None:
                    fields["exception"] = name
            if body != 1:
                malformed = BAD_LENGTH
            if fc == 8 and request is not None and request.sub in CONTROL_DIAGNOSTICS:
                access = CONTROL
            elif fc == 43 and request is not None:
                operation = MEI_OPERATIONS.get(request.sub, "encapsulated_interface_transport")
            elif fc in USER_DEFINED_CODES:
                operation = "user_defined_function"
            if operation is None:
                operation = "unknown_function"
                if malformed is None:
                    malformed = UNKNOWN_FUNCTION
            if malformed is None and end - start != length - 1:
                malformed = BAD_LENGTH
            if malformed is None:
                flow.analyzer_status = CONFIRMED
            else:
                flow.violation(f"{malformed} in exception response to function {fc}")
            self.emit(IcsEvent(
                ts, flow, False, PROTOCOL_NAME, RESPONSE, access, operation, unit_id,
                fields, packet, malformed, response_time, request_packet, True,
            ))
            return
        # As for requests: a fixed-size response with bytes to spare is
        # decoded and flagged.
        if 1 <= fc <= 4:
            byte_cnt = data[p] if body >= 1 else -1
            if byte_cnt >= 0 and byte_cnt == body - 1:
                fields["byte_cnt"] = byte_cnt
                if request is not None:
                    fields["reference_num"] = request.reference
                if fc <= 2:
                    count = byte_cnt * 8
                    if request is not None and 0 < request.quantity <= count:
                        count = request.quantity
                    fields["bitval"] = _bits(data, p + 1, count)
                elif byte_cnt % 2 == 0:
                    fields["regval_uint16"] = _registers(data, p + 1, byte_cnt >> 1)
                else:
                    malformed = BAD_LENGTH
            else:
                malformed = BAD_LENGTH
        elif fc == 5 or fc == 6:
            if body >= 4:
                reference, value = _U16X2.unpack_from(data, p)
                fields["reference_num"] = reference
                fields["data"] = data[p + 2 : p + 4].hex()
                if fc == 5:
                    fields["bitval"] = [value == 0xFF00]
                else:
                    fields["regval_uint16"] = [value]
            if body != 4:
                malformed = BAD_LENGTH
        elif fc == 15 or fc == 16:
            if body >= 4:
                reference, quantity = _U16X2.unpack_from(data, p)
                fields["reference_num"] = reference
                fields["bit_cnt" if fc == 15 else "word_cnt"] = quantity
            if body != 4:
                malformed = BAD_LENGTH
        elif fc == 8:
            if body >= 2:
                (sub,) = _U16.unpack_from(data, p)
                fields["diagnostic_code"] = sub
                fields["data"] = data[p + 2 : end].hex()
                name = DIAGNOSTIC_NAMES.get(sub)
                if name is not None:
                    fields["diagnostic"] = name
                if sub in CONTROL_DIAGNOSTICS:
                    access = CONTROL
            else:
                malformed = BAD_LENGTH
        elif fc == 7:
            if body >= 1:
                fields["data"] = data[p : p + 1].hex()
            if body != 1:
                malformed = BAD_LENGTH
        elif fc == 11:
            if body >= 4:
                fields["ev_status"], fields["ev_count"] = _U16X2.unpack_from(data, p)
            if body != 4:
                malformed = BAD_LENGTH
        elif fc == 12:
            if body >= 7 and data[p] == body - 1:
                fields["byte_cnt"] = data[p]
                status, event_count, message_count = _U16X3.unpack_from(data, p + 1)
                fields["ev_status"] = status
                fields["ev_count"] = event_count
                fields["ev_msg_count"] = message_count
                fields["event"] = list(data[p + 7 : end])
            else:
                malformed = BAD_LENGTH
        elif fc == 17:
            if body >= 1 and data[p] == body - 1:
                fields["byte_cnt"] = data[p]
                fields["data"] = data[p + 1 : end].hex()
            else:
                malformed = BAD_LENGTH
        elif fc == 22:
            if body >= 6:
                reference, and_mask, or_mask = _U16X3.unpack_from(data, p)
                fields["reference_num"] = reference
                fields["and_mask"] = and_mask
                fields["or_mask"] = or_mask
            if body != 6:
                malformed = BAD_LENGTH
        elif fc == 23:
            if body >= 1 and data[p] == body - 1 and data[p] % 2 == 0:
                fields["byte_cnt"] = data[p]
                if request is not None:
                    fields["read_reference_num"] = request.reference
                fields["regval_uint16"] = _registers(data, p + 1, data[p] >> 1)
            else:
                malformed = BAD_LENGTH
        elif fc == 24:
            if body >= 4:
                byte_cnt, fifo_count = _U16X2.unpack_from(data, p)
                fields["byte_cnt_16"] = byte_cnt
                fields["fifo_count"] = fifo_count
                if byte_cnt == body - 2 and fifo_count * 2 == byte_cnt - 2:
                    fields["regval_uint16"] = _registers(data, p + 4, fifo_count)
                else:
                    malformed = BAD_LENGTH
            else:
                malformed = BAD_LENGTH
        elif fc == 20:
            if body >= 1 and data[p] == body - 1:
                fields["byte_cnt"] = data[p]
                fields["data"] = data[p + 1 : end].hex()
            else:
                malformed = BAD_LENGTH
        elif fc == 21:
            # The normal response is an echo of the request (§6.15).
            malformed = self._file_record_request(fc, data, p, end, fields)
        elif fc == 43:
            operation, access, malformed = self._mei_response(data, p, end, fields)
        elif fc == UMAS_FUNCTION:
            fields["data"] = data[p:end].hex()
        elif fc in USER_DEFINED_CODES:
            operation = "user_defined_function"
            fields["data"] = data[p:end].hex()
        else:
            operation = "unknown_function"
            fields["data"] = data[p:end].hex()
            malformed = UNKNOWN_FUNCTION
        if operation is None:
            operation = "unknown_function"
        if malformed is None and end - start != length - 1:
            malformed = BAD_LENGTH
        if malformed is None:
            flow.analyzer_status = CONFIRMED
        else:
            flow.violation(f"{malformed} in function {fc} response")
        self.emit(IcsEvent(
            ts, flow, False, PROTOCOL_NAME, RESPONSE, access, operation, unit_id,
            fields, packet, malformed, response_time, request_packet,
        ))

    @staticmethod
    def _mei_response(
        data: bytes, p: int, end: int, fields: dict[str, Any]
    ) -> tuple[str, str, str | None]:
        """Function 43: read device identification (§6.21) or CANopen."""
        if p >= end:
            return "encapsulated_interface_transport", OTHER, BAD_LENGTH
        mei = data[p]
        fields["mei"] = mei
        if mei != MeiType.READ_DEVICE_IDENTIFICATION:
            fields["data"] = data[p + 1 : end].hex()
            name = ("canopen_general_reference" if mei == MeiType.CANOPEN_GENERAL_REFERENCE
                    else "encapsulated_interface_transport")
            return name, OTHER, None
        operation = "read_device_identification"
        if end - p < 7:
            return operation, DIAGNOSTIC, BAD_LENGTH
        fields["read_device_id"] = data[p + 1]
        fields["conformity_level"] = data[p + 2]
        fields["more_follows"] = data[p + 3]
        fields["next_object_id"] = data[p + 4]
        count = data[p + 5]
        fields["num_objects"] = count
        ids: list[int] = []
        values: list[str] = []
        q = p + 6
        for _ in range(count):
            if q + 2 > end:
                return operation, DIAGNOSTIC, BAD_LENGTH
            object_id, size = data[q], data[q + 1]
            if q + 2 + size > end:
                return operation, DIAGNOSTIC, BAD_LENGTH
            ids.append(object_id)
            values.append(data[q + 2 : q + 2 + size].decode("latin-1"))
            q += 2 + size
        fields["object_id"] = ids
        fields["object_str_value"] = values
        identity = {DEVICE_ID_OBJECTS[i]: v for i, v in zip(ids, values, strict=True)
                    if i in DEVICE_ID_OBJECTS}
        if identity:
            fields["device_identification"] = identity
        return operation, DIAGNOSTIC, None if q == end else BAD_LENGTH


KNOWN_FUNCTIONS: Final = frozenset(OPERATION) | USER_DEFINED_CODES


def probe(data: bytes, from_initiator: bool) -> bool:
    """Is this segment a run of whole, well-formed MBAP ADUs? Used to find
    Modbus/TCP on ports other than 502 and to resynchronise after a gap."""
    size = len(data)
    offset = 0
    while size - offset >= 8:
        _trans_id, prot_id, length, _unit_id = _MBAP.unpack_from(data, offset)
        if prot_id != 0 or length < 2 or length > 254:
            return False
        if data[offset + 7] & 0x7F not in KNOWN_FUNCTIONS:
            return False
        offset += 6 + length
    return offset == size and size > 0


# Every field a Modbus event may carry, with its kind, for rule validation.
FIELDS: Final = (
    ("trans_id", "int"), ("prot_id", "int"), ("len", "int"), ("unit_id", "int"),
    ("func_code", "int"), ("reference_num", "int"), ("word_cnt", "int"), ("bit_cnt", "int"),
    ("byte_cnt", "int"), ("byte_cnt_16", "int"), ("regval_uint16", "list[int]"),
    ("bitval", "list[bool]"), ("data", "str"), ("exception_code", "int"), ("exception", "str"),
    ("diagnostic_code", "int"), ("diagnostic", "str"), ("and_mask", "int"), ("or_mask", "int"),
    ("read_reference_num", "int"), ("read_word_cnt", "int"), ("write_reference_num", "int"),
    ("write_word_cnt", "int"), ("fifo_count", "int"), ("ev_status", "int"), ("ev_count", "int"),
    ("ev_msg_count", "int"), ("event", "list[int]"), ("reference_type", "int"),
    ("file_number", "list[int]"), ("record_number", "list[int]"),
    ("record_length", "list[int]"), ("mei", "int"), ("read_device_id", "int"),
    ("object_id", "list[int]"), ("conformity_level", "int"), ("more_follows", "int"),
    ("next_object_id", "int"), ("num_objects", "int"), ("object_str_value", "list[str]"),
    ("device_identification", "map"), ("request_func_code", "int"),
)


def address_range(event: IcsEvent) -> tuple[int, int] | None:
    """The first and last coil/register address a request or response
    touches, for rules on address ranges (``overlaps: [100, 200]``)."""
    fields = event.fields
    start = fields.get("reference_num")
    if start is None:
        start = fields.get("write_reference_num", fields.get("read_reference_num"))
        if start is None:
            return None
        count = fields.get("write_word_cnt", fields.get("read_word_cnt", 1))
    else:
        count = fields.get("word_cnt") or fields.get("bit_cnt") or 1
    return (start, start + max(count, 1) - 1)


def requested_function(event: IcsEvent) -> int | None:
    """The function code the client asked for, even when the server's
    exception response carries another (``request_func_code``)."""
    fields = event.fields
    code: int | None = fields.get("request_func_code", fields.get("func_code"))
    return code


PROTOCOL: Final = ProtocolSpec(
    name=PROTOCOL_NAME,
    transport="tcp",
    ports=(502,),
    probe=probe,
    session=ModbusSession,
    operations=tuple(sorted(set(OPERATION.values()) | {
        "read_device_identification", "canopen_general_reference",
        "encapsulated_interface_transport", "user_defined_function", "unknown_function",
        "malformed",
    })),
    fields=FIELDS,
    derived={
        "address_range": ("range", address_range),
        "requested_function": ("int", requested_function),
    },
)
