"""Builders for test captures: Modbus/TCP ADUs as raw bytes, TCP conversations
as scapy packets, link-layer framing, and pcap / pcapng files assembled byte by
byte (so a test controls endianness, timestamp resolution and damage).

A test describes traffic the way a person reads a capture: "the client sends a
read of holding registers 100-101, the server answers 0x1234, 0x5678", and
checks the events the sensor decodes from it with `summary()`.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, Dot1AD, Dot1Q, Ether
from scapy.packet import Packet, Raw

from sensor.event import IcsEvent
from sensor.runtime import Sensor, Stats

CLIENT_IP = "10.0.0.10"
SERVER_IP = "10.0.0.20"
CLIENT_IP6 = "2001:db8::10"
SERVER_IP6 = "2001:db8::20"
CLIENT_MAC = "02:00:00:00:00:0a"
SERVER_MAC = "02:00:00:00:00:14"
CLIENT_PORT = 49152
MODBUS_PORT = 502
START_TS = 1_700_000_000.0

# Link-layer header types (https://www.tcpdump.org/linktypes.html).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276


# -- Modbus/TCP ADUs (Modbus Messaging on TCP/IP V1.0b §3.1.3 MBAP header) --------


def adu(trans_id: int, pdu: bytes, unit: int = 1, *, prot_id: int = 0,
        length: int | None = None) -> bytes:
    """An MBAP header and ``pdu``; ``length`` defaults to the true one."""
    if length is None:
        length = len(pdu) + 1
    return struct.pack("!HHHB", trans_id, prot_id, length, unit) + pdu


def read_holding(trans_id: int, address: int, count: int, unit: int = 1) -> bytes:
    return adu(trans_id, struct.pack("!BHH", 3, address, count), unit)


def read_holding_reply(trans_id: int, values: Sequence[int], unit: int = 1) -> bytes:
    return adu(
        trans_id, struct.pack(f"!BB{len(values)}H", 3, 2 * len(values), *values), unit
    )


def write_register(trans_id: int, address: int, value: int, unit: int = 1) -> bytes:
    """Function 6; the normal response is an echo of the request."""
    return adu(trans_id, struct.pack("!BHH", 6, address, value), unit)


def write_registers(trans_id: int, address: int, values: Sequence[int], unit: int = 1) -> bytes:
    return adu(
        trans_id,
        struct.pack(f"!BHHB{len(values)}H", 16, address, len(values), 2 * len(values), *values),
        unit,
    )


def write_registers_reply(trans_id: int, address: int, count: int, unit: int = 1) -> bytes:
    return adu(trans_id, struct.pack("!BHH", 16, address, count), unit)


# -- TCP conversations ---------------------------------------------------------


class TcpConversation:
    """A client and a server exchanging TCP segments; every call appends scapy
    packets (network layer up) to ``packets`` in capture order and keeps both
    sides' sequence numbers."""

    def __init__(
        self,
        client: str = CLIENT_IP,
        server: str = SERVER_IP,
        client_port: int = CLIENT_PORT,
        server_port: int = MODBUS_PORT,
        client_isn: int = 1000,
        server_isn: int = 50000,
    ) -> None:
        self.client = client
        self.server = server
        self.client_port = client_port
        self.server_port = server_port
        self.client_seq = client_isn
        self.server_seq = server_isn
        self.packets: list[Packet] = []
        self.ip_id = 1

    def _ip(self, from_client: bool) -> Packet:
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        if ":" in src:
            return IPv6(src=src, dst=dst)
        self.ip_id += 1
        return IP(src=src, dst=dst, id=self.ip_id)

    def segment(
        self,
        from_client: bool,
        payload: bytes = b"",
        flags: str = "PA",
        *,
        seq: int | None = None,
        ack: int | None = None,
        advance: bool = True,
        record: bool = True,
    ) -> Packet:
        """One segment; its seq defaults to the sender's next byte, which it
        advances by the payload (and SYN/FIN) unless ``advance`` is false."""
        if from_client:
            sport, dport = self.client_port, self.server_port
            own, peer = self.client_seq, self.server_seq
        else:
            sport, dport = self.server_port, self.client_port
            own, peer = self.server_seq, self.client_seq
        if seq is None:
            seq = own
        if ack is None:
            ack = peer if "A" in flags else 0
        packet = self._ip(from_client) / TCP(
            sport=sport, dport=dport, flags=flags, seq=seq & 0xFFFFFFFF,
            ack=ack & 0xFFFFFFFF, window=8192,
        )
        if payload:
            packet = packet / Raw(payload)
        if advance:
            used = len(payload) + ("S" in flags) + ("F" in flags)
            if from_client:
                self.client_seq = (seq + used) & 0xFFFFFFFF
            else:
                self.server_seq = (seq + used) & 0xFFFFFFFF
        if record:
            self.packets.append(packet)
        return packet

    def handshake(self) -> list[Packet]:
        return [
            self.segment(True, flags="S"),
            self.segment(False, flags="SA"),
            self.segment(True, flags="A"),
        ]

    def request(self, payload: bytes, **kwargs: Any) -> Packet:
        return self.segment(True, payload, **kwargs)

    def reply(self, payload: bytes, **kwargs: Any) -> Packet:
        return self.segment(False, payload, **kwargs)

    def fin(self) -> list[Packet]:
        """Orderly close: client FIN, server FIN, client's last ACK."""
        return [
            self.segment(True, flags="FA"),
            self.segment(False, flags="FA"),
            self.segment(True, flags="A"),
        ]

    def rst(self, from_client: bool = True) -> Packet:
        return self.segment(from_client, flags="RA")


