"""Build a large, realistic Modbus/TCP capture for benchmarks.

Many client connections (handshake, polling, writes, FIN close) to a few
PLCs, a mix of function codes with request/response pairs, Ethernet + IPv4.
Assembled with struct, so 200 000 packets take a second or two to write.

    python bench/make_modbus_capture.py OUT.pcap [--packets 200000] [--flows 64]
"""

from __future__ import annotations

import argparse
import random
import struct
from pathlib import Path

ETH = bytes.fromhex("020000000002" "020000000001") + b"\x08\x00"
ETH_BACK = bytes.fromhex("020000000001" "020000000002") + b"\x08\x00"


def _ip(src: bytes, dst: bytes, payload_len: int, ident: int) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + payload_len, ident & 0xFFFF, 0x4000, 64,
                       6, 0, src, dst)


def _tcp(sport: int, dport: int, seq: int, ack: int, flags: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50,
                       flags, 65535, 0, 0)


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
    ts = 1_700_000_000.0
    written = 0
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))

        def put(frame: bytes) -> None:
            nonlocal ts, written
            ts += 0.00005
            sec = int(ts)
            out.write(struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(frame), len(frame)))
            out.write(frame)
            written += 1

        connection = 0
        while written < packets:
            connection += 1
            client = bytes((10, 0, 1 + connection % flows // 250, 1 + connection % 250))
            server = bytes((10, 0, 100, 1 + connection % 8))
            sport = 20000 + connection % 40000
            cseq, sseq = rng.randrange(1 << 32), rng.randrange(1 << 32)
            ident = 0
            put(ETH + _ip(client, server, 0, ident) + _tcp(sport, 502, cseq, 0, 0x02))
            put(ETH_BACK + _ip(server, client, 0, ident) + _tcp(502, sport, sseq, cseq + 1, 0x12))
            cseq += 1
            sseq += 1
            put(ETH + _ip(client, server, 0, ident) + _tcp(sport, 502, cseq, sseq, 0x10))
            for tid in range(rng.randrange(200, 2000)):
                if written >= packets - 4:
                    break
                req, res = _exchange(rng, tid, 1 + tid % 4)
                ident += 1
                put(ETH + _ip(client, server, len(req), ident)
                    + _tcp(sport, 502, cseq, sseq, 0x18) + req)
                cseq += len(req)
                put(ETH_BACK + _ip(server, client, len(res), ident)
                    + _tcp(502, sport, sseq, cseq, 0x18) + res)
                sseq += len(res)
            put(ETH + _ip(client, server, 0, ident) + _tcp(sport, 502, cseq, sseq, 0x11))
            put(ETH_BACK + _ip(server, client, 0, ident) + _tcp(502, sport, sseq, cseq + 1, 0x11))
            put(ETH + _ip(client, server, 0, ident) + _tcp(sport, 502, cseq + 1, sseq + 1, 0x10))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--flows", type=int, default=64)
    args = parser.parse_args()
    print(f"{build(args.out, args.packets, args.flows)} packets written to {args.out}")


if __name__ == "__main__":
    main()
