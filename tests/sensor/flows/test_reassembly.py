"""Per-direction TCP reassembly, checked by the Modbus events it yields: ADUs
split across segments and packed into one, retransmission, reordering,
overlap, gaps (by ACK evidence and by caps), mid-stream pickup and sequence
numbers that wrap past 2^32."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import (
    START_TS,
    TcpConversation,
    read_holding,
    read_holding_reply,
    replay_packets,
    summary,
    write_pcap,
    write_register,
    write_registers,
    write_registers_reply,
)

from sensor.flows.tcp import MAX_PENDING_SEGMENTS
from sensor.runtime import Sensor

R1, A1 = read_holding(1, 100, 2), read_holding_reply(1, [0x1234, 0x5678])
R2, A2 = write_register(2, 7, 99), write_register(2, 7, 99)
R3, A3 = read_holding(3, 300, 1), read_holding_reply(3, [0xBEEF])


def _three_exchanges(**conversation_args: int) -> TcpConversation:
    """Handshake (packets 1-3), then R1/A1 (4, 5), R2/A2 (6, 7), R3/A3 (8, 9)."""
    conversation = TcpConversation(**conversation_args)
    conversation.handshake()
    for request, reply in ((R1, A1), (R2, A2), (R3, A3)):
        conversation.request(request)
        conversation.reply(reply)
    return conversation


ALL_SIX = [
    (4, "request", 3, 100, None, None),
    (5, "response", 3, 100, [0x1234, 0x5678], None),
    (6, "request", 6, 7, [99], None),
    (7, "response", 6, 7, [99], None),
    (8, "request", 3, 300, None, None),
    (9, "response", 3, 300, [0xBEEF], None),
]


def test_in_order_baseline(tmp_path: Path) -> None:
    events, stats = replay_packets(tmp_path, _three_exchanges().packets)
    assert summary(events) == ALL_SIX
    assert [e.response_time is not None for e in events] == [False, True] * 3
    assert not {k for k in stats.counters if k.startswith("tcp_")}


def test_mbap_header_split_across_two_segments(tmp_path: Path) -> None:
    conversation = TcpConversation()
    conversation.handshake()
    conversation.request(R1[:3])  # packet 4: half the MBAP header
    conversation.request(R1[3:])  # packet 5: the rest
    conversation.reply(A1[:7])  # packet 6: the MBAP header, no PDU yet
    conversation.reply(A1[7:8])  # packet 7: the function code alone
    conversation.reply(A1[8:])  # packet 8: byte count and registers
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert summary(events) == [
        (5, "request", 3, 100, None, None),
        (8, "response", 3, 100, [0x1234, 0x5678], None),
    ]
    assert events[1].request_packet == 5


def test_three_adus_in_one_segment(tmp_path: Path) -> None:
    conversation = TcpConversation()
    conversation.handshake()
    conversation.request(R1 + R2 + R3)  # packet 4
    conversation.reply(A1 + A2 + A3)  # packet 5
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert summary(events) == [
        (4, "request", 3, 100, None, None),
        (4, "request", 6, 7, [99], None),
        (4, "request", 3, 300, None, None),
        (5, "response", 3, 100, [0x1234, 0x5678], None),
        (5, "response", 6, 7, [99], None),
        (5, "response", 3, 300, [0xBEEF], None),
    ]
    assert [e.fields["trans_id"] for e in events] == [1, 2, 3, 1, 2, 3]


def test_adu_boundaries_inside_segments(tmp_path: Path) -> None:
    """One ADU and a half in a segment, the other half and one more in the next."""
    conversation = TcpConversation()
    conversation.handshake()
    stream = R1 + R2 + R3
    conversation.request(stream[:18])
    conversation.request(stream[18:])
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert [(e.packet, e.fields["trans_id"]) for e in events] == [(4, 1), (5, 2), (5, 3)]


def test_retransmitted_segment_gives_no_duplicate_events(tmp_path: Path) -> None:
    conversation = _three_exchanges()
    packets = conversation.packets
    packets.insert(4, packets[3].copy())  # R1 again, right after itself
    packets.insert(9, packets[8].copy())  # A2 again, after R3 was sent
    events, stats = replay_packets(tmp_path, packets)
    assert [row[1:] for row in summary(events)] == [row[1:] for row in ALL_SIX]
    assert stats.counters["tcp_retransmitted_segments"] == 2
    assert stats.events == 6


def test_out_of_order_segments(tmp_path: Path) -> None:
    conversation = TcpConversation()
    conversation.handshake()
    first = conversation.request(R1 + R2[:4])
    second = conversation.request(R2[4:] + R3[:10])
    third = conversation.request(R3[10:])
    packets = [*conversation.packets[:3], third, second, first]
    events, stats = replay_packets(tmp_path, packets)
    # Nothing can be decoded until the first segment (packet 6) fills the hole.
    assert [(e.packet, e.fields["trans_id"], e.malformed) for e in events] == [
        (6, 1, None), (6, 2, None), (6, 3, None),
    ]
    assert events[1].fields["regval_uint16"] == [99]
    assert stats.counters["tcp_out_of_order_segments"] == 2
    assert "tcp_gap_bytes" not in stats.counters


def test_overlapping_segment(tmp_path: Path) -> None:
    """A retransmission that repacketises: it repeats the tail of what was
    delivered and carries new bytes after it."""
    conversation = TcpConversation()
    conversation.handshake()
    start = conversation.client_seq
    conversation.request(R1 + R2[:5])
    conversation.request(R2[:5] + R2[5:] + R3, seq=start + len(R1), advance=False)
    conversation.reply(A1 + A2 + A3)
    events, stats = replay_packets(tmp_path, conversation.packets)
    assert [(e.direction, e.fields["trans_id"], e.malformed) for e in events] == [
        ("request", 1, None), ("request", 2, None), ("request", 3, None),
        ("response", 1, None), ("response", 2, None), ("response", 3, None),
    ]
    assert stats.counters["tcp_overlapping_segments"] == 1


def test_overlapping_out_of_order_segments(tmp_path: Path) -> None:
    """Two held segments that overlap each other, filled later."""
    conversation = TcpConversation()
    conversation.handshake()
    base = conversation.client_seq
    stream = R1 + R2 + R3
    packets = conversation.packets
    conversation.request(stream[20:], seq=base + 20, advance=False)
    conversation.request(stream[10:30], seq=base + 10, advance=False)
    conversation.request(stream[:12], seq=base, advance=False)
    events, stats = replay_packets(tmp_path, packets)
    assert stats.counters["tcp_out_of_order_segments"] == 2
    assert [(e.packet, e.fields["trans_id"], e.malformed) for e in events] == [
        (6, 1, None), (6, 2, None), (6, 3, None),
    ]
    assert events[2].fields["reference_num"] == 300


def test_gap_acknowledged_by_the_peer(tmp_path: Path) -> None:
    """R2 never reached the capture but the server answered it: decoding
    skips the hole and resumes at R3, with no garbage events."""
    conversation = _three_exchanges()
    packets = conversation.packets
    del packets[5]  # R2
    events, stats = replay_packets(tmp_path, packets)
    assert summary(events) == [
        (4, "request", 3, 100, None, None),
        (5, "response", 3, 100, [0x1234, 0x5678], None),
        (6, "response", 6, 7, [99], None),
        (7, "request", 3, 300, None, None),
        (8, "response", 3, 300, [0xBEEF], None),
    ]
    assert events[2].response_time is None  # its request was lost
    assert events[4].request_packet == 7
    assert stats.malformed == 0
    assert stats.counters["tcp_gaps_acked"] == 1
    assert stats.counters["tcp_gap_bytes"] == len(R2)


def test_gap_in_the_middle_of_an_adu(tmp_path: Path) -> None:
    """The first half of a split ADU is lost: its tail is not decoded as
    garbage; the next whole ADU is."""
    conversation = TcpConversation()
    conversation.handshake()
    conversation.request(R1)
    conversation.reply(A1)
    big = write_registers(2, 500, list(range(20)))
    conversation.request(big[:20])  # lost
    conversation.request(big[20:])
    conversation.reply(write_registers_reply(2, 500, 20))
    conversation.request(R3)
    conversation.reply(A3)
    packets = conversation.packets
    del packets[5]
    events, stats = replay_packets(tmp_path, packets)
    assert summary(events) == [
        (4, "request", 3, 100, None, None),
        (5, "response", 3, 100, [0x1234, 0x5678], None),
        (7, "response", 16, 500, None, None),
        (8, "request", 3, 300, None, None),
        (9, "response", 3, 300, [0xBEEF], None),
    ]
    assert stats.malformed == 0
    assert stats.counters["tcp_gap_bytes"] == 20


def test_gap_never_acknowledged_is_skipped_at_close(tmp_path: Path) -> None:
    """A hole at the end of the capture: held bytes are delivered at close."""
    conversation = TcpConversation()
    conversation.handshake()
    conversation.request(R1)
    conversation.request(R2)  # lost, and nothing acknowledges it
    conversation.request(R3)
    packets = conversation.packets
    del packets[4]
    events, stats = replay_packets(tmp_path, packets)
    assert [(e.fields["trans_id"], e.malformed) for e in events] == [(1, None), (3, None)]
    assert stats.counters["tcp_gap_bytes"] == len(R2)
    # R3 is reported at the packet and time that brought it, not at close.
    assert [e.packet for e in events] == [4, 5]
    assert events[1].ts == pytest.approx(START_TS + 0.004)


def test_per_stream_segment_cap_gives_up_on_a_hole(tmp_path: Path) -> None:
    conversation = TcpConversation()
    conversation.handshake()
    conversation.request(R1, ack=0, flags="P")  # lost; no ACK flags anywhere
    for trans_id in range(2, MAX_PENDING_SEGMENTS + 4):
        conversation.request(read_holding(trans_id, trans_id, 1), flags="P")
    packets = conversation.packets
    del packets[3]
    events, stats = replay_packets(tmp_path, packets)
    assert stats.counters["tcp_gaps_stream_cap"] >= 1
    assert stats.counters["tcp_gap_bytes"] == len(R1)
    assert [e.fields["trans_id"] for e in events] == list(range(2, MAX_PENDING_SEGMENTS + 4))
    # Each request keeps its own packet number (handshake 1-3, R2 is packet 4).
    assert [e.packet for e in events] == list(range(4, MAX_PENDING_SEGMENTS + 6))
    assert stats.malformed == 0


def test_global_buffered_bytes_cap(tmp_path: Path) -> None:
    """Past the table's byte budget a hole is given up on, and counted."""
    conversation = TcpConversation()
    conversation.handshake()
    conversation.request(R1, flags="P")
    for trans_id in range(2, 12):
        conversation.request(read_holding(trans_id, trans_id, 1), flags="P")
    packets = conversation.packets
    del packets[3]
    path = write_pcap(tmp_path / "cap.pcap", packets)
    events = []
    sensor = Sensor(events.append)
    sensor.flows.max_buffered_bytes = 40  # three 12-byte segments
    stats = sensor.replay([path])
    assert stats.counters["tcp_gaps_global_cap"] == 1
    assert stats.counters["tcp_gap_bytes"] == len(R1)
    assert [e.fields["trans_id"] for e in events] == list(range(2, 12))
    assert sensor.flows.buffered_bytes == 0


