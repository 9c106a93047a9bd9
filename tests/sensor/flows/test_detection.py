"""Which analyzer owns a flow: Modbus found by its framing on a port nobody
claims; other traffic on port 502 is not logged as Modbus for long."""

from __future__ import annotations

from pathlib import Path

from builders import (
    MODBUS_EXCHANGE_EVENTS,
    TcpConversation,
    modbus_exchange,
    read_holding,
    read_holding_reply,
    replay_packets,
    summary,
)

HTTP_REQUEST = b"GET / HTTP/1.1\r\nHost: plc\r\n\r\n"
HTTP_REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def _http(server_port: int, exchanges: int = 6) -> TcpConversation:
    conversation = TcpConversation(server_port=server_port)
    conversation.handshake()
    for _ in range(exchanges):
        conversation.request(HTTP_REQUEST)
        conversation.reply(HTTP_REPLY)
    conversation.fin()
    return conversation


def test_modbus_on_a_non_standard_port_is_found_by_its_framing(tmp_path: Path) -> None:
    conversation = TcpConversation(server_port=5020)
    modbus_exchange(conversation)
    events, stats = replay_packets(tmp_path, conversation.packets)
    assert summary(events) == MODBUS_EXCHANGE_EVENTS
    assert events[0].dst_port == 5020
    flow = events[0].flow
    assert (flow.protocol, flow.analyzer_status) == ("modbus", "confirmed")
    assert stats.counters["modbus_flows"] == 1


def test_non_standard_port_picked_up_mid_stream_from_the_server(tmp_path: Path) -> None:
    conversation = TcpConversation(client_port=40000, server_port=5020)
    modbus_exchange(conversation)
    events, _ = replay_packets(tmp_path, conversation.packets[4:])
    # The first packet (a response) claimed the flow; the client is still the
    # client (the higher port), and every PDU after it is decoded.
    assert [(e.direction, e.src_port, e.fields["func_code"]) for e in events] == [
        ("response", 5020, 3), ("request", 40000, 6), ("response", 5020, 6),
    ]


def test_http_on_a_non_standard_port_is_left_alone(tmp_path: Path) -> None:
    events, stats = replay_packets(tmp_path, _http(8080).packets)
    assert events == []
    assert "modbus_flows" not in stats.counters
    assert stats.counters["flows"] == 1


def test_probe_gives_up_after_a_few_packets(tmp_path: Path) -> None:
    """Three non-Modbus payloads, then Modbus: too late to claim the flow."""
    conversation = TcpConversation(server_port=5020)
    conversation.handshake()
    conversation.request(HTTP_REQUEST)
    conversation.reply(HTTP_REPLY)
    conversation.request(HTTP_REQUEST)
    conversation.request(read_holding(1, 0, 1))
    conversation.reply(read_holding_reply(1, [5]))
    events, stats = replay_packets(tmp_path, conversation.packets)
    assert events == []
    assert "modbus_flows" not in stats.counters


def test_http_on_port_502_gives_few_malformed_events(tmp_path: Path) -> None:
    events, stats = replay_packets(tmp_path, _http(502).packets)
    assert 1 <= len(events) <= 3
    assert {e.malformed for e in events} == {"bad_protocol_id"}
    assert events[0].fields["prot_id"] == int.from_bytes(b"T ", "big")
    assert stats.malformed == len(events)
    assert events[0].flow.analyzer_status in ("violated", "disabled")


def test_http_on_port_502_disables_the_analyzer(tmp_path: Path) -> None:
    events, _ = replay_packets(tmp_path, _http(502).packets)
    flow = events[0].flow
    assert flow.analyzer_status == "disabled"
    assert flow.session is None
    assert flow.analyzer_reason is not None and "not Modbus" in flow.analyzer_reason
