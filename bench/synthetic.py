"""What the benchmark capture builders (bench/make_*_capture.py) share:
a pcap writer, Ethernet/IPv4/TCP/UDP headers and the command line."""

from __future__ import annotations

import argparse
import struct
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

ETH = bytes.fromhex("020000000002" "020000000001") + b"\x08\x00"
ETH_BACK = bytes.fromhex("020000000001" "020000000002") + b"\x08\x00"
TCP = 6
UDP = 17


class PcapWriter:
    """A classic pcap file (Ethernet, microseconds), one frame every 50 µs."""

    def __init__(self, path: Path) -> None:
        self.out = path.open("wb")
        self.out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        self.ts = 1_700_000_000.0
        self.written = 0

    def put(self, frame: bytes) -> None:
        self.ts += 0.00005
        sec = int(self.ts)
        self.out.write(struct.pack("<IIII", sec, int((self.ts - sec) * 1e6), len(frame),
                                   len(frame)))
        self.out.write(frame)
        self.written += 1

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.out.close()


def ipv4(src: bytes, dst: bytes, payload_len: int, ident: int, proto: int = TCP) -> bytes:
    """IPv4 header; payload_len counts the octets after the TCP or UDP header."""
    length = 20 + (20 if proto == TCP else 8) + payload_len
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, length, ident & 0xFFFF, 0x4000, 64, proto, 0,
                       src, dst)


def tcp(sport: int, dport: int, seq: int, ack: int, flags: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50,
                       flags, 65535, 0, 0)


def udp(sport: int, dport: int, payload_len: int) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + payload_len, 0)


def main_for(build: Callable[[Path, int, int], int], doc: str | None) -> None:
    """The builders' command line: OUT.pcap [--packets N] [--flows N]."""
    parser = argparse.ArgumentParser(description=(doc or "").partition("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--flows", type=int, default=64)
    args = parser.parse_args()
    print(f"{build(args.out, args.packets, args.flows)} packets written to {args.out}")