def modbus_exchange(conversation: TcpConversation) -> None:
    """The reference exchange used across link-layer, reader and fragment
    tests: a read of two holding registers and a register write."""
    conversation.handshake()
    conversation.request(read_holding(1, 100, 2))
    conversation.reply(read_holding_reply(1, [0x1234, 0x5678]))
    conversation.request(write_register(2, 7, 99))
    conversation.reply(write_register(2, 7, 99))
    conversation.fin()


# What `summary()` gives for `modbus_exchange`: packet numbers count the
# three handshake packets first.
MODBUS_EXCHANGE_EVENTS = [
    (4, "request", 3, 100, None, None),
    (5, "response", 3, 100, [0x1234, 0x5678], None),
    (6, "request", 6, 7, [99], None),
    (7, "response", 6, 7, [99], None),
]


def summary(events: Iterable[IcsEvent]) -> list[tuple[Any, ...]]:
    """(packet, direction, func_code, reference_num, register values, malformed)
    per event: what a person checks in the decoder's output."""
    return [
        (
            e.packet,
            e.direction,
            e.fields.get("func_code"),
            e.fields.get("reference_num"),
            e.fields.get("regval_uint16"),
            e.malformed,
        )
        for e in events
    ]


# -- link layers -----------------------------------------------------------------


def _ethertype(network: bytes) -> int:
    return 0x86DD if network[0] >> 4 == 6 else 0x0800


def link_frame(packet: Packet | bytes, linktype: str, from_client: bool = True) -> bytes:
    """Frame a network-layer packet for one of the link types by name:
    ethernet, vlan, qinq, sll, sll2, raw, null, null_be, loop."""
    network = bytes(packet)
    ethertype = _ethertype(network)
    src, dst = (CLIENT_MAC, SERVER_MAC) if from_client else (SERVER_MAC, CLIENT_MAC)
    if linktype == "ethernet":
        return bytes(Ether(src=src, dst=dst, type=ethertype) / Raw(network))
    if linktype == "vlan":
        return bytes(Ether(src=src, dst=dst) / Dot1Q(vlan=10, type=ethertype) / Raw(network))
    if linktype == "qinq":
        return bytes(
            Ether(src=src, dst=dst, type=0x88A8)
            / Dot1AD(vlan=100, type=0x8100)
            / Dot1Q(vlan=10, type=ethertype)
            / Raw(network)
        )
    if linktype == "sll":
        return bytes(
            CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6,
                        src=bytes.fromhex(src.replace(":", "")) + b"\0\0", proto=ethertype)
            / Raw(network)
        )
    if linktype == "sll2":
        # protocol, reserved, interface index, ARPHRD, packet type, address length, address
        return struct.pack("!HHIHBB8s", ethertype, 0, 2, 1, 0, 6,
                           bytes.fromhex(src.replace(":", ""))) + network
    if linktype == "raw":
        return network
    ipv6 = ethertype == 0x86DD
    if linktype == "null":  # host order, written by a little-endian machine
        return struct.pack("<I", 30 if ipv6 else 2) + network
    if linktype == "null_be":  # a big-endian machine; 24 is NetBSD/OpenBSD's AF_INET6
        return struct.pack(">I", 24 if ipv6 else 2) + network
    if linktype == "loop":  # OpenBSD loop: always network order
        return struct.pack(">I", 24 if ipv6 else 2) + network
    raise ValueError(linktype)


LINKTYPE_OF = {
    "ethernet": LINKTYPE_ETHERNET, "vlan": LINKTYPE_ETHERNET, "qinq": LINKTYPE_ETHERNET,
    "sll": LINKTYPE_LINUX_SLL, "sll2": LINKTYPE_LINUX_SLL2, "raw": LINKTYPE_RAW,
    "null": LINKTYPE_NULL, "null_be": LINKTYPE_NULL, "loop": LINKTYPE_LOOP,
}