def test_mid_stream_pickup_at_an_adu_boundary(tmp_path: Path) -> None:
    """The capture starts after the handshake and R1/A1."""
    packets = _three_exchanges().packets[5:]
    events, stats = replay_packets(tmp_path, packets)
    assert summary(events) == [
        (1, "request", 6, 7, [99], None),
        (2, "response", 6, 7, [99], None),
        (3, "request", 3, 300, None, None),
        (4, "response", 3, 300, [0xBEEF], None),
    ]
    flow = events[0].flow
    assert flow.midstream
    assert (flow.initiator_ip, flow.initiator_port) == ("10.0.0.10", 49152)
    assert stats.malformed == 0


def test_mid_stream_pickup_starting_with_the_server(tmp_path: Path) -> None:
    """The first packet is a response: the server is still the responder."""
    packets = _three_exchanges().packets[4:]
    events, _ = replay_packets(tmp_path, packets)
    assert [(e.direction, e.src_port, e.fields["trans_id"]) for e in events] == [
        ("response", 502, 1), ("request", 49152, 2), ("response", 502, 2),
        ("request", 49152, 3), ("response", 502, 3),
    ]
    assert events[0].fields["regval_uint16"] == [0x1234, 0x5678]


def test_mid_stream_pickup_in_the_middle_of_an_adu(tmp_path: Path) -> None:
    """The capture starts with the tail of an ADU (in both directions):
    no garbage events, decoding starts at the next ADU."""
    conversation = TcpConversation()
    conversation.handshake()
    conversation.request(R1[:9])
    conversation.request(R1[9:])  # capture starts here: 3 bytes of R1's PDU
    conversation.reply(A1[:5])
    conversation.reply(A1[5:])  # ... and the server's tail of A1
    conversation.request(R2)
    conversation.reply(A2)
    packets = conversation.packets
    events, stats = replay_packets(tmp_path, [packets[4], packets[6], packets[7], packets[8]])
    assert [(e.packet, e.direction, e.fields.get("trans_id"), e.malformed) for e in events] == [
        (3, "request", 2, None),
        (4, "response", 2, None),
    ]
    assert stats.malformed == 0


