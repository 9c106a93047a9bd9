"""Build a large, realistic DNP3 capture for benchmarks.

Many master connections (handshake, polling, commands, FIN close) to a few
outstations: integrity polls answered in several link frames, event polls,
reads of analog inputs, select/operate of relays, with confirms; Ethernet +
IPv4, port 20000. Assembled with struct (CRCs from a table), so 200 000
packets take a few seconds to write.

    python bench/make_dnp3_capture.py OUT.pcap [--packets 200000] [--flows 64]
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

from synthetic import ETH, ETH_BACK, PcapWriter, ipv4, main_for, tcp

PORT = 20000


def _table() -> list[int]:
    table = []
    for value in range(256):
        crc = value
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA6BC if crc & 1 else crc >> 1
        table.append(crc)
    return table


TABLE = _table()


def crc(data: bytes) -> bytes:
    value = 0
    for octet in data:
        value = (value >> 8) ^ TABLE[(value ^ octet) & 0xFF]
    return struct.pack("<H", ~value & 0xFFFF)


def frame(user: bytes, ctl: int, dst: int, src: int) -> bytes:
    header = struct.pack("<BBBBHH", 5, 0x64, 5 + len(user), ctl, dst, src)
    return header + crc(header) + b"".join(
        user[i : i + 16] + crc(user[i : i + 16]) for i in range(0, len(user), 16))


def fragment_frames(fragment: bytes, ctl: int, dst: int, src: int, tseq: int) -> bytes:
    """A fragment in as many link frames as it needs (249 octets each)."""
    chunks = [fragment[i : i + 249] for i in range(0, len(fragment), 249)]
    out = b""
    for number, chunk in enumerate(chunks):
        transport = (tseq + number) & 0x3F | (0x40 if number == 0 else 0) | \
            (0x80 if number == len(chunks) - 1 else 0)
        out += frame(bytes([transport]) + chunk, ctl, dst, src)
    return out


def _exchange(rng: random.Random, seq: int) -> tuple[bytes, bytes]:
    """One request and its response (application fragments)."""
    choice = rng.random()
    app = 0xC0 | seq
    if choice < 0.15:  # integrity poll: binaries, analogs, counters
        request = bytes([app, 1, 60, 2, 6, 60, 3, 6, 60, 4, 6, 60, 1, 6])
        count = rng.choice((20, 40, 60))
        objects = bytes([1, 2, 0, 0, count - 1]) + bytes(rng.choice((1, 0x81))
                                                          for _ in range(count))
        objects += bytes([30, 1, 0, 0, count - 1]) + b"".join(
            struct.pack("<Bi", 1, rng.randrange(-5000, 5000)) for _ in range(count))
        objects += bytes([20, 1, 0, 0, count - 1]) + b"".join(
            struct.pack("<BI", 1, rng.randrange(1 << 20)) for _ in range(count))
    elif choice < 0.65:  # event poll
        request = bytes([app, 1, 60, 2, 6, 60, 3, 6, 60, 4, 6])
        events = rng.randrange(0, 6)
        objects = b""
        if events:
            objects = bytes([2, 2, 0x28]) + struct.pack("<H", events) + b"".join(
                struct.pack("<HBIH", rng.randrange(64), 0x81, rng.randrange(1 << 32), 0x17F)
                for _ in range(events))
            objects += bytes([32, 1, 0x28]) + struct.pack("<H", events) + b"".join(
                struct.pack("<HBi", rng.randrange(64), 1, rng.randrange(1 << 16))
                for _ in range(events))
    elif choice < 0.9:  # read of a few analog inputs
        start = rng.randrange(50)
        stop = start + rng.randrange(1, 10)
        request = bytes([app, 1, 30, 5, 0, start, stop])
        objects = bytes([30, 5, 0, start, stop]) + b"".join(
            struct.pack("<Bf", 1, rng.random() * 100) for _ in range(stop - start + 1))
    else:  # select or operate of a relay
        crob = bytes([12, 1, 0x28]) + struct.pack("<HHBBIIB", 1, rng.randrange(16),
                                                  rng.choice((1, 3, 4, 0x41, 0x81)), 1,
                                                  100, 100, 0)
        request = bytes([app, rng.choice((3, 4, 5))]) + crob
        objects = crob
    response = bytes([app, 0x81, 0, 0]) + objects
    return request, response


def build(path: Path, packets: int, flows: int, seed: int = 1) -> int:
    rng = random.Random(seed)
    with PcapWriter(path) as pcap:
        put = pcap.put
        connection = 0
        while pcap.written < packets:
            connection += 1
            client = bytes((10, 0, 1 + connection % flows // 250, 1 + connection % 250))
            server = bytes((10, 0, 100, 1 + connection % 8))
            outstation = 10 + connection % 8
            sport = 30000 + connection % 30000
            cseq, sseq = rng.randrange(1 << 32), rng.randrange(1 << 32)
            ident = 0
            put(ETH + ipv4(client, server, 0, ident) + tcp(sport, PORT, cseq, 0, 0x02))
            put(ETH_BACK + ipv4(server, client, 0, ident) + tcp(PORT, sport, sseq, cseq + 1, 0x12))
            cseq += 1
            sseq += 1
            put(ETH + ipv4(client, server, 0, ident) + tcp(sport, PORT, cseq, sseq, 0x10))
            master_tseq = outstation_tseq = 0
            for number in range(rng.randrange(200, 2000)):
                if pcap.written >= packets - 4:
                    break
                request, response = _exchange(rng, number & 0x0F)
                req = fragment_frames(request, 0xC4, outstation, 1, master_tseq)
                master_tseq = (master_tseq + 1) & 0x3F
                res = fragment_frames(response, 0x44, 1, outstation, outstation_tseq)
                outstation_tseq = (outstation_tseq + (len(response) + 248) // 249) & 0x3F
                ident += 1
                put(ETH + ipv4(client, server, len(req), ident)
                    + tcp(sport, PORT, cseq, sseq, 0x18) + req)
                cseq += len(req)
                # The response, one TCP segment per link frame as stacks send it.
                offset = 0
                while offset < len(res):
                    size = 10 + min(250, res[offset + 2] - 5)
                    size += 2 * ((size - 10 + 15) // 16)
                    segment = res[offset : offset + size]
                    put(ETH_BACK + ipv4(server, client, len(segment), ident)
                        + tcp(PORT, sport, sseq, cseq, 0x18) + segment)
                    sseq += len(segment)
                    offset += size
            put(ETH + ipv4(client, server, 0, ident) + tcp(sport, PORT, cseq, sseq, 0x11))
            put(ETH_BACK + ipv4(server, client, 0, ident) + tcp(PORT, sport, sseq, cseq + 1, 0x11))
            put(ETH + ipv4(client, server, 0, ident) + tcp(sport, PORT, cseq + 1, sseq + 1, 0x10))
    return pcap.written


if __name__ == "__main__":
    main_for(build, __doc__)