def client_side(packet: Packet) -> bool:
    """Did the client send this packet? (It talks from the ephemeral port.)"""
    layer = packet.getlayer(TCP) or packet.getlayer(UDP)
    return layer is None or layer.dport in (MODBUS_PORT, 5020)


def frames(packets: Iterable[Packet | bytes], linktype: str = "ethernet",
           start: float = START_TS, step: float = 0.001) -> list[tuple[float, bytes]]:
    """(timestamp, frame) pairs, one millisecond apart by default."""
    out = []
    for i, packet in enumerate(packets):
        from_client = client_side(packet) if isinstance(packet, Packet) else True
        out.append((start + i * step, link_frame(packet, linktype, from_client)))
    return out


# -- capture files ---------------------------------------------------------------


def pcap_bytes(
    records: Iterable[tuple[float, bytes]],
    linktype: int = LINKTYPE_ETHERNET,
    *,
    endian: str = "<",
    nanoseconds: bool = False,
    snaplen: int = 262144,
) -> bytes:
    """A classic pcap file (https://datatracker.ietf.org/doc/draft-ietf-opsawg-pcap/)."""
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    scale = 1_000_000_000 if nanoseconds else 1_000_000
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for ts, data in records:
        ticks = round(ts * scale)
        sec, frac = divmod(ticks, scale)
        out.append(struct.pack(endian + "IIII", sec, frac, len(data), len(data)))
        out.append(data)
    return b"".join(out)


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def pcapng_block(block_type: int, body: bytes, endian: str = "<") -> bytes:
    body = _pad4(body)
    length = 12 + len(body)
    return struct.pack(endian + "II", block_type, length) + body + struct.pack(
        endian + "I", length
    )


def pcapng_shb(endian: str = "<") -> bytes:
    return pcapng_block(0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1), endian)


def pcapng_idb(linktype: int, tsresol: int | None = None, endian: str = "<") -> bytes:
    body = struct.pack(endian + "HHI", linktype, 0, 262144)
    if tsresol is not None:
        body += struct.pack(endian + "HH", 9, 1) + _pad4(bytes([tsresol]))
        body += struct.pack(endian + "HH", 0, 0)
    return pcapng_block(1, body, endian)


def tsresol_scale(tsresol: int | None) -> int:
    """Ticks per second of an interface's if_tsresol (default 10^-6)."""
    if tsresol is None:
        return 1_000_000
    if tsresol & 0x80:
        return 2 ** (tsresol & 0x7F)
    return 10 ** tsresol


def pcapng_epb(interface: int, ts: float, data: bytes, tsresol: int | None = None,
               endian: str = "<") -> bytes:
    ticks = round(ts * tsresol_scale(tsresol))
    body = struct.pack(endian + "IIIII", interface, ticks >> 32, ticks & 0xFFFFFFFF,
                       len(data), len(data)) + data
    return pcapng_block(6, body, endian)


def pcapng_bytes(
    interfaces: Sequence[tuple[int, int | None]],
    records: Iterable[tuple[int, float, bytes]],
    *,
    endian: str = "<",
) -> bytes:
    """A pcapng section: ``interfaces`` are (linktype, if_tsresol or None);
    ``records`` are (interface index, timestamp, frame)."""
    out = [pcapng_shb(endian)]
    out += [pcapng_idb(linktype, tsresol, endian) for linktype, tsresol in interfaces]
    for interface, ts, data in records:
        out.append(pcapng_epb(interface, ts, data, interfaces[interface][1], endian))
    return b"".join(out)


def write(path: Path, content: bytes, *, compress: bool = False) -> Path:
    path.write_bytes(gzip.compress(content) if compress else content)
    return path


def write_pcap(path: Path, packets: Iterable[Packet | bytes], linktype: str = "ethernet",
               **kwargs: Any) -> Path:
    """The packets framed for ``linktype`` in a little-endian µs pcap."""
    return write(path, pcap_bytes(frames(packets, linktype), LINKTYPE_OF[linktype], **kwargs))


# -- running the sensor ------------------------------------------------------------


def replay(paths: Iterable[Path | str], **sensor_args: Any) -> tuple[list[IcsEvent], Stats]:
    """Replay captures through a `Sensor`; return every event and the stats."""
    events: list[IcsEvent] = []
    sensor = Sensor(events.append, **sensor_args)
    stats = sensor.replay(paths)
    return events, stats


def replay_packets(tmp_path: Path, packets: Iterable[Packet | bytes], name: str = "t.pcap",
                   linktype: str = "ethernet",
                   **sensor_args: Any) -> tuple[list[IcsEvent], Stats]:
    return replay([write_pcap(tmp_path / name, packets, linktype)], **sensor_args)
