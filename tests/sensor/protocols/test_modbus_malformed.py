"""Malformed Modbus/TCP on a live flow: each bad PDU is one event with a
`malformed` reason, and the valid PDUs after it on the same flow still decode."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from builders import (
    TcpConversation,
    adu,
    read_holding,
    read_holding_reply,
    replay_packets,
    write_register,
    write_registers,
    write_registers_reply,
)

from sensor.event import MALFORMED_REASONS


def _rows(events: list) -> list[tuple]:
    return [
        (e.packet, e.direction, e.operation, e.fields.get("trans_id"), e.malformed)
        for e in events
    ]


def _conversation() -> TcpConversation:
    """Handshake (1-3) and one good exchange (4, 5) that confirms the flow."""
    conversation = TcpConversation()
    conversation.handshake()
    conversation.request(read_holding(1, 100, 2))
    conversation.reply(read_holding_reply(1, [1, 2]))
    return conversation


def test_bad_protocol_id(tmp_path: Path) -> None:
    conversation = _conversation()
    conversation.request(adu(2, struct.pack("!BHH", 3, 5, 1), prot_id=1))
    conversation.request(read_holding(3, 200, 1))
    conversation.reply(read_holding_reply(3, [42]))
    events, stats = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2:] == [
        (6, "request", "malformed", 2, "bad_protocol_id"),
        (7, "request", "read_holding_registers", 3, None),
        (8, "response", "read_holding_registers", 3, None),
    ]
    assert events[2].fields["prot_id"] == 1
    assert events[4].fields["regval_uint16"] == [42]
    assert events[4].fields["reference_num"] == 200
    assert stats.malformed == 1
    assert events[0].flow.analyzer_status == "confirmed"


def test_bad_protocol_id_before_the_flow_is_confirmed(tmp_path: Path) -> None:
    conversation = TcpConversation()
    conversation.handshake()
    conversation.request(adu(1, struct.pack("!BHH", 3, 5, 1), prot_id=0x0101))
    conversation.request(read_holding(2, 200, 1))
    conversation.reply(read_holding_reply(2, [42]))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events) == [
        (4, "request", "malformed", 1, "bad_protocol_id"),
        (5, "request", "read_holding_registers", 2, None),
        (6, "response", "read_holding_registers", 2, None),
    ]
    assert events[0].flow.analyzer_status == "confirmed"


@pytest.mark.parametrize("length", [0, 1, 255, 0xFFFF])
def test_mbap_length_outside_2_to_254(tmp_path: Path, length: int) -> None:
    conversation = _conversation()
    conversation.request(adu(2, struct.pack("!BHH", 3, 5, 1), length=length))
    conversation.request(write_register(3, 9, 1))
    conversation.reply(write_register(3, 9, 1))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2:] == [
        (6, "request", "malformed", 2, "bad_length"),
        (7, "request", "write_single_register", 3, None),
        (8, "response", "write_single_register", 3, None),
    ]
    assert events[2].fields["len"] == length


def test_pdu_longer_than_its_function_allows(tmp_path: Path) -> None:
    """The MBAP length covers the bytes sent, but a read request has two bytes
    too many, and its response a byte count that disagrees with the length."""
    conversation = _conversation()
    conversation.request(adu(2, struct.pack("!BHHH", 3, 5, 1, 0)))
    conversation.reply(adu(2, struct.pack("!BBH", 3, 4, 7)))
    conversation.request(read_holding(3, 6, 1))
    conversation.reply(read_holding_reply(3, [77]))
    events, stats = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2:] == [
        (6, "request", "read_holding_registers", 2, "bad_length"),
        (7, "response", "read_holding_registers", 2, "bad_length"),
        (8, "request", "read_holding_registers", 3, None),
        (9, "response", "read_holding_registers", 3, None),
    ]
    assert events[5].fields["regval_uint16"] == [77]
    assert stats.malformed == 2


def test_write_multiple_byte_count_disagrees_with_quantity(tmp_path: Path) -> None:
    conversation = _conversation()
    pdu = struct.pack("!BHHBHHH", 16, 10, 2, 6, 1, 2, 3)  # 2 registers, 3 sent
    conversation.request(adu(2, pdu))
    conversation.reply(write_registers_reply(2, 10, 2))
    conversation.request(write_registers(3, 10, [4, 5]))
    conversation.reply(write_registers_reply(3, 10, 2))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2:] == [
        (6, "request", "write_multiple_registers", 2, "bad_length"),
        (7, "response", "write_multiple_registers", 2, None),
        (8, "request", "write_multiple_registers", 3, None),
        (9, "response", "write_multiple_registers", 3, None),
    ]
    assert events[2].fields["word_cnt"] == 2
    assert events[2].fields["byte_cnt"] == 6
    assert events[4].fields["regval_uint16"] == [4, 5]


def test_mbap_length_shorter_than_the_pdu_sent(tmp_path: Path) -> None:
    conversation = _conversation()
    good = write_registers(2, 10, [1, 2])
    conversation.request(good[:4] + struct.pack("!H", 7) + good[6:])  # length says 7, not 11
    conversation.reply(write_registers_reply(2, 10, 2))
    conversation.request(read_holding(3, 100, 2))
    conversation.reply(read_holding_reply(3, [3, 4]))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2:] == [
        (6, "request", "write_multiple_registers", 2, "bad_length"),
        (7, "response", "write_multiple_registers", 2, None),
        (8, "request", "read_holding_registers", 3, None),
        (9, "response", "read_holding_registers", 3, None),
    ]


def test_unknown_function_code(tmp_path: Path) -> None:
    conversation = _conversation()
    conversation.request(adu(2, struct.pack("!BHH", 0x30, 5, 1)))
    conversation.reply(adu(2, bytes([0x30 | 0x80, 1])))  # exception: illegal function
    conversation.request(write_register(3, 9, 1))
    conversation.reply(write_register(3, 9, 1))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2:] == [
        (6, "request", "unknown_function", 2, "unknown_function"),
        (7, "response", "unknown_function", 2, "unknown_function"),
        (8, "request", "write_single_register", 3, None),
        (9, "response", "write_single_register", 3, None),
    ]
    assert events[2].fields["func_code"] == 0x30
    assert events[3].fields["exception_code"] == 1
    assert events[3].exception


def test_user_defined_function_is_not_malformed(tmp_path: Path) -> None:
    conversation = _conversation()
    conversation.request(adu(2, bytes([65, 1, 2, 3])))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2] == (6, "request", "user_defined_function", 2, None)


def test_bad_adu_in_the_middle_of_a_segment(tmp_path: Path) -> None:
    """One good ADU, a bad protocol id, then ADUs the decoder cannot trust:
    decoding resumes at the next segment, never inside the damaged one."""
    conversation = _conversation()
    bad = adu(3, struct.pack("!BHH", 3, 5, 1), prot_id=7)
    conversation.request(read_holding(2, 1, 1) + bad + read_holding(4, 1, 1))
    conversation.request(read_holding(5, 1, 1))
    events, stats = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2:] == [
        (6, "request", "read_holding_registers", 2, None),
        (6, "request", "malformed", 3, "bad_protocol_id"),
        (7, "request", "read_holding_registers", 5, None),
    ]
    assert stats.malformed == 1


def test_truncated_adu_at_end_of_flow(tmp_path: Path) -> None:
    conversation = _conversation()
    conversation.request(write_register(2, 9, 1)[:9])
    conversation.fin()
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2:] == [(0, "request", "malformed", 2, "truncated")]


def test_every_reason_is_in_the_fixed_vocabulary(tmp_path: Path) -> None:
    conversation = _conversation()
    for trans_id, pdu, prot_id, length in (
        (2, struct.pack("!BHH", 3, 5, 1), 1, None),
        (3, struct.pack("!BHHH", 3, 5, 1, 0), 0, None),
        (4, struct.pack("!BHH", 0x30, 5, 1), 0, None),
        (5, struct.pack("!BHH", 3, 5, 1), 0, 1),
    ):
        conversation.request(adu(trans_id, pdu, prot_id=prot_id, length=length))
    conversation.request(write_register(6, 9, 1))  # a good one to resynchronise on
    conversation.request(write_register(7, 9, 1)[:10])
    events, stats = replay_packets(tmp_path, conversation.packets)
    reasons = [e.malformed for e in events if e.malformed]
    assert reasons == [
        "bad_protocol_id", "bad_length", "unknown_function", "bad_length", "truncated",
    ]
    assert set(reasons) <= MALFORMED_REASONS
    assert stats.malformed == 5
