"""Build a large, realistic EtherNet/IP capture for benchmarks.

Many HMI connections (handshake, RegisterSession, then a
mix of explicit messages, FIN close) to a few Logix-like controllers:
connected Read Tag / Write Tag over SendUnitData, unconnected Read Tag and
Get Attribute Single through Unconnected Send, Multiple Service Packets of
reads, Identity reads; plus implicit I/O on UDP 2222 (about a tenth of the
packets). Ethernet + IPv4, assembled with struct.

    python bench/make_enip_capture.py OUT.pcap [--packets 200000] [--flows 64]
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from pathlib import Path

from synthetic import ETH, ETH_BACK, UDP, PcapWriter, ipv4, main_for, tcp, udp

TAGS = (b"Line1_Speed", b"Tank_Level", b"Valve_Cmd", b"Motor_Run", b"Setpoint")


def _encap(command: int, session: int, data: bytes, context: int = 0) -> bytes:
    return struct.pack("<HHIIQI", command, len(data), session, 0, context, 0) + data


def _rr(session: int, cip: bytes, context: int) -> bytes:
    cpf = struct.pack("<IHHHHHH", 0, 10, 2, 0, 0, 0xB2, len(cip)) + cip
    return _encap(0x6F, session, cpf, context)


def _unit(session: int, connid: int, sequence: int, cip: bytes) -> bytes:
    cpf = struct.pack("<IHHHHIHHH", 0, 0, 2, 0xA1, 4, connid, 0xB1, len(cip) + 2, sequence)
    return _encap(0x70, session, cpf + cip)


def _symbol(name: bytes) -> bytes:
    path = bytes([0x91, len(name)]) + name + (b"\0" if len(name) & 1 else b"")
    return bytes([len(path) // 2]) + path


def _unconnected(cip: bytes) -> bytes:
    send = bytes([0x52, 0x02, 0x20, 0x06, 0x24, 0x01, 0x05, 0x9D]) + struct.pack("<H", len(cip))
    return send + cip + (b"\0" if len(cip) & 1 else b"") + bytes([1, 0, 1, 0])


def _exchange(rng: random.Random) -> tuple[bytes, bytes, bool]:
    """One CIP request/reply pair; True when it goes over the connection."""
    choice = rng.random()
    tag = rng.choice(TAGS)
    if choice < 0.45:
        count = rng.choice((1, 1, 4, 10))
        request = bytes([0x4C]) + _symbol(tag) + struct.pack("<H", count)
        reply = bytes([0xCC, 0, 0, 0]) + struct.pack("<H", 0xC4) + bytes(4 * count)
        return request, reply, True
    if choice < 0.60:
        request = bytes([0x4D]) + _symbol(tag) + struct.pack("<HHi", 0xC4, 1,
                                                             rng.randrange(-1000, 1000))
        return request, bytes([0xCD, 0, 0, 0]), True
    if choice < 0.80:
        request = bytes([0x4C]) + _symbol(tag) + struct.pack("<H", 1)
        reply = bytes([0xCC, 0, 0, 0]) + struct.pack("<Hf", 0xCA, rng.random() * 100)
        return _unconnected(request), reply, False
    if choice < 0.92:
        names = rng.sample(TAGS, 3)
        services = [bytes([0x4C]) + _symbol(n) + struct.pack("<H", 1) for n in names]
        replies = [bytes([0xCC, 0, 0, 0]) + struct.pack("<Hi", 0xC4, 7) for _ in names]
        return _msp(services, 0x0A), _msp(replies, 0x8A, reply=True), True
    request = bytes([0x0E, 0x03, 0x20, 0x01, 0x24, 0x01, 0x30, 0x07])
    reply = bytes([0x8E, 0, 0, 0, 20]) + b"1756-L61/B LOGIX5561"
    return _unconnected(request), reply, False


def _msp(services: list[bytes], service: int, reply: bool = False) -> bytes:
    head = bytes([service, 0, 0, 0]) if reply else bytes([service, 0x02, 0x20, 0x02, 0x24, 0x01])
    offsets, body = [], b""
    for one in services:
        offsets.append(2 + 2 * len(services) + len(body))
        body += one
    return head + struct.pack(f"<H{len(services)}H", len(services), *offsets) + body


class _Connection:
    """One HMI's TCP connection to a controller, and the controller's I/O
    datagrams to the HMI's host."""

    def __init__(self, put: Callable[[bytes], None], rng: random.Random, number: int,
                 flows: int) -> None:
        self.put = put
        self.client = bytes((10, 0, 1 + number % flows // 250, 1 + number % 250))
        self.server = bytes((10, 0, 100, 1 + number % 8))
        self.sport = 20000 + number % 40000
        self.cseq, self.sseq = rng.randrange(1 << 32), rng.randrange(1 << 32)
        self.session = rng.randrange(1, 1 << 32)
        self.connid = rng.randrange(1 << 32)
        self.ident = 0

    def _segment(self, from_client: bool, flags: int, data: bytes = b"") -> None:
        if from_client:
            self.put(ETH + ipv4(self.client, self.server, len(data), self.ident)
                     + tcp(self.sport, 44818, self.cseq, self.sseq, flags) + data)
        else:
            self.put(ETH_BACK + ipv4(self.server, self.client, len(data), self.ident)
                     + tcp(44818, self.sport, self.sseq, self.cseq, flags) + data)

    def open(self) -> None:
        self.put(ETH + ipv4(self.client, self.server, 0, 0)
                 + tcp(self.sport, 44818, self.cseq, 0, 0x02))
        self.put(ETH_BACK + ipv4(self.server, self.client, 0, 0)
                 + tcp(44818, self.sport, self.sseq, self.cseq + 1, 0x12))
        self.cseq += 1
        self.sseq += 1
        self._segment(True, 0x10)
        self.send(_encap(0x65, 0, struct.pack("<HH", 1, 0)), True)
        self.send(_encap(0x65, self.session, struct.pack("<HH", 1, 0)), False)

    def send(self, data: bytes, from_client: bool) -> None:
        self.ident += 1
        self._segment(from_client, 0x18, data)
        if from_client:
            self.cseq += len(data)
        else:
            self.sseq += len(data)

    def io(self, sequence: int) -> None:
        item = struct.pack("<HHHIIHH", 2, 0x8002, 8, self.connid, sequence, 0xB1, 10)
        item += struct.pack("<HI", sequence & 0xFFFF, 1) + bytes(4)
        self.put(ETH_BACK + ipv4(self.server, self.client, len(item), self.ident, UDP)
                 + udp(2222, 2222, len(item)) + item)

    def close(self) -> None:
        self._segment(True, 0x11)
        self.put(ETH_BACK + ipv4(self.server, self.client, 0, 0)
                 + tcp(44818, self.sport, self.sseq, self.cseq + 1, 0x11))
        self.cseq += 1
        self.sseq += 1
        self._segment(True, 0x10)


def build(path: Path, packets: int, flows: int, seed: int = 1) -> int:
    rng = random.Random(seed)
    with PcapWriter(path) as pcap:
        connection = 0
        io_sequence = 0
        while pcap.written < packets:
            connection += 1
            link = _Connection(pcap.put, rng, connection, flows)
            link.open()
            for sequence in range(rng.randrange(150, 1500)):
                if pcap.written >= packets - 8:
                    break
                request, reply, connected = _exchange(rng)
                if connected:
                    link.send(_unit(link.session, link.connid, sequence, request), True)
                    link.send(_unit(link.session, link.connid ^ 0xFFFF, sequence, reply), False)
                else:
                    link.send(_rr(link.session, request, sequence), True)
                    link.send(_rr(link.session, reply, sequence), False)
                if sequence % 4 == 0:  # the controller's cyclic I/O to its adapter
                    io_sequence += 1
                    link.io(io_sequence)
            link.close()
    return pcap.written


if __name__ == "__main__":
    main_for(build, __doc__)
