"""IEC 60870-5-104 on a live flow: APDUs split across segments and packed
into one, every kind of damage as one event with a `malformed` reason, the
good APDUs after it still decoded, and the sequence numbers followed."""

from __future__ import annotations

import random
import struct
from pathlib import Path
from typing import Any

import pytest
from builders import TcpConversation, replay_packets

from sensor.event import MALFORMED_REASONS, IcsEvent
from sensor.protocols.iec104 import probe
from sensor.protocols.iec104_types import LAYOUTS, TYPE_NAMES, TypeId

STARTDT_ACT = bytes.fromhex("680407000000")
STARTDT_CON = bytes.fromhex("68040b000000")
TESTFR_ACT = bytes.fromhex("680443000000")
TESTFR_CON = bytes.fromhex("680483000000")
CP56 = bytes((0xE8, 0x03, 30, 9, 0xB1, 5, 24))  # 2024-05-17 09:30:01.000, Friday


def s_frame(nr: int) -> bytes:
    return bytes((0x68, 4, 1, 0)) + struct.pack("<H", nr << 1)


def i_frame(ns: int, nr: int, asdu: bytes) -> bytes:
    return bytes((0x68, len(asdu) + 4)) + struct.pack("<HH", ns << 1, nr << 1) + asdu


def asdu(type_id: int, cause: int, ioa: int, element: bytes, *, vsq: int = 1,
         ca: int = 7, oa: int = 3) -> bytes:
    return bytes((type_id, vsq, cause, oa)) + struct.pack("<H", ca) + ioa.to_bytes(3, "little") \
        + element


def single_command(ns: int, nr: int, cause: int = 6, sco: int = 0x81, ioa: int = 1000) -> bytes:
    return i_frame(ns, nr, asdu(45, cause, ioa, bytes((sco,))))


def _rows(events: list[IcsEvent]) -> list[tuple[Any, ...]]:
    return [(e.packet, e.direction, e.operation, e.malformed) for e in events]


def _started(server_port: int = 2404) -> TcpConversation:
    """Handshake (1-3) and STARTDT act/con (4, 5)."""
    conversation = TcpConversation(server_port=server_port)
    conversation.handshake()
    conversation.request(STARTDT_ACT)
    conversation.reply(STARTDT_CON)
    return conversation


def test_several_apdus_in_one_segment_and_one_split_across_three(tmp_path: Path) -> None:
    conversation = _started()
    command = single_command(0, 0)
    conversation.request(command[:1])
    conversation.request(command[1:5])
    conversation.request(command[5:])
    reply = single_command(0, 1, cause=7) + single_command(1, 1, cause=10)
    conversation.reply(s_frame(1) + reply)
    events, stats = replay_packets(tmp_path, conversation.packets)
    assert _rows(events) == [
        (4, "request", "STARTDT_ACT", None),
        (5, "response", "STARTDT_CON", None),
        (8, "request", "C_SC_NA_1", None),
        (9, "response", "S_FRAME", None),
        (9, "response", "C_SC_NA_1", None),
        (9, "response", "C_SC_NA_1", None),
    ]
    command_event = events[2]
    assert command_event.unit == 7
    assert command_event.access == "control"
    assert command_event.fields["oa"] == 3
    assert command_event.fields["ioa"] == [1000]
    assert command_event.fields["sco.se"] == [True]  # select
    assert command_event.fields["sco.on"] == [True]
    assert events[4].request_packet == 8  # ActCon paired with its activation
    assert events[5].request_packet == 8  # so is ActTerm
    assert events[1].request_packet == 4  # STARTDT con with STARTDT act
    assert stats.malformed == 0


@pytest.mark.parametrize("cut", range(1, 16))
def test_an_apdu_cut_anywhere_decodes_once(tmp_path: Path, cut: int) -> None:
    conversation = _started()
    frame = single_command(0, 0, sco=0x01)
    conversation.request(frame[:cut])
    conversation.request(frame[cut:] + TESTFR_ACT)
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2:] == [(7, "request", "C_SC_NA_1", None),
                                 (7, "request", "TESTFR_ACT", None)]


def test_junk_before_an_apdu(tmp_path: Path) -> None:
    conversation = _started()
    conversation.request(b"\x00\x11\x22" + TESTFR_ACT)
    conversation.request(b"\x01\x02\x03\x04\x05\x06\x07")  # no 0x68 at all
    conversation.request(TESTFR_ACT)
    events, stats = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2:] == [
        (6, "request", "TESTFR_ACT", "bad_protocol_id"),
        (7, "request", "malformed", "bad_protocol_id"),
        (8, "request", "TESTFR_ACT", None),
    ]
    assert events[2].fields["data"] == "001122"
    assert events[3].fields["data"] == "01020304050607"
    assert stats.malformed == 2


