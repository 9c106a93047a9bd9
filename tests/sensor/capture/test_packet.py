"""Link, network and transport decoding: every supported link type, IPv4 and
IPv6 fragments, IPv6 extension headers, truncated and foreign frames — all
checked by the Modbus events that come out the other end."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from builders import (
    CLIENT_IP6,
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_RAW,
    MODBUS_EXCHANGE_EVENTS,
    SERVER_IP6,
    TcpConversation,
    frames,
    link_frame,
    modbus_exchange,
    pcap_bytes,
    read_holding,
    read_holding_reply,
    replay,
    replay_packets,
    summary,
    write,
    write_registers,
    write_registers_reply,
)
from scapy.layers.inet import IP, TCP, IPOption, IPOption_EOL, IPOption_NOP
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from sensor.capture.packet import PacketDecoder
from sensor.flows.table import FlowTable
from sensor.protocols import registry


def _exchange(ipv6: bool = False) -> list[Packet]:
    if ipv6:
        conversation = TcpConversation(client=CLIENT_IP6, server=SERVER_IP6)
    else:
        conversation = TcpConversation()
    modbus_exchange(conversation)
    return conversation.packets


LINK_TYPES = ["ethernet", "vlan", "qinq", "sll", "sll2", "raw", "null", "null_be", "loop"]


@pytest.mark.parametrize("linktype", LINK_TYPES)
@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])
def test_every_link_type_gives_the_same_events(tmp_path: Path, linktype: str, ipv6: bool) -> None:
    events, stats = replay_packets(tmp_path, _exchange(ipv6), linktype=linktype)
    assert summary(events) == MODBUS_EXCHANGE_EVENTS
    assert events[0].src_ip == ("2001:db8::10" if ipv6 else "10.0.0.10")
    assert events[0].dst_ip == ("2001:db8::20" if ipv6 else "10.0.0.20")
    assert (events[0].src_port, events[0].dst_port) == (49152, 502)
    assert stats.counters["flows"] == 1
    assert stats.counters["modbus_flows"] == 1
    assert not {k for k in stats.counters if "truncated" in k or "bad" in k or "non_ip" in k}


@pytest.mark.parametrize(
    ("linktype", "ipv6"),
    [(LINKTYPE_IPV4, False), (LINKTYPE_IPV6, True), (LINKTYPE_RAW, True)],
    ids=["raw-ipv4-228", "raw-ipv6-229", "raw-101-ipv6"],
)
def test_raw_ip_link_types(tmp_path: Path, linktype: int, ipv6: bool) -> None:
    content = pcap_bytes(frames(_exchange(ipv6), "raw"), linktype)
    events, _ = replay([write(tmp_path / "raw.pcap", content)])
    assert summary(events) == MODBUS_EXCHANGE_EVENTS


@pytest.mark.parametrize(
    ("header", "ipv6"),
    [
        (struct.pack("<I", 2), False),  # AF_INET, little-endian host
        (struct.pack(">I", 2), False),  # AF_INET, big-endian host
        (struct.pack("<I", 24), True),  # AF_INET6 on NetBSD/OpenBSD
        (struct.pack("<I", 28), True),  # ... on FreeBSD
        (struct.pack("<I", 30), True),  # ... on macOS
        (struct.pack(">I", 30), True),
    ],
    ids=["inet-le", "inet-be", "inet6-24", "inet6-28", "inet6-30", "inet6-30-be"],
)
@pytest.mark.parametrize("linktype", [0, 108], ids=["null", "loop"])
def test_bsd_loopback_address_families(
    tmp_path: Path, header: bytes, ipv6: bool, linktype: int
) -> None:
    records = [(ts, header + frame) for ts, frame in frames(_exchange(ipv6), "raw")]
    events, _ = replay([write(tmp_path / "lo.pcap", pcap_bytes(records, linktype))])
    assert summary(events) == MODBUS_EXCHANGE_EVENTS


def test_ethernet_and_vlan_macs_reach_the_event(tmp_path: Path) -> None:
    for linktype in ("ethernet", "qinq"):
        events, _ = replay_packets(tmp_path, _exchange(), name=f"{linktype}.pcap",
                                   linktype=linktype)
        request, response = events[0], events[1]
        assert (request.src_mac, request.dst_mac) == ("02:00:00:00:00:0a", "02:00:00:00:00:14")
        assert (response.src_mac, response.dst_mac) == ("02:00:00:00:00:14", "02:00:00:00:00:0a")


def test_ethernet_padding_is_not_payload(tmp_path: Path) -> None:
    """A short frame padded to 60 bytes: the IP total length ends the payload."""
    conversation = TcpConversation()
    conversation.handshake()
    request = read_holding(1, 0, 1)[:6]  # 6 bytes: the frame gets 0-padded to 60
    conversation.request(request)
    conversation.request(read_holding(1, 0, 1)[6:])
    conversation.reply(read_holding_reply(1, [42]))
    records = []
    for ts, frame in frames(conversation.packets):
        records.append((ts, frame + b"\0" * max(0, 60 - len(frame))))
    events, _ = replay([write(tmp_path / "pad.pcap", pcap_bytes(records))])
    assert summary(events) == [
        (5, "request", 3, 0, None, None),
        (6, "response", 3, 0, [42], None),
    ]


# -- IPv4 fragments -----------------------------------------------------------------


def _ipv4_fragments(packet: Packet, pieces: list[tuple[int, int]],
                    options: list[IPOption] | None = None) -> list[Packet]:
    """Fragments of ``packet`` covering byte ranges [start, end) of its IP
    payload (multiples of 8 except the last end); ranges may overlap."""
    whole = IP(bytes(packet))
    payload = bytes(whole.payload)
    out = []
    for start, end in pieces:
        more = end < len(payload)
        fragment = IP(src=whole.src, dst=whole.dst, id=whole.id, proto=whole.proto,
                      flags="MF" if more else 0, frag=start // 8,
                      options=options or []) / Raw(payload[start:end])
        out.append(IP(bytes(fragment)))
    return out


def _fragmented_write(ipv6: bool = False) -> tuple[list[Packet], int]:
    """A handshake, then a write of 40 registers whose request is fragmented
    by the caller; returns the packets and the index of that request."""
    if ipv6:
        conversation = TcpConversation(client=CLIENT_IP6, server=SERVER_IP6)
    else:
        conversation = TcpConversation()
    conversation.handshake()
    conversation.request(write_registers(5, 200, list(range(1000, 1040))))
    conversation.reply(write_registers_reply(5, 200, 40))
    return conversation.packets, 3


EXPECTED_WRITE = [
    ("request", 16, 200, list(range(1000, 1040)), None),
    ("response", 16, 200, None, None),
]


def _without_packet(rows: list[tuple]) -> list[tuple]:
    return [row[1:] for row in rows]


@pytest.mark.parametrize(
    "order",
    ["in-order", "reversed", "overlapping", "duplicated"],
)
def test_ipv4_fragments(tmp_path: Path, order: str) -> None:
    packets, index = _fragmented_write()
    request = packets[index]
    size = len(bytes(request)) - 20  # TCP header + 20 + 80 bytes of MBAP and PDU
    if order == "in-order":
        fragments = _ipv4_fragments(request, [(0, 48), (48, 96), (96, size)])
    elif order == "reversed":
        fragments = _ipv4_fragments(request, [(96, size), (48, 96), (0, 48)])
    elif order == "overlapping":
        fragments = _ipv4_fragments(request, [(0, 56), (40, 104), (96, size), (16, 32)])
    else:
        fragments = _ipv4_fragments(request, [(0, 48), (0, 48), (48, size), (48, size)])
    packets[index : index + 1] = fragments
    events, stats = replay_packets(tmp_path, packets)

    rows = summary(events)
    assert _without_packet(rows) == EXPECTED_WRITE
    # Frames 4-6 carry the first three fragments; the third fills the last hole.
    assert rows[0][0] == 6
    assert stats.counters["ip_datagrams_reassembled"] == 1
    assert stats.counters.get("ip_fragment_overlaps") == (1 if order == "overlapping" else None)


def test_ipv4_fragment_hole_is_never_delivered(tmp_path: Path) -> None:
    packets, index = _fragmented_write()
    request = packets[index]
    size = len(bytes(request)) - 20
    packets[index : index + 1] = _ipv4_fragments(request, [(0, 48), (96, size)])
    events, stats = replay_packets(tmp_path, packets)
    # The request never became whole; the response still decodes on its own.
    assert _without_packet(summary(events)) == [("response", 16, 200, None, None)]
    assert "ip_datagrams_reassembled" not in stats.counters


def test_ipv4_fragments_with_options_and_first_fragment_short(tmp_path: Path) -> None:
    """An IP header with options (IHL 6) on every fragment, and a first
    fragment of only 8 bytes (not even the whole TCP header)."""
    packets, index = _fragmented_write()
    request = packets[index]
    size = len(bytes(request)) - 20
    options = [IPOption_NOP(), IPOption_NOP(), IPOption_NOP(), IPOption_EOL()]
    fragments = _ipv4_fragments(request, [(0, 8), (8, 64), (64, size)], options)
    assert all(fragment.ihl == 6 for fragment in fragments)
    packets[index : index + 1] = fragments
    events, _ = replay_packets(tmp_path, packets)
    assert _without_packet(summary(events)) == EXPECTED_WRITE


# -- IPv6 ----------------------------------------------------------------------------


def _ipv6_fragments(packet: Packet, pieces: list[tuple[int, int]],
                    before: list[Packet] | None = None,
                    destination_options: bool = False) -> list[Packet]:
    """Fragments of an IPv6 packet. ``before`` are extension headers of the
    unfragmentable part (copied into every fragment); ``destination_options``
    puts one in the fragmentable part (inside the reassembled payload, before
    TCP)."""
    whole = IPv6(bytes(packet))
    transport = bytes(whole.payload)
    next_header = 6
    if destination_options:
        transport = bytes(IPv6ExtHdrDestOpt(nh=6)) + transport
        next_header = 60
    out = []
    for start, end in pieces:
        more = end < len(transport)
        layers: Packet = IPv6(src=whole.src, dst=whole.dst)
        for header in before or []:
            layers = layers / header.copy()
        layers = layers / IPv6ExtHdrFragment(
            nh=next_header, offset=start // 8, m=int(more), id=0xABCD
        ) / Raw(transport[start:end])
        out.append(IPv6(bytes(layers)))
    return out


def test_modbus_over_ipv6(tmp_path: Path) -> None:
    events, _ = replay_packets(tmp_path, _exchange(ipv6=True))
    assert summary(events) == MODBUS_EXCHANGE_EVENTS
    assert events[0].flow.community_id.startswith("1:")


@pytest.mark.parametrize("order", ["in-order", "reversed"])
def test_ipv6_fragments_after_a_hop_by_hop_header(tmp_path: Path, order: str) -> None:
    packets, index = _fragmented_write(ipv6=True)
    request = packets[index]
    size = len(bytes(request)) - 40
    pieces = [(0, 48), (48, 96), (96, size)]
    if order == "reversed":
        pieces.reverse()
    packets[index : index + 1] = _ipv6_fragments(request, pieces,
                                                 before=[IPv6ExtHdrHopByHop()])
    events, stats = replay_packets(tmp_path, packets)
    assert _without_packet(summary(events)) == EXPECTED_WRITE
    assert events[0].src_ip == CLIENT_IP6
    assert stats.counters["ip_datagrams_reassembled"] == 1


def test_ipv6_fragments_with_a_destination_options_header_inside(tmp_path: Path) -> None:
    """A destination-options header after the fragment header belongs to the
    fragmentable part: it is only in the first fragment and must be parsed
    after reassembly, not in every fragment."""
    packets, index = _fragmented_write(ipv6=True)
    request = packets[index]
    size = len(bytes(request)) - 40 + 8
    packets[index : index + 1] = _ipv6_fragments(
        request, [(0, 48), (48, 96), (96, size)],
        before=[IPv6ExtHdrHopByHop(), IPv6ExtHdrRouting()],
        destination_options=True,
    )
    events, stats = replay_packets(tmp_path, packets)
    assert _without_packet(summary(events)) == EXPECTED_WRITE
    assert stats.counters["ip_datagrams_reassembled"] == 1


def test_ipv6_extension_headers_without_fragmentation(tmp_path: Path) -> None:
    packets = _exchange(ipv6=True)
    with_headers = []
    for packet in packets:
        ip = IPv6(bytes(packet))
        rebuilt = IPv6(src=ip.src, dst=ip.dst) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() \
            / ip.payload
        with_headers.append(IPv6(bytes(rebuilt)))
    events, _ = replay_packets(tmp_path, with_headers)
    assert summary(events) == MODBUS_EXCHANGE_EVENTS


def test_atomic_ipv6_fragment_is_a_whole_packet(tmp_path: Path) -> None:
    """A fragment header with offset 0 and M=0 (RFC 8200 §4.5 atomic fragment)."""
    packets = _exchange(ipv6=True)
    packets[3] = _ipv6_fragments(packets[3], [(0, len(bytes(packets[3])) - 40)])[0]
    events, stats = replay_packets(tmp_path, packets)
    assert summary(events) == MODBUS_EXCHANGE_EVENTS
    assert "ip_datagrams_reassembled" not in stats.counters


# -- frames the decoder cannot use are counted, never raised ----------------------


def _decoder() -> tuple[PacketDecoder, list]:
    events: list = []
    return PacketDecoder(FlowTable(registry(), events.append)), events


def test_damaged_and_foreign_frames_are_counted() -> None:
    decoder, events = _decoder()
    good = link_frame(_exchange()[0], "ethernet")
    decoder.frame(0.0, LINKTYPE_ETHERNET, good[:10], 1)
    decoder.frame(0.0, LINKTYPE_ETHERNET, good[:14 + 12], 2)
    arp = bytes(Ether(type=0x0806) / Raw(b"\0" * 28))
    decoder.frame(0.0, LINKTYPE_ETHERNET, arp, 3)
    bad_version = bytearray(good)
    bad_version[14] = 0x35
    decoder.frame(0.0, LINKTYPE_ETHERNET, bytes(bad_version), 4)
    decoder.frame(0.0, 147, good, 5)  # LINKTYPE_USER0
    tcp_cut = link_frame(IP(src="10.0.0.1", dst="10.0.0.2") / Raw(b"\0" * 10), "ethernet")
    tcp_cut = tcp_cut[:23] + b"\x06" + tcp_cut[24:]  # protocol TCP, 10 bytes of header
    decoder.frame(0.0, LINKTYPE_ETHERNET, tcp_cut, 6)
    bad_offset = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(dataofs=15))
    decoder.frame(0.0, LINKTYPE_RAW, bad_offset, 7)
    decoder.frame(0.0, LINKTYPE_RAW, b"", 8)
    decoder.frame(0.0, 0, struct.pack("<I", 7) + b"\0" * 40, 9)  # AF 7 is not IP
    assert events == []
    assert decoder.counters == {
        "truncated_link_header": 2,
        "truncated_ip_header": 1,
        "non_ip_frames": 2,
        "bad_ip_header": 1,
        "unsupported_linktype": 1,
        "truncated_tcp_header": 1,
        "bad_tcp_header": 1,
    }
    assert decoder.unsupported_linktypes == {147}
