"""Build a large, realistic S7comm capture for benchmarks.

Many client connections to a few PLCs on TCP 102: handshake, COTP connect,
setup communication, then HMI polling (read var of DBs and flags, several
items), writes, SZL reads and the odd block list, COTP disconnect and FIN.
Ethernet + IPv4, assembled with struct, so 200 000 packets take seconds.

    python bench/make_s7comm_capture.py OUT.pcap [--packets 200000] [--flows 64]
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from pathlib import Path

from synthetic import ETH, ETH_BACK, PcapWriter, ipv4, main_for, tcp

PORT = 102


def _tpkt_dt(pdu: bytes) -> bytes:
    return struct.pack("!BBH", 3, 0, len(pdu) + 7) + b"\x02\xf0\x80" + pdu


def _s7(rosctr: int, ref: int, params: bytes, data: bytes = b"") -> bytes:
    header = struct.pack("!BBHHHH", 0x32, rosctr, 0, ref, len(params), len(data))
    if rosctr in (2, 3):
        header += b"\x00\x00"
    return _tpkt_dt(header + params + data)


def _item(area: int, db: int, start: int, length: int) -> bytes:
    return struct.pack("!BBBBHHB", 0x12, 10, 0x10, 2, length, db, area) + \
        (start * 8).to_bytes(3, "big")


def _data(value: bytes, ok: int = 0xFF) -> bytes:
    return bytes([ok, 4]) + struct.pack("!H", len(value) * 8) + value


CONNECT = (
    struct.pack("!BBH", 3, 0, 22) + bytes.fromhex("11e00000000100c0010ac1020100c2020102"),
    struct.pack("!BBH", 3, 0, 22) + bytes.fromhex("11d00001000100c0010ac1020100c2020102"),
)


def _exchange(rng: random.Random, ref: int) -> tuple[bytes, bytes]:
    choice = rng.random()
    if choice < 0.6:
        count = rng.choice((1, 1, 2, 4))
        items, values = b"", b""
        for i in range(count):
            length = rng.choice((2, 4, 8, 16, 32))
            items += _item(0x84 if i % 2 == 0 else 0x83, 1 + i, rng.randrange(200), length)
            value = bytes(rng.randrange(256) for _ in range(length))
            values += _data(value) + (b"\0" if length % 2 and i < count - 1 else b"")
        return (_s7(1, ref, bytes([4, count]) + items),
                _s7(3, ref, bytes([4, count]), values))
    if choice < 0.85:
        length = rng.choice((2, 4))
        value = bytes(rng.randrange(256) for _ in range(length))
        return (_s7(1, ref, b"\x05\x01" + _item(0x84, 2, rng.randrange(100), length),
                    bytes([0, 4]) + struct.pack("!H", length * 8) + value),
                _s7(3, ref, b"\x05\x01", b"\xff"))
    if choice < 0.95:
        szl = rng.choice((0x0424, 0x0011, 0x0131))
        request = _s7(7, ref, bytes.fromhex("0001120411440100"),
                      b"\xff\x09\x00\x04" + struct.pack("!HH", szl, 0))
        body = struct.pack("!HHHH", szl, 0, 28, 1) + bytes(28)
        reply = _s7(7, ref, bytes.fromhex("000112081284010000000000"),
                    b"\xff\x09" + struct.pack("!H", len(body)) + body)
        return request, reply
    request = _s7(7, ref, bytes.fromhex("0001120411430100"), b"\x0a\x00\x00\x00")
    body = b"".join(struct.pack("!2sH", kind, rng.randrange(20)) for kind in
                    (b"08", b"0A", b"0B", b"0C", b"0D", b"0E", b"0F"))
    reply = _s7(7, ref, bytes.fromhex("000112081283010000000000"),
                b"\xff\x09" + struct.pack("!H", len(body)) + body)
    return request, reply


class _Connection:
    """One TCP connection's sequence numbers, writing its frames with ``put``."""

    def __init__(self, put: Callable[[bytes], None], client: bytes, server: bytes,
                 sport: int, rng: random.Random) -> None:
        self.put, self.client, self.server, self.sport = put, client, server, sport
        self.cseq, self.sseq = rng.randrange(1 << 32), rng.randrange(1 << 32)
        self.ident = 0

    def _frame(self, to_server: bool, payload: bytes, flags: int) -> None:
        self.ident += 1
        if to_server:
            self.put(ETH + ipv4(self.client, self.server, len(payload), self.ident)
                     + tcp(self.sport, PORT, self.cseq, self.sseq, flags) + payload)
            self.cseq += len(payload)
        else:
            self.put(ETH_BACK + ipv4(self.server, self.client, len(payload), self.ident)
                     + tcp(PORT, self.sport, self.sseq, self.cseq, flags) + payload)
            self.sseq += len(payload)

    def send(self, payload: bytes, to_server: bool) -> None:
        self._frame(to_server, payload, 0x18)

    def open(self) -> None:
        self.put(ETH + ipv4(self.client, self.server, 0, 0)
                 + tcp(self.sport, PORT, self.cseq, 0, 0x02))
        self.put(ETH_BACK + ipv4(self.server, self.client, 0, 0)
                 + tcp(PORT, self.sport, self.sseq, self.cseq + 1, 0x12))
        self.cseq += 1
        self.sseq += 1
        self._frame(True, b"", 0x10)
        self.send(CONNECT[0], True)
        self.send(CONNECT[1], False)
        self.send(_s7(1, 0, bytes.fromhex("f0000001000101e0")), True)
        self.send(_s7(3, 0, bytes.fromhex("f0000001000101e0")), False)

    def close(self) -> None:
        self._frame(True, b"", 0x11)
        self.cseq += 1
        self._frame(False, b"", 0x11)
        self.sseq += 1
        self._frame(True, b"", 0x10)


def build(path: Path, packets: int, flows: int, seed: int = 1) -> int:
    rng = random.Random(seed)
    with PcapWriter(path) as pcap:
        connection = 0
        while pcap.written < packets:
            connection += 1
            client = bytes((10, 0, 1 + connection % flows // 250, 1 + connection % 250))
            server = bytes((10, 0, 100, 1 + connection % 8))
            sport = 20000 + connection % 40000
            conn = _Connection(pcap.put, client, server, sport, rng)
            conn.open()
            for ref in range(1, rng.randrange(200, 2000)):
                if pcap.written >= packets - 4:
                    break
                request, reply = _exchange(rng, ref & 0xFFFF)
                conn.send(request, True)
                conn.send(reply, False)
            conn.close()
    return pcap.written


if __name__ == "__main__":
    main_for(build, __doc__)