def test_sequence_numbers_wrap_past_2_to_the_32(tmp_path: Path) -> None:
    conversation = _three_exchanges(client_isn=0xFFFFFFF0, server_isn=0xFFFFFFE0)
    assert conversation.client_seq < 0x100  # it wrapped
    events, stats = replay_packets(tmp_path, conversation.packets)
    assert summary(events) == ALL_SIX
    assert not {k for k in stats.counters if k.startswith("tcp_")}


def test_out_of_order_across_the_wrap(tmp_path: Path) -> None:
    conversation = TcpConversation(client_isn=0xFFFFFFF0)
    conversation.handshake()
    first = conversation.request(R1 + R2[:3])  # 15 bytes: ends at 2^32 + 14
    second = conversation.request(R2[3:] + R3)
    assert second.seq < first.seq
    packets = [*conversation.packets[:3], second, first]
    events, stats = replay_packets(tmp_path, packets)
    assert [(e.packet, e.fields["trans_id"]) for e in events] == [(5, 1), (5, 2), (5, 3)]
    assert stats.counters["tcp_out_of_order_segments"] == 1


def test_retransmission_and_gap_across_the_wrap(tmp_path: Path) -> None:
    conversation = _three_exchanges(client_isn=0xFFFFFFF8)
    packets = conversation.packets
    packets.insert(6, packets[5].copy())  # R2 retransmitted
    del packets[3]  # R1 (which straddles the wrap) lost; A1 acknowledges it
    events, stats = replay_packets(tmp_path, packets)
    assert [(e.direction, e.fields["trans_id"]) for e in events] == [
        ("response", 1), ("request", 2), ("response", 2), ("request", 3), ("response", 3),
    ]
    assert stats.counters["tcp_gap_bytes"] == len(R1)
    assert stats.counters["tcp_retransmitted_segments"] == 1
