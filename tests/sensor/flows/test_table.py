"""Flow life: orderly close, reset, idle eviction, the flow cap, and what a
session flushes when its flow ends; checked by events and counters."""

from __future__ import annotations

from pathlib import Path

from builders import (
    START_TS,
    TcpConversation,
    frames,
    pcap_bytes,
    read_holding,
    read_holding_reply,
    replay,
    replay_packets,
    summary,
    write,
    write_register,
)
from scapy.packet import Packet

from sensor.capture.packet import LINKTYPE_ETHERNET, PacketDecoder
from sensor.event import IcsEvent
from sensor.flows.table import FlowTable
from sensor.protocols import registry
from sensor.runtime import Stats

R1, A1 = read_holding(1, 100, 2), read_holding_reply(1, [0x1234, 0x5678])
R2, A2 = write_register(2, 7, 99), write_register(2, 7, 99)


def _timed(tmp_path: Path, timed: list[tuple[float, Packet]], name: str = "t.pcap",
           **sensor_args: int) -> tuple[list[IcsEvent], Stats]:
    """Replay packets at the given offsets (seconds) from START_TS."""
    records = [(START_TS + offset, frame)
               for (offset, _), (_, frame) in zip(timed, frames(p for _, p in timed),
                                                  strict=True)]
    return replay([write(tmp_path / name, pcap_bytes(records))], **sensor_args)


def test_fin_closes_the_flow(tmp_path: Path) -> None:
    conversation = TcpConversation()
    conversation.handshake()
    conversation.request(R1)
    conversation.reply(A1)
    conversation.fin()
    events, stats = replay_packets(tmp_path, conversation.packets)
    assert len(events) == 2
    flow = events[0].flow
    assert flow.closed and flow.fin_from_initiator and flow.fin_from_responder
    assert stats.counters["flows_closed_fin"] == 1
    # The client's last ACK comes after the flow is gone: counted, not a new flow.
    assert stats.counters["tcp_packets_without_flow"] == 1
    assert stats.counters["flows"] == 1
    assert (flow.packets_from_initiator, flow.packets_from_responder) == (4, 3)
    assert (flow.bytes_from_initiator, flow.bytes_from_responder) == (len(R1), len(A1))


def test_one_fin_does_not_close(tmp_path: Path) -> None:
    """A half-close: the server still answers after the client's FIN."""
    conversation = TcpConversation()
    conversation.handshake()
    conversation.request(R1)
    conversation.segment(True, flags="FA")
    conversation.reply(A1)
    events, stats = replay_packets(tmp_path, conversation.packets)
    assert summary(events)[1] == (6, "response", 3, 100, [0x1234, 0x5678], None)
    assert "flows_closed_fin" not in stats.counters


def test_rst_closes_the_flow_and_flushes_a_partial_adu(tmp_path: Path) -> None:
    conversation = TcpConversation()
    conversation.handshake()
    conversation.request(R1)
    conversation.reply(A1)
    conversation.request(R2[:9])  # packet 6: the connection dies mid-ADU
    conversation.rst(from_client=False)
    conversation.request(R2[9:])  # after the reset: a new (mid-stream) flow
    events, stats = replay_packets(tmp_path, conversation.packets)
    assert stats.counters["flows_closed_rst"] == 1
    first = events[0].flow
    assert first.closed
    assert [(e.direction, e.operation, e.malformed, e.flow is first) for e in events] == [
        ("request", "read_holding_registers", None, True),
        ("response", "read_holding_registers", None, True),
        ("request", "malformed", "truncated", True),
    ]
    assert events[2].fields["trans_id"] == 2
    # The 3 bytes after the reset start a new flow; they are not decoded as garbage.
    assert stats.counters["flows"] == 2
    assert stats.malformed == 1


def test_idle_flow_is_evicted(tmp_path: Path) -> None:
    """Flow A goes quiet; 700 s later another flow's packet evicts it."""
    a = TcpConversation(client_port=40000)
    b = TcpConversation(client_port=40001)
    timed = [(0.0, p) for p in a.handshake()]
    timed += [(0.1, a.request(R1)), (0.2, a.reply(A1)), (0.3, a.request(R2[:9]))]
    timed += [(700.0 + i, p) for i, p in enumerate(b.handshake())]
    timed += [(704.0, b.request(R2)), (704.1, b.reply(A2))]
    events, stats = _timed(tmp_path, timed)
    assert stats.counters["flows_evicted_idle"] == 1
    flow_a = events[0].flow
    assert flow_a.closed
    # A's unfinished ADU is flushed when it is evicted, before B's events.
    assert [(e.flow.initiator_port, e.operation, e.malformed) for e in events] == [
        (40000, "read_holding_registers", None),
        (40000, "read_holding_registers", None),
        (40000, "malformed", "truncated"),
        (40001, "write_single_register", None),
        (40001, "write_single_register", None),
    ]