def test_apdu_length_below_four(tmp_path: Path) -> None:
    """Six octets frame "68 02 01 00 68 04": the first PDU, four octets, is
    shorter than that, so the rest of the segment is dropped (as Wireshark
    does); "00 00 68 02 .." frames a six-octet PDU and decoding goes on."""
    conversation = _started()
    conversation.request(bytes.fromhex("68020100") + TESTFR_ACT)
    conversation.request(bytes.fromhex("0000680201") + TESTFR_ACT[:1] + TESTFR_ACT)
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2:] == [
        (6, "request", "malformed", "bad_length"),
        (7, "request", "malformed", "bad_length"),
        (7, "request", "TESTFR_ACT", None),
    ]
    assert events[2].fields["apdulen"] == 2
    assert events[3].fields == {"data": "0000", "apdulen": 2}


def test_apdu_length_above_253_still_decodes(tmp_path: Path) -> None:
    conversation = _started()
    frame = i_frame(0, 0, asdu(100, 6, 0, b"\x14") + bytes(241))
    conversation.request(bytes((0x68, 0xFF)) + frame[2:])
    conversation.request(i_frame(1, 0, asdu(100, 6, 0, b"\x14")))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2:] == [(6, "request", "C_IC_NA_1", "bad_length"),
                                 (7, "request", "C_IC_NA_1", None)]
    assert events[2].fields["apdulen"] == 255
    assert events[2].fields["qoi"] == [20]
    assert "seq_error" not in events[3].fields


def test_u_and_s_frames_that_break_the_rules(tmp_path: Path) -> None:
    conversation = _started()
    conversation.request(bytes.fromhex("68040f000000"))  # STARTDT act and con at once
    conversation.request(bytes.fromhex("680543000000ff"))  # TESTFR act, length 5
    conversation.request(bytes.fromhex("680443000100"))  # TESTFR act, octet 3 not zero
    conversation.reply(bytes.fromhex("68050100020000"))  # S frame, length 5
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2:] == [
        (6, "request", "malformed", "unknown_function"),
        (7, "request", "TESTFR_ACT", "bad_length"),
        (8, "request", "TESTFR_ACT", "bad_value"),
        (9, "response", "S_FRAME", "bad_length"),
    ]
    assert events[2].fields["utype"] == 3


def test_unknown_type_then_good_frames(tmp_path: Path) -> None:
    conversation = _started()
    conversation.request(i_frame(0, 0, asdu(200, 6, 5, b"\xaa\xbb")))
    conversation.request(single_command(1, 0))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2:] == [(6, "request", "unknown_type", "unknown_function"),
                                 (7, "request", "C_SC_NA_1", None)]
    assert events[2].fields["typeid"] == 200
    assert events[2].fields["ioa"] == [5]
    assert events[2].fields["rawdata"] == "aabb"


def test_object_count_and_length_disagree(tmp_path: Path) -> None:
    conversation = _started()
    one_float = b"\x00\x00\x80\x3f\x00"  # 1.0, QOS 0
    # VSQ says 3 objects, one is sent; then one object and two octets too many.
    conversation.request(i_frame(0, 0, asdu(50, 6, 1050, one_float, vsq=3)))
    conversation.request(i_frame(1, 0, asdu(50, 6, 1050, one_float + b"\x01\x02")))
    # A sequence (SQ=1) of 3 floats with the last cut short.
    values = struct.pack("<fBfBf", 1.5, 0, 2.5, 0x80, 3.5)
    conversation.reply(i_frame(0, 2, asdu(13, 3, 200, values, vsq=0x83)))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2:] == [
        (6, "request", "C_SE_NC_1", "bad_length"),
        (7, "request", "C_SE_NC_1", "bad_length"),
        (8, "response", "M_ME_NC_1", "bad_length"),
    ]
    assert events[2].fields["float"] == [1.0]
    assert events[2].fields["numix"] == 3
    assert events[4].fields["ioa"] == [200, 201, 202]  # as Wireshark: the partial one too
    assert events[4].fields["float"] == [1.5, 2.5]
    assert events[4].fields["qds"] == [0, 0x80]


def test_asdu_shorter_than_its_header(tmp_path: Path) -> None:
    conversation = _started()
    conversation.request(i_frame(0, 0, bytes((45, 1, 6))))
    conversation.request(i_frame(1, 0, b""))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2:] == [(6, "request", "C_SC_NA_1", "bad_length"),
                                 (7, "request", "malformed", "bad_length")]
    assert events[2].fields["causetx"] == 6
    assert "addr" not in events[2].fields


