"""S7comm over ISO-on-TCP built byte by byte: TPKT frames split across and
packed into segments, COTP data units joined at the EOT bit, userdata
fragments joined by data unit reference, and broken input — each bad PDU one
event with a `malformed` reason, the PDUs after it still decoded."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from builders import TcpConversation, replay_packets

from sensor.event import MALFORMED_REASONS, IcsEvent

PORT = 102


def tpkt(cotp: bytes, version: int = 3, length: int | None = None) -> bytes:
    return struct.pack("!BBH", version, 0, len(cotp) + 4 if length is None else length) + cotp


def dt(payload: bytes, eot: bool = True) -> bytes:
    return tpkt(bytes([2, 0xF0, 0x80 if eot else 0x00]) + payload)


def cr(dst_tsap: bytes = b"\x01\x02", src_tsap: bytes = b"\x01\x00") -> bytes:
    params = b"\xc0\x01\x0a" + b"\xc1" + bytes([len(src_tsap)]) + src_tsap + b"\xc2" \
        + bytes([len(dst_tsap)]) + dst_tsap
    return tpkt(bytes([6 + len(params), 0xE0, 0, 0, 0, 1, 0]) + params)


def s7(rosctr: int, ref: int, params: bytes, data: bytes = b"", error: int | None = None,
       parlg: int | None = None) -> bytes:
    header = struct.pack("!BBHHHH", 0x32, rosctr, 0, ref,
                         len(params) if parlg is None else parlg, len(data))
    if error is not None:
        header += struct.pack("!H", error)
    return header + params + data


def read_db(ref: int, db: int, start: int, length: int) -> bytes:
    item = struct.pack("!BBBBHHB", 0x12, 10, 0x10, 2, length, db, 0x84) + \
        (start * 8).to_bytes(3, "big")
    return s7(1, ref, b"\x04\x01" + item)


def read_reply(ref: int, value: bytes) -> bytes:
    return s7(3, ref, b"\x04\x01", b"\xff\x04" + struct.pack("!H", len(value) * 8) + value, 0)


def _conversation() -> TcpConversation:
    conversation = TcpConversation(server_port=PORT)
    conversation.handshake()
    conversation.request(cr())
    return conversation


def _rows(events: list[IcsEvent]) -> list[tuple[object, ...]]:
    return [(e.packet, e.direction, e.operation, e.malformed) for e in events]


def test_rack_and_slot_from_the_called_tsap(tmp_path: Path) -> None:
    events, _ = replay_packets(tmp_path, _conversation().packets)
    assert _rows(events) == [(4, "request", "cotp_connection_request", None)]
    fields = events[0].fields
    assert (fields["rack"], fields["slot"], fields["connection_type"]) == (0, 2, "pg")
    assert fields["cotp.dst-tsap"] == "0x0102"


def test_tpkts_split_and_packed_across_segments(tmp_path: Path) -> None:
    conversation = _conversation()
    first, second = dt(read_db(1, 1, 0, 4)), dt(read_db(2, 1, 4, 2))
    conversation.request(first[:3])  # not even a whole TPKT header
    conversation.request(first[3:10])
    conversation.request(first[10:] + second)  # the rest and a whole second TPKT
    conversation.reply(dt(read_reply(1, b"\x01\x02\x03\x04")) + dt(read_reply(2, b"\xaa\xbb")))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[1:] == [
        (7, "request", "read_var", None), (7, "request", "read_var", None),
        (8, "response", "read_var", None), (8, "response", "read_var", None),
    ]
    assert events[2].fields["param.item.address.byte"] == [4]
    assert events[3].fields["resp.data"] == ["01020304"]
    assert events[4].request_packet == 7 and events[4].fields["data.length"] == [2]


def test_cotp_data_units_join_at_eot(tmp_path: Path) -> None:
    """An S7 PDU split over three DT TPDUs is one event, at the frame with EOT."""
    conversation = _conversation()
    pdu = read_db(7, 1, 0, 8)
    conversation.request(dt(pdu[:5], eot=False))
    conversation.request(dt(pdu[5:12], eot=False) + dt(b"", eot=False))
    conversation.request(dt(pdu[12:]))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[1:] == [(7, "request", "read_var", None)]
    assert events[1].fields["param.item.db"] == [1]
    assert events[1].fields["item"] == ["DB1.DBX 0.0 BYTE 8"]


def test_userdata_fragments_join_by_data_unit_reference(tmp_path: Path) -> None:
    """An SZL answer in two PDUs (data unit 7, "last data unit: no" then
    "yes"): the identity comes from the joined records."""
    records = b"".join(struct.pack("!H", i) + text.ljust(32, b"\0")
                       for i, text in ((1, b"S7-300 station"), (2, b"PLC_9"),
                                       (5, b"S C-X1234")))
    body = struct.pack("!HHHH", 0x001C, 0, 34, 3) + records
    param = bytes.fromhex("000112") + bytes([8, 0x12, 0x84, 0x01, 2])
    conversation = _conversation()
    conversation.request(dt(s7(7, 1, bytes.fromhex("0001120411440100"),
                               bytes.fromhex("ff090004001c0000"))))
    half = 40
    conversation.reply(dt(s7(7, 1, param + b"\x07\x01\x00\x00",
                             b"\xff\x09" + struct.pack("!H", half) + body[:half])))
    conversation.reply(dt(s7(7, 1, param + b"\x07\x00\x00\x00",
                             b"\xff\x09" + struct.pack("!H", len(body) - half) + body[half:])))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert [e.operation for e in events[1:]] == ["read_szl"] * 3
    assert "identity" not in events[2].fields
    assert events[3].fields["identity"] == {
        "as_name": "S7-300 station", "module_name": "PLC_9", "serial_number": "S C-X1234"}


def test_error_ack_pairs_with_its_job(tmp_path: Path) -> None:
    conversation = _conversation()
    conversation.request(dt(s7(1, 9, b"\x29\x00\x00\x00\x00\x00\x09P_PROGRAM")))
    conversation.reply(dt(s7(2, 9, b"", error=0xD241)))
    events, _ = replay_packets(tmp_path, conversation.packets)
    stop, ack = events[1], events[2]
    assert (stop.operation, stop.access) == ("plc_stop", "control")
    assert (ack.operation, ack.access, ack.exception) == ("plc_stop", "control", True)
    assert ack.fields["param.errcod"] == 0xD241 and ack.request_packet == stop.packet


BAD_PDUS = [
    pytest.param(dt(s7(1, 3, b"\x04\x01", parlg=9)), "bad_length", "read_var",
                 id="parameter-length-beyond-pdu"),
    pytest.param(dt(s7(1, 3, b"\x33\x00")), "unknown_function", "unknown_function",
                 id="unknown-function"),
    pytest.param(dt(s7(9, 3, b"")), "unknown_function", "unknown_function",
                 id="unknown-rosctr"),
    pytest.param(dt(b"\x32\x01\x00"), "truncated", "malformed", id="short-s7-header"),
    pytest.param(dt(s7(1, 3, b"\x28" + bytes(6) + b"\xfd\x00\x40\x00")), "truncated",
                 "plc_control", id="pi-parameter-block-past-pdu"),
    pytest.param(dt(s7(7, 3, bytes.fromhex("0001120411e90100"))), "unknown_function",
                 "unknown_function", id="unknown-userdata-group"),
    pytest.param(dt(b"\x99\x01"), "bad_protocol_id", "malformed", id="not-s7-protocol-id"),
    pytest.param(tpkt(bytes([9, 0xF0, 0x80])), "bad_length", "malformed",
                 id="cotp-li-beyond-tpkt"),
]


@pytest.mark.parametrize(("frame", "reason", "operation"), BAD_PDUS)
def test_bad_pdu_is_one_event_and_the_next_decodes(
        tmp_path: Path, frame: bytes, reason: str, operation: str) -> None:
    conversation = _conversation()
    conversation.reply(cr())  # stands in for the confirm: confirms the flow
    conversation.request(dt(read_db(1, 1, 0, 2)))
    conversation.reply(dt(read_reply(1, b"\x00\x01")))
    conversation.request(frame)
    conversation.request(dt(read_db(2, 1, 2, 2)))
    conversation.reply(dt(read_reply(2, b"\x02\x03")))
    events, stats = replay_packets(tmp_path, conversation.packets)
    bad = [e for e in events if e.malformed]
    assert [(e.malformed, e.operation) for e in bad] == [(reason, operation)]
    assert bad[0].malformed in MALFORMED_REASONS
    assert bad[0].fields["malformed_detail"]
    assert _rows(events)[-2:] == [(9, "request", "read_var", None),
                                  (10, "response", "read_var", None)]
    assert stats.malformed == 1


def test_tpkt_version_violation_resynchronises(tmp_path: Path) -> None:
    conversation = _conversation()
    conversation.reply(cr())
    conversation.request(dt(read_db(1, 1, 0, 2)))
    conversation.request(tpkt(bytes([2, 0xF0, 0x80]) + b"\x32", version=2) + b"junk")
    conversation.request(dt(read_db(2, 1, 2, 2)))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert [(e.operation, e.malformed) for e in events[2:]] == [
        ("read_var", None), ("malformed", "bad_protocol_id"), ("read_var", None)]
    assert events[3].fields["tpkt.version"] == 2


def test_not_s7_on_port_102_is_disabled(tmp_path: Path) -> None:
    """ISO-on-TCP that is not S7 (IEC 61850 MMS: TSAP 0x0001, ISO session
    data) on a flow never confirmed: no event, not even for its COTP
    connection, and after three violations the analyzer lets the flow go."""
    conversation = TcpConversation(server_port=PORT)
    conversation.handshake()
    conversation.request(cr(b"\x00\x01", b"\x00\x01"))
    for _ in range(5):
        conversation.request(dt(b"\x0d\x00\x01\x00\x61\x20"))
    events, stats = replay_packets(tmp_path, conversation.packets)
    assert events == []
    assert stats.malformed == 0


def test_truncated_pdu_at_close(tmp_path: Path) -> None:
    conversation = _conversation()
    conversation.request(dt(read_db(1, 1, 0, 2))[:12])
    conversation.fin()
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert events[-1].malformed == "truncated"
