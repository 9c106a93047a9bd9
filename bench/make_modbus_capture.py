"""Build a large, realistic Modbus/TCP capture for benchmarks.

Many client connections (handshake, polling, writes, FIN close) to a few
PLCs, a mix of function codes with request/response pairs, Ethernet + IPv4.
Assembled with struct, so 200 000 packets take a second or two to write.

    python bench/make_modbus_capture.py OUT.pcap [--packets 200000] [--flows 64]
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

from synthetic import ETH, ETH_BACK, PcapWriter, ipv4, main_for, tcp


def _exchange(rng: random.Random, tid: int, unit: int) -> tuple[bytes, bytes]:
    """One request/response pair with a realistic function-code mix."""
    choice = rng.random()
    ref = rng.randrange(0, 2000)
    if choice < 0.55:
        qty = rng.choice((1, 2, 10, 16, 32, 64))
        pdu = struct.pack("!BHH", 3, ref, qty)
        rsp = struct.pack("!BB", 3, qty * 2) + struct.pack(f"!{qty}H", *range(qty))
    elif choice < 0.75:
        qty = rng.choice((8, 16, 32))
        pdu = struct.pack("!BHH", 1, ref, qty)
        rsp = struct.pack("!BB", 1, qty // 8) + bytes(qty // 8)
    elif choice < 0.85:
        pdu = struct.pack("!BHH", 6, ref, rng.randrange(65536))
        rsp = pdu
    elif choice < 0.95:
        qty = rng.choice((2, 4, 8))
        pdu = struct.pack("!BHHB", 16, ref, qty, qty * 2) + struct.pack(f"!{qty}H", *range(qty))
        rsp = struct.pack("!BHH", 16, ref, qty)
    elif choice < 0.98:
        pdu = struct.pack("!BHH", 4, ref, 4)
        rsp = struct.pack("!BB4H", 4, 8, 1, 2, 3, 4)
    else:
        pdu = struct.pack("!BHH", 3, 60000, 1)
        rsp = struct.pack("!BB", 0x83, 2)
    req = struct.pack("!HHHB", tid, 0, len(pdu) + 1, unit) + pdu
    res = struct.pack("!HHHB", tid, 0, len(rsp) + 1, unit) + rsp
    return req, res


def build(path: Path, packets: int, flows: int, seed: int = 1) -> int:
    rng = random.Random(seed)
    with PcapWriter(path) as pcap:
        put = pcap.put
        connection = 0
        while pcap.written < packets:
            connection += 1
            client = bytes((10, 0, 1 + connection % flows // 250, 1 + connection % 250))
            server = bytes((10, 0, 100, 1 + connection % 8))
            sport = 20000 + connection % 40000
            cseq, sseq = rng.randrange(1 << 32), rng.randrange(1 << 32)
            ident = 0
            put(ETH + ipv4(client, server, 0, ident) + tcp(sport, 502, cseq, 0, 0x02))
            put(ETH_BACK + ipv4(server, client, 0, ident) + tcp(502, sport, sseq, cseq + 1, 0x12))
            cseq += 1
            sseq += 1
            put(ETH + ipv4(client, server, 0, ident) + tcp(sport, 502, cseq, sseq, 0x10))
            for tid in range(rng.randrange(200, 2000)):
                if pcap.written >= packets - 4:
                    break
                req, res = _exchange(rng, tid, 1 + tid % 4)
                ident += 1
                put(ETH + ipv4(client, server, len(req), ident)
                    + tcp(sport, 502, cseq, sseq, 0x18) + req)
                cseq += len(req)
                put(ETH_BACK + ipv4(server, client, len(res), ident)
                    + tcp(502, sport, sseq, cseq, 0x18) + res)
                sseq += len(res)
            put(ETH + ipv4(client, server, 0, ident) + tcp(sport, 502, cseq, sseq, 0x11))
            put(ETH_BACK + ipv4(server, client, 0, ident) + tcp(502, sport, sseq, cseq + 1, 0x11))
            put(ETH + ipv4(client, server, 0, ident) + tcp(sport, 502, cseq + 1, sseq + 1, 0x10))
    return pcap.written


if __name__ == "__main__":
    main_for(build, __doc__)