def test_cause_zero(tmp_path: Path) -> None:
    conversation = _started()
    conversation.request(i_frame(0, 0, asdu(100, 0, 0, b"\x14")))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2:] == [(6, "request", "C_IC_NA_1", "bad_value")]


def test_sequence_numbers_repeated_skipped_and_acknowledged_ahead(tmp_path: Path) -> None:
    conversation = _started()
    conversation.request(single_command(0, 0))
    conversation.request(single_command(0, 0))  # replayed
    conversation.request(single_command(5, 0))  # four frames never seen
    conversation.reply(single_command(0, 6, cause=7))  # acknowledges N(S) up to 5
    conversation.reply(s_frame(9))  # the client's last N(S) was 5, not 8
    events, _ = replay_packets(tmp_path, conversation.packets)
    errors = [(e.fields.get("seq_error"), e.fields.get("tx_expected"), e.fields.get("rx_max"))
              for e in events[2:]]
    assert errors == [(None, None, None), ("ns_repeat", 1, None), ("ns_skip", 1, None),
                      (None, None, None), ("nr_ahead", None, 6)]
    assert all(e.malformed is None for e in events)


def test_first_i_frame_of_a_connection_starts_at_zero(tmp_path: Path) -> None:
    conversation = _started()
    conversation.request(single_command(3, 0))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert events[2].fields["seq_error"] == "ns_skip"
    assert events[2].fields["tx_expected"] == 0


def test_gap_resynchronises_and_forgets_the_sequence(tmp_path: Path) -> None:
    conversation = _started()
    conversation.request(single_command(0, 0))
    lost = single_command(1, 0)
    conversation.request(lost, record=False)  # never captured, but acknowledged:
    conversation.reply(TESTFR_CON)  # the server's ACK covers it
    conversation.request(lost[5:])  # the tail of a frame: skipped
    conversation.request(single_command(9, 0))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2:] == [
        (6, "request", "C_SC_NA_1", None),
        (7, "response", "TESTFR_CON", None),
        (9, "request", "C_SC_NA_1", None),
    ]
    assert "seq_error" not in events[-1].fields  # N(S) 9 after a gap: nothing to compare


def test_truncated_apdu_at_end_of_flow(tmp_path: Path) -> None:
    conversation = _started()
    conversation.request(single_command(0, 0)[:9])
    conversation.fin()
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2:] == [(0, "request", "malformed", "truncated")]
    assert events[2].fields["apdulen"] == 14


def test_not_iec104_on_port_2404_is_disabled(tmp_path: Path) -> None:
    conversation = TcpConversation(server_port=2404)
    conversation.handshake()
    for _ in range(5):
        conversation.request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert len(events) == 3  # three violations, then the flow is left alone
    assert events[0].flow.analyzer_status == "disabled"


def test_iec104_found_on_another_port(tmp_path: Path) -> None:
    conversation = _started(server_port=2405)
    conversation.request(i_frame(0, 0, asdu(100, 6, 0, b"\x14")))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert [e.operation for e in events] == ["STARTDT_ACT", "STARTDT_CON", "C_IC_NA_1"]
    assert not probe(b"GET / HTTP/1.1\r\n", True)
    assert not probe(bytes.fromhex("680443000000680402"), True)


def _element(type_id: int) -> bytes:
    """A plausible information element of ``type_id`` (all zero but times)."""
    layout = LAYOUTS[type_id]
    element = bytearray(layout.size)
    if type_id in (103, 107, 126, 127) or 30 <= type_id <= 40 or 58 <= type_id <= 64:
        element[-7:] = CP56
    if type_id == 127:
        element[2:9] = CP56
    return bytes(element)


@pytest.mark.parametrize("type_id", sorted(LAYOUTS), ids=lambda t: TYPE_NAMES[t])
def test_every_type_decodes_single_objects_and_sequences(tmp_path: Path, type_id: int) -> None:
    element = _element(type_id)
    conversation = _started()
    conversation.request(i_frame(0, 0, asdu(type_id, 6, 300, element)))
    two = (301).to_bytes(3, "little") + element + (302).to_bytes(3, "little") + element
    conversation.reply(i_frame(0, 1, bytes((type_id, 2, 3, 0, 7, 0)) + two))
    conversation.reply(i_frame(1, 1, asdu(type_id, 3, 400, element * 3, vsq=0x83)))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert [(e.operation, e.malformed) for e in events[2:]] == [(TYPE_NAMES[type_id], None)] * 3
    assert events[2].fields["ioa"] == [300]
    assert events[3].fields["ioa"] == [301, 302]
    assert events[4].fields["ioa"] == [400, 401, 402]
    if "cp56time" in events[3].fields:
        times = 4 if type_id == 127 else 2
        assert events[3].fields["cp56time"] == ["2024-05-17T09:30:01.000"] * times
        assert events[3].fields["cp56time.dow"] == [5] * times


