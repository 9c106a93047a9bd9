"""Link, network and transport decoding of one frame, straight into the flow table.

Link types: Ethernet (with 802.1Q / 802.1ad / QinQ tags), Linux cooked v1 and
v2, raw IP, BSD null/loopback and OpenBSD loop. Network: IPv4 with fragment
reassembly, IPv6 with extension headers and fragments. Transport: TCP, UDP.
Frames that cannot be decoded are counted by reason, never raised.
"""

from __future__ import annotations

import struct
from typing import Final

from sensor.capture.ipfrag import FragmentReassembler
from sensor.flows.table import FlowTable

LINKTYPE_NULL: Final = 0
LINKTYPE_ETHERNET: Final = 1
LINKTYPE_RAW_OLD: Final = 12
LINKTYPE_RAW_OLD2: Final = 14
LINKTYPE_RAW: Final = 101
LINKTYPE_LOOP: Final = 108
LINKTYPE_LINUX_SLL: Final = 113
LINKTYPE_IPV4: Final = 228
LINKTYPE_IPV6: Final = 229
LINKTYPE_LINUX_SLL2: Final = 276
SUPPORTED_LINKTYPES: Final = frozenset(
    {LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW_OLD, LINKTYPE_RAW_OLD2, LINKTYPE_RAW,
     LINKTYPE_LOOP, LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2}
)

ETHERTYPE_IPV4: Final = 0x0800
ETHERTYPE_IPV6: Final = 0x86DD
VLAN_ETHERTYPES: Final = frozenset({0x8100, 0x88A8, 0x9100})

IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
IPV6_FRAGMENT: Final = 44
IPV6_AH: Final = 51
# Extension headers skipped on the way to the transport header (the fragment
# header is handled on its own): hop-by-hop, routing, destination options,
# AH, mobility, HIP, shim6.
IPV6_EXTENSION_HEADERS: Final = frozenset({0, 43, 60, IPV6_AH, 135, 139, 140})

_IPV4 = struct.Struct("!BxHHHxB2x4s4s")
_ETHERNET_IPV4_TCP = struct.Struct("!12xHBxH2xHxB2x4s4sHHIIBB")
_IPV6 = struct.Struct("!4xHBx16s16s")
_TCP = struct.Struct("!HHIIBB")
_UDP = struct.Struct("!HHH")
_U16 = struct.Struct("!H")


