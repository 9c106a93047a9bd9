"""The BPF-style filter: what pcap-filter(7) users type, evaluated the way
tcpdump would, and syntax errors that say what is wrong."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from builders import (
    CLIENT_IP6,
    SERVER_IP6,
    TcpConversation,
    frames,
    modbus_exchange,
    pcap_bytes,
    replay,
    write,
)

from sensor.capture.filter import FilterError, compile_filter

TCP, UDP = 6, 17


def _ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def _match(expression: str, transport: int, src: str, dst: str, sport: int, dport: int) -> bool:
    return compile_filter(expression)(transport, _ip(src), _ip(dst), sport, dport)


A, B, C = "10.0.0.10", "10.0.0.20", "192.168.1.5"


@pytest.mark.parametrize(
    ("expression", "packet", "expected"),
    [
        ("tcp", (TCP, A, B, 49152, 502), True),
        ("tcp", (UDP, A, B, 49152, 502), False),
        ("udp", (UDP, A, B, 49152, 161), True),
        ("ip", (TCP, A, B, 1, 2), True),
        ("ip6", (TCP, A, B, 1, 2), False),
        ("ip6", (TCP, CLIENT_IP6, SERVER_IP6, 1, 2), True),
        ("port 502", (TCP, A, B, 49152, 502), True),
        ("port 502", (TCP, B, A, 502, 49152), True),
        ("port 502", (TCP, A, B, 49152, 503), False),
        ("tcp port 502", (TCP, A, B, 49152, 502), True),
        ("tcp port 502", (UDP, A, B, 49152, 502), False),
        ("udp port 502", (TCP, A, B, 49152, 502), False),
        ("tcp dst port 502", (TCP, A, B, 49152, 502), True),
        ("tcp dst port 502", (TCP, B, A, 502, 49152), False),
        ("src port 502", (TCP, B, A, 502, 49152), True),
        ("src port 502", (TCP, A, B, 49152, 502), False),
        ("host 10.0.0.10", (TCP, A, B, 1, 2), True),
        ("host 10.0.0.10", (TCP, B, A, 1, 2), True),
        ("host 10.0.0.10", (TCP, B, C, 1, 2), False),
        ("src host 10.0.0.10", (TCP, A, B, 1, 2), True),
        ("src host 10.0.0.10", (TCP, B, A, 1, 2), False),
        ("dst host 10.0.0.10", (TCP, B, A, 1, 2), True),
        ("ip host 10.0.0.10", (TCP, A, B, 1, 2), True),
        ("host 2001:db8::10", (TCP, CLIENT_IP6, SERVER_IP6, 1, 2), True),
        ("host 2001:db8::10", (TCP, A, B, 1, 2), False),
        ("net 10.0.0.0/8", (TCP, C, B, 1, 2), True),
        ("net 10.0.0.0/8", (TCP, C, "11.0.0.1", 1, 2), False),
        ("net 10.0.0.0/30", (TCP, "10.0.0.3", C, 1, 2), True),
        ("net 10.0.0.0/30", (TCP, "10.0.0.4", C, 1, 2), False),
        ("net 192.168.1.0/25", (TCP, C, C, 1, 2), True),
        ("net 192.168.1.128/25", (TCP, C, C, 1, 2), False),
        ("src net 192.168.0.0/16", (TCP, A, C, 1, 2), False),
        ("net 2001:db8::/32", (TCP, CLIENT_IP6, SERVER_IP6, 1, 2), True),
        ("portrange 500-510", (TCP, A, B, 49152, 502), True),
        ("portrange 500-510", (TCP, A, B, 49152, 511), False),
        ("tcp portrange 500-510", (TCP, A, B, 510, 49152), True),
        ("dst portrange 500-510", (TCP, A, B, 502, 49152), False),
        ("host 10.0.0.10 and not port 5020", (TCP, A, B, 49152, 502), True),
        ("host 10.0.0.10 and not port 5020", (TCP, A, B, 49152, 5020), False),
        ("host 10.0.0.10 and not port 5020", (TCP, C, B, 49152, 502), False),
        ("not tcp", (UDP, A, B, 1, 2), True),
        ("! tcp", (TCP, A, B, 1, 2), False),
        ("!tcp", (UDP, A, B, 1, 2), True),
        ("tcp && port 502", (TCP, A, B, 1, 502), True),
        ("tcp&&port 502", (TCP, A, B, 1, 502), True),
        ("port 502||port 503", (TCP, A, B, 1, 503), True),
        ("(port 502 or port 503) and host 10.0.0.20", (TCP, A, B, 1, 503), True),
        ("(port 502 or port 503) and host 10.0.0.20", (TCP, A, C, 1, 503), False),
        ("not (port 502 or port 503)", (TCP, A, B, 1, 503), False),
        ("not (port 502 or port 503)", (TCP, A, B, 1, 504), True),
        ("((tcp))", (TCP, A, B, 1, 2), True),
        # pcap-filter(7): "and" and "or" have equal precedence, left to right,
        # so this is (port 502 or port 503) and host 10.0.0.20.
        ("port 502 or port 503 and host 10.0.0.20", (TCP, A, C, 1, 502), False),
        ("port 502 or port 503 and host 10.0.0.20", (TCP, A, B, 1, 502), True),
        ("host 192.168.1.5 and port 1 or port 502", (TCP, A, B, 1, 502), True),
    ],
)
def test_filter_matches(
    expression: str, packet: tuple[int, str, str, int, int], expected: bool
) -> None:
    assert _match(expression, *packet) is expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "empty filter"),
        ("   ", "empty filter"),
        ("port", "filter ends too early"),
        ("tcp and", "filter ends too early"),
        ("(tcp", "missing ')'"),
        ("(tcp or udp port 502", "missing ')'"),
        ("tcp )", "unexpected ')'"),
        ("tcp udp", "unexpected 'udp'"),
        ("prot 502", "unknown filter keyword 'prot'"),
        ("port http", "bad port 'http'"),
        ("port 70000", "port '70000' out of range"),
        ("portrange 510-500", "port '510-500' out of range"),
        ("host 10.0.0.999", "bad host address '10.0.0.999'"),
        ("host 10.0.0.0/8", "host '10.0.0.0/8' is a network; use 'net'"),
        ("net 10.0.0.0/33", "bad net address '10.0.0.0/33'"),
        ("src", "filter ends too early"),
        ("src tcp", "unknown filter keyword 'tcp'"),
        ("port 502 &", "cannot read filter"),
    ],
)
def test_filter_syntax_errors(expression: str, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        compile_filter(expression)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


# -- the filter applied to a replay ----------------------------------------------


@pytest.fixture()
def two_flows(tmp_path: Path) -> Path:
    """Modbus from 10.0.0.10 to 10.0.0.20 on 502 and on 5020, and over IPv6."""
    packets = []
    for conversation in (
        TcpConversation(),
        TcpConversation(client_port=40000, server_port=5020),
        TcpConversation(client=CLIENT_IP6, server=SERVER_IP6, client_port=40001),
    ):
        modbus_exchange(conversation)
        packets += conversation.packets
    return write(tmp_path / "flows.pcap", pcap_bytes(frames(packets)))


def _seen(path: Path, expression: str) -> list[tuple[str, int, str]]:
    events, _ = replay([path], packet_filter=compile_filter(expression))
    return [(e.dst_ip if e.direction == "request" else e.src_ip,
             e.flow.responder_port, e.direction) for e in events]


def test_replay_with_tcp_port_502(two_flows: Path) -> None:
    assert _seen(two_flows, "tcp port 502") == [
        ("10.0.0.20", 502, "request"), ("10.0.0.20", 502, "response"),
    ] * 2 + [
        ("2001:db8::20", 502, "request"), ("2001:db8::20", 502, "response"),
    ] * 2


def test_replay_with_host_and_not_port(two_flows: Path) -> None:
    assert _seen(two_flows, "host 10.0.0.20 and not port 5020") == [
        ("10.0.0.20", 502, "request"), ("10.0.0.20", 502, "response"),
    ] * 2


def test_replay_with_src_host_keeps_one_direction(two_flows: Path) -> None:
    """Only the client's packets pass: requests decode, responses are unseen."""
    assert _seen(two_flows, "src host 10.0.0.10") == [
        ("10.0.0.20", 502, "request"), ("10.0.0.20", 502, "request"),
        ("10.0.0.20", 5020, "request"), ("10.0.0.20", 5020, "request"),
    ]


def test_replay_with_net_and_portrange(two_flows: Path) -> None:
    assert [row[1] for row in _seen(two_flows, "net 10.0.0.0/8 and portrange 5000-5100")] == [
        5020
    ] * 4
    assert [row[0] for row in _seen(two_flows, "ip6 or (port 5020)")] == [
        "10.0.0.20"] * 4 + ["2001:db8::20"] * 4


def test_replay_with_a_filter_matching_nothing(two_flows: Path) -> None:
    events, stats = replay([two_flows], packet_filter=compile_filter("udp"))
    assert events == []
    assert stats.packets == 30