def test_packet_after_idle_timeout_starts_a_new_flow(tmp_path: Path) -> None:
    """The same connection wakes up after the idle timeout: the old flow is
    evicted first, and the request and its response are one new flow."""
    conversation = TcpConversation()
    timed = [(0.0, p) for p in conversation.handshake()]
    timed += [(0.1, conversation.request(R1)), (0.2, conversation.reply(A1))]
    timed += [(900.0, conversation.request(R2)), (900.1, conversation.reply(A2))]
    events, stats = _timed(tmp_path, timed)
    assert stats.counters["flows_evicted_idle"] == 1
    assert stats.counters["flows"] == 2
    old, new = events[0].flow, events[2].flow
    assert old is not new and old.closed and new.midstream
    assert events[3].flow is new
    assert events[3].request_packet == 6
    assert events[3].response_time is not None
    assert events[3].response_time < 0.2


def test_udp_idle_timeout_is_shorter() -> None:
    table = FlowTable(registry(), lambda event: None)
    for ts, sport in ((0.0, 1000), (200.0, 1001)):
        table.udp_packet(ts, 1, b"\x0a\0\0\x01", b"\x0a\0\0\x02", sport, 161, b"x", b"", -1)
    assert table.counters["flows_evicted_idle"] == 1
    assert table.active == 1


def test_flow_cap_evicts_the_least_recently_active(tmp_path: Path) -> None:
    c0, c1, c2 = (TcpConversation(client_port=41000 + i) for i in range(3))
    packets = c0.handshake() + c1.handshake()
    packets.append(c0.request(R1))  # flow 0 was opened first but is active again
    packets += c2.handshake()  # over the cap of 2: flow 1 goes
    packets.append(c2.request(R1))
    packets.append(c0.reply(A1))
    path = write(tmp_path / "cap.pcap", pcap_bytes(frames(packets)))
    events, stats = replay([path], max_flows=2)
    assert stats.counters["flows_evicted_cap"] == 1
    assert stats.counters["flows"] == 3
    assert [(e.src_port, e.direction, e.malformed) for e in events] == [
        (41000, "request", None), (41002, "request", None), (502, "response", None),
    ]
    # Flow 0 survived: its response still pairs with its request.
    assert events[2].flow is events[0].flow
    assert events[2].request_packet == 7


def test_evicted_flow_that_speaks_again_is_picked_up_mid_stream(tmp_path: Path) -> None:
    c0, c1 = TcpConversation(client_port=41000), TcpConversation(client_port=41001)
    packets = c0.handshake()
    packets.append(c0.request(R1))
    packets += c1.handshake()  # evicts flow 0 (cap 1)
    packets.append(c0.reply(A1))  # flow 0 again: a new, mid-stream flow (evicts flow 1)
    packets.append(c0.request(R2))
    packets.append(c0.reply(A2))
    path = write(tmp_path / "again.pcap", pcap_bytes(frames(packets)))
    events, stats = replay([path], max_flows=1)
    assert stats.counters["flows_evicted_cap"] == 2
    assert summary(events) == [
        (4, "request", 3, 100, None, None),
        (8, "response", 3, None, [0x1234, 0x5678], None),
        (9, "request", 6, 7, [99], None),
        (10, "response", 6, 7, [99], None),
    ]
    assert events[1].flow.midstream and events[1].flow is not events[0].flow


def test_flow_cap_bounds_the_table() -> None:
    """Forty connections through a table capped at eight: never more than
    eight live flows, every request still decoded."""
    events: list[IcsEvent] = []
    table = FlowTable(registry(), events.append, max_flows=8)
    decoder = PacketDecoder(table)
    live = []
    number = 0
    for i in range(40):
        conversation = TcpConversation(client_port=42000 + i)
        conversation.handshake()
        conversation.request(read_holding(i, i, 1))
        for ts, frame in frames(conversation.packets, start=START_TS + i):
            number += 1
            decoder.frame(ts, LINKTYPE_ETHERNET, frame, number)
            live.append(table.active)
    assert max(live) == 8
    assert table.counters["flows_evicted_cap"] == 32
    assert len(table.tcp) == 2 * 8  # each flow is entered once per direction
    table.close_all(START_TS + 41)
    assert table.active == 0 and table.tcp == {}
    assert [e.fields["trans_id"] for e in events] == list(range(40))