class PacketDecoder:
    """Decodes frames and feeds TCP segments and UDP datagrams to a `FlowTable`."""

    def __init__(self, flows: FlowTable) -> None:
        self.flows = flows
        self.fragments = FragmentReassembler()
        self.counters: dict[str, int] = {}
        self.unsupported_linktypes: set[int] = set()

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def frame(self, ts: float, linktype: int, data: bytes, number: int) -> None:
        if linktype == LINKTYPE_ETHERNET and len(data) >= 54:
            # The common case in one unpack: untagged Ethernet, IPv4 without
            # options or fragmentation, TCP.
            (ethertype, vihl, total_len, frag, proto, src, dst, sport, dport, seq, ack,
             data_offset, flags) = _ETHERNET_IPV4_TCP.unpack_from(data)
            if ethertype == ETHERTYPE_IPV4 and vihl == 0x45 and proto == IPPROTO_TCP and not (
                    frag & 0x3FFF):
                header_end = 34 + (data_offset >> 4) * 4
                end = 14 + total_len
                if end > len(data):
                    self._count("truncated_ip_packets")
                    end = len(data)
                if header_end >= 54 and header_end <= end:
                    self.flows.tcp_packet(ts, number, src, dst, sport, dport, seq, ack, flags,
                                          data[header_end:end], data, 0)
                    return
        mac_offset = -1
        if linktype == LINKTYPE_ETHERNET:
            if len(data) < 14:
                self._count("truncated_link_header")
                return
            ethertype = (data[12] << 8) | data[13]
            offset = 14
            mac_offset = 0
            while ethertype in VLAN_ETHERTYPES:
                if len(data) < offset + 4:
                    self._count("truncated_link_header")
                    return
                ethertype = (data[offset + 2] << 8) | data[offset + 3]
                offset += 4
        elif linktype == LINKTYPE_LINUX_SLL:
            if len(data) < 16:
                self._count("truncated_link_header")
                return
            ethertype = (data[14] << 8) | data[15]
            offset = 16
        elif linktype == LINKTYPE_LINUX_SLL2:
            if len(data) < 20:
                self._count("truncated_link_header")
                return
            ethertype = (data[0] << 8) | data[1]
            offset = 20
        elif linktype in (LINKTYPE_RAW, LINKTYPE_RAW_OLD, LINKTYPE_RAW_OLD2, LINKTYPE_IPV4,
                          LINKTYPE_IPV6):
            if not data:
                self._count("truncated_link_header")
                return
            ethertype = ETHERTYPE_IPV6 if data[0] >> 4 == 6 else ETHERTYPE_IPV4
            offset = 0
        elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
            if len(data) < 4:
                self._count("truncated_link_header")
                return
            family = data[0] | data[3]  # host order: the value sits in one end byte
            ethertype = ETHERTYPE_IPV4 if family == 2 else ETHERTYPE_IPV6
            if family not in (2, 10, 24, 28, 30):
                self._count("non_ip_frames")
                return
            offset = 4
        else:
            self.unsupported_linktypes.add(linktype)
            self._count("unsupported_linktype")
            return
        if ethertype == ETHERTYPE_IPV4:
            self._ipv4(ts, number, data, offset, mac_offset)
        elif ethertype == ETHERTYPE_IPV6:
            self._ipv6(ts, number, data, offset, mac_offset)
        else:
            self._count("non_ip_frames")

    def _ipv4(self, ts: float, number: int, data: bytes, offset: int, mac_offset: int) -> None:
        if len(data) < offset + 20:
            self._count("truncated_ip_header")
            return
        vihl, total_len, ident, frag, proto, src, dst = _IPV4.unpack_from(data, offset)
        ihl = (vihl & 0x0F) * 4
        if vihl >> 4 != 4 or ihl < 20 or total_len < ihl:
            self._count("bad_ip_header")
            return
        end = offset + total_len
        if end > len(data):
            self._count("truncated_ip_packets")
            end = len(data)
        start = offset + ihl
        if frag & 0x3FFF:
            whole = self.fragments.add(
                ts, (src, dst, ident, proto), (frag & 0x1FFF) * 8, bool(frag & 0x2000),
                data[start:end],
            )
            if whole is None:
                return
            self._transport(ts, number, proto, src, dst, whole, 0, len(whole), data, mac_offset)
            return
        self._transport(ts, number, proto, src, dst, data, start, end, data, mac_offset)

    def _ipv6(self, ts: float, number: int, data: bytes, offset: int, mac_offset: int) -> None:
        if len(data) < offset + 40:
            self._count("truncated_ip_header")
            return
        payload_len, next_header, src, dst = _IPV6.unpack_from(data, offset)
        start = offset + 40
        end = start + payload_len
        if end > len(data):
            self._count("truncated_ip_packets")
            end = len(data)
        buf = data
        while True:
            if next_header in IPV6_EXTENSION_HEADERS:
                if start + 8 > end:
                    self._count("truncated_ip_header")
                    return
                header = next_header
                next_header = buf[start]
                if header == IPV6_AH:
                    start += (buf[start + 1] + 2) * 4
                else:
                    start += (buf[start + 1] + 1) * 8
            elif next_header == IPV6_FRAGMENT:
                if start + 8 > end:
                    self._count("truncated_ip_header")
                    return
                next_header = buf[start]
                (frag,) = _U16.unpack_from(buf, start + 2)
                ident = int.from_bytes(buf[start + 4 : start + 8], "big")
                start += 8
                if frag & 0xFFF9:  # an offset or the M flag: a real fragment
                    # Headers after this one belong to the fragmentable part
                    # (RFC 8200 §4.5): parse them in the reassembled payload.
                    whole = self.fragments.add(
                        ts, (src, dst, ident, next_header), frag & 0xFFF8, bool(frag & 1),
                        buf[start:end],
                    )
                    if whole is None:
                        return
                    buf, start, end = whole, 0, len(whole)
            else:
                break
        self._transport(ts, number, next_header, src, dst, buf, start, end, data, mac_offset)

    def _transport(
        self,
        ts: float,
        number: int,
        proto: int,
        src: bytes,
        dst: bytes,
        data: bytes,
        start: int,
        end: int,
        frame: bytes,
        mac_offset: int,
    ) -> None:
        if proto == IPPROTO_TCP:
            if end - start < 20:
                self._count("truncated_tcp_header")
                return
            sport, dport, seq, ack, data_offset, flags = _TCP.unpack_from(data, start)
            header_len = (data_offset >> 4) * 4
            if header_len < 20 or start + header_len > end:
                self._count("bad_tcp_header")
                return
            self.flows.tcp_packet(
                ts, number, src, dst, sport, dport, seq, ack, flags,
                data[start + header_len : end], frame, mac_offset,
            )
        elif proto == IPPROTO_UDP:
            if end - start < 8:
                self._count("truncated_udp_header")
                return
            sport, dport, length = _UDP.unpack_from(data, start)
            if length >= 8 and start + length < end:
                end = start + length
            self.flows.udp_packet(
                ts, number, src, dst, sport, dport, data[start + 8 : end], frame, mac_offset
            )
        else:
            self._count("other_ip_protocols")