def test_element_values(tmp_path: Path) -> None:
    conversation = _started()
    measured = (struct.pack("<hB", -16384, 0x81) + b"\x10\x27\x85")  # NVA, QDS, CP24
    conversation.reply(i_frame(0, 0, asdu(10, 3, 1, measured)))
    conversation.reply(i_frame(1, 0, asdu(7, 3, 2, struct.pack("<IB", 0x12345678, 0))))
    conversation.reply(i_frame(2, 0, asdu(5, 3, 3, bytes((0xC1, 0)))))  # VTI -63, transient
    conversation.reply(i_frame(3, 0, asdu(15, 37, 4, struct.pack("<iB", -5, 0xE3))))
    conversation.request(i_frame(0, 4, asdu(47, 6, 5, bytes((0x8A,)))))  # RCO up, QU 2
    conversation.request(i_frame(1, 4, asdu(101, 6, 0, bytes((0x45,)))))  # QCC 5, FRZ 1
    conversation.request(i_frame(2, 4, asdu(105, 6, 0, b"\x02")))  # QRP 2
    conversation.request(i_frame(3, 4, asdu(122, 13, 9, b"\x01\x00\x02\x01")))  # F_SC
    events, _ = replay_packets(tmp_path, conversation.packets)
    fields = [e.fields for e in events[2:]]
    assert fields[0]["normval"] == [-0.5]
    assert fields[0]["qds"] == [0x81]
    assert fields[0]["cp24time"] == [10 + 5 * 60]
    assert fields[0]["cp24time.iv"] == [True]
    assert fields[1]["bitstring"] == [0x12345678]
    assert (fields[2]["vti.v"], fields[2]["vti.t"]) == ([-63], [True])
    assert fields[3]["bcr.count"] == [-5]
    assert (fields[3]["bcr.sq"], fields[3]["bcr.cy"], fields[3]["bcr.iv"]) == ([3], [True], [True])
    assert (fields[4]["rco.up"], fields[4]["rco.qu"], fields[4]["rco.se"]) == ([2], [2], [True])
    assert (fields[5]["rqt"], fields[5]["frz"]) == ([5], [1])
    assert fields[6]["qrp"] == [2]
    assert events[9].access == "file"
    assert (fields[7]["nof"], fields[7]["nos"], fields[7]["scq"]) == ([1], [2], [1])
    assert fields[7]["rawdata"] == "01000201"


def test_random_bytes_never_raise(tmp_path: Path) -> None:
    rng = random.Random(104)
    conversation = _started()
    for _ in range(200):
        chunk = bytearray(rng.randbytes(rng.randrange(1, 40)))
        if rng.random() < 0.5:
            chunk[0] = 0x68
            if len(chunk) > 1:
                chunk[1] = rng.choice((len(chunk) - 2, rng.randrange(256)))
            if len(chunk) > 6:
                chunk[6] = rng.choice(sorted(TYPE_NAMES))
        conversation.request(bytes(chunk))
    events, stats = replay_packets(tmp_path, conversation.packets)
    assert events
    assert {e.malformed for e in events} - {None} <= MALFORMED_REASONS
    assert stats.malformed == sum(1 for e in events if e.malformed)


def test_reset_process_and_negative_confirmation(tmp_path: Path) -> None:
    conversation = _started()
    conversation.request(i_frame(0, 0, asdu(int(TypeId.C_RP_NA_1), 6, 0, b"\x01")))
    conversation.reply(i_frame(0, 1, asdu(int(TypeId.C_RP_NA_1), 0x47, 0, b"\x01")))
    conversation.reply(i_frame(1, 1, asdu(int(TypeId.C_RP_NA_1), 47, 0, b"\x01")))
    events, _ = replay_packets(tmp_path, conversation.packets)
    request, negative, unknown = events[2:]
    assert (request.access, request.fields["qrp"]) == ("control", [1])
    assert negative.exception and negative.fields["nega"] and negative.request_packet == 6
    assert unknown.exception and unknown.request_packet == 0  # answered already