def test_end_of_input_closes_every_flow(tmp_path: Path) -> None:
    conversation = TcpConversation()
    conversation.handshake()
    conversation.request(R1)
    conversation.reply(A1[:8])
    events, stats = replay_packets(tmp_path, conversation.packets)
    assert [(e.direction, e.malformed) for e in events] == [
        ("request", None), ("response", "truncated"),
    ]
    assert events[1].flow.closed
    assert not {k for k in stats.counters if k.startswith("flows_")}


def test_syn_ack_first_makes_the_receiver_the_initiator(tmp_path: Path) -> None:
    conversation = TcpConversation()
    conversation.handshake()
    conversation.request(R1)
    conversation.reply(A1)
    events, _ = replay_packets(tmp_path, conversation.packets[1:])
    flow = events[0].flow
    assert (flow.initiator_port, flow.responder_port) == (49152, 502)
    assert [e.direction for e in events] == ["request", "response"]


def test_new_connection_on_the_same_ports_is_a_new_flow(tmp_path: Path) -> None:
    """The client reconnects from the same port after a half-close the
    capture saw only one FIN of: nothing of the old connection (here half
    an ADU) leaks into the new one."""
    conversation = TcpConversation()
    conversation.handshake()
    conversation.request(R1)
    conversation.reply(A1)
    conversation.request(R2[:9])  # packet 6
    conversation.segment(True, flags="FA")
    conversation.client_seq, conversation.server_seq = 777_777, 999_999
    conversation.handshake()  # packets 8-10
    conversation.request(read_holding(3, 5, 1))
    conversation.reply(read_holding_reply(3, [9]))
    events, stats = replay_packets(tmp_path, conversation.packets)
    assert stats.counters["flows_closed_reused"] == 1
    assert stats.counters["flows"] == 2
    assert [(e.packet, e.direction, e.fields.get("trans_id"), e.malformed, e.flow.number)
            for e in events] == [
        (4, "request", 1, None, 1),
        (5, "response", 1, None, 1),
        (0, "request", 2, "truncated", 1),
        (11, "request", 3, None, 2),
        (12, "response", 3, None, 2),
    ]
    assert events[4].fields["regval_uint16"] == [9]
    assert events[4].request_packet == 11


def test_retransmitted_syn_is_the_same_flow(tmp_path: Path) -> None:
    conversation = TcpConversation()
    syn = conversation.segment(True, flags="S")
    conversation.packets.append(syn.copy())
    conversation.segment(False, flags="SA")
    conversation.packets.append(conversation.packets[-1].copy())  # SYN/ACK again
    conversation.segment(True, flags="A")
    conversation.request(R1)
    conversation.reply(A1)
    events, stats = replay_packets(tmp_path, conversation.packets)
    assert [e.packet for e in events] == [6, 7]
    assert stats.counters["flows"] == 1
    assert "flows_closed_reused" not in stats.counters


def test_late_duplicate_syn_changes_nothing(tmp_path: Path) -> None:
    """A SPAN port repeats the client's SYN after data has flowed: same flow,
    no false gap, the next request decodes."""
    conversation = TcpConversation()
    syn = conversation.handshake()[0]
    conversation.request(R1)
    conversation.reply(A1)
    conversation.packets.append(syn.copy())  # packet 6
    conversation.request(R2)
    conversation.reply(A2)
    events, stats = replay_packets(tmp_path, conversation.packets)
    assert summary(events) == [
        (4, "request", 3, 100, None, None),
        (5, "response", 3, 100, [0x1234, 0x5678], None),
        (7, "request", 6, 7, [99], None),
        (8, "response", 6, 7, [99], None),
    ]
    assert stats.counters["flows"] == 1
    assert not {k for k in stats.counters if k.startswith("tcp_gap")}
    assert "flows_closed_reused" not in stats.counters


def test_syn_on_a_flow_picked_up_mid_stream_starts_a_new_one(tmp_path: Path) -> None:
    old = TcpConversation()
    old.handshake()
    old.request(R1[:9])
    new = TcpConversation(client_isn=5_000_000, server_isn=6_000_000)
    new.handshake()
    new.request(R2)
    new.reply(A2)
    events, stats = replay_packets(tmp_path, old.packets[3:] + new.packets)
    assert stats.counters["flows_closed_reused"] == 1
    assert [(e.packet, e.fields.get("trans_id"), e.malformed) for e in events] == [
        (5, 2, None), (6, 2, None),
    ]
