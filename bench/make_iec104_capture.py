"""Build a large, realistic IEC 60870-5-104 capture for benchmarks.

Many controlling-station connections to a few RTUs (handshake, STARTDT,
general interrogation answered with multi-object ASDUs, then mostly
spontaneous measurements with and without CP56Time2a, S-frame
acknowledgements every eight I frames, some commands with confirmation and
termination, TESTFR keep-alives, FIN close), Ethernet + IPv4. Assembled with
struct, so 200 000 packets take a few seconds to write.

    python bench/make_iec104_capture.py OUT.pcap [--packets 200000] [--flows 64]
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from pathlib import Path

from synthetic import ETH, ETH_BACK, PcapWriter, ipv4, main_for, tcp

PORT = 2404
CP56 = bytes((0x10, 0x27, 30, 9, 0xB1, 5, 24))


def _i(ns: int, nr: int, asdu: bytes) -> bytes:
    return bytes((0x68, len(asdu) + 4)) + struct.pack("<HH", ns << 1 & 0xFFFF,
                                                      nr << 1 & 0xFFFF) + asdu


def _asdu(type_id: int, cause: int, ca: int, objects: bytes, count: int, sq: bool = False) -> bytes:
    return bytes((type_id, count | (0x80 if sq else 0), cause, 0)) + struct.pack("<H", ca) \
        + objects


def _ioa(ioa: int) -> bytes:
    return ioa.to_bytes(3, "little")


def _spontaneous(rng: random.Random, ca: int) -> bytes:
    """One monitoring ASDU with a realistic type mix."""
    choice = rng.random()
    ioa = rng.randrange(100, 3000)
    if choice < 0.45:
        return _asdu(13, 3, ca, _ioa(ioa) + struct.pack("<fB", rng.uniform(0, 400), 0), 1)
    if choice < 0.65:
        return _asdu(36, 3, ca, _ioa(ioa) + struct.pack("<fB", rng.uniform(0, 400), 0) + CP56, 1)
    if choice < 0.80:
        return _asdu(30, 3, ca, _ioa(ioa) + bytes((rng.randrange(2),)) + CP56, 1)
    if choice < 0.90:
        return _asdu(11, 1, ca, _ioa(ioa) + struct.pack("<hB", rng.randrange(-3000, 3000), 0), 1)
    count = rng.randrange(2, 12)  # a cyclic batch of floats, SQ=0
    objects = b"".join(_ioa(ioa + i) + struct.pack("<fB", float(i), 0) for i in range(count))
    return _asdu(13, 1, ca, objects, count)


def _interrogation(ca: int) -> list[bytes]:
    """The RTU's answer to a general interrogation: sequences of points."""
    singles = _ioa(1) + bytes(i & 1 for i in range(40))
    floats = _ioa(1000) + b"".join(struct.pack("<fB", i * 1.5, 0) for i in range(20))
    doubles = _ioa(500) + bytes((1, 2) * 8)
    return [_asdu(1, 20, ca, singles, 40, sq=True), _asdu(13, 20, ca, floats, 20, sq=True),
            _asdu(3, 20, ca, doubles, 16, sq=True)]


class _Connection:
    """One master-RTU TCP connection: sequence numbers of TCP and of IEC 104."""

    def __init__(self, put: Callable[[bytes], None], master: bytes, rtu: bytes, sport: int,
                 rng: random.Random) -> None:
        self.put = put
        self.master, self.rtu, self.sport = master, rtu, sport
        self.mseq, self.rseq = rng.randrange(1 << 32), rng.randrange(1 << 32)
        self.ident = 0
        self.sent = {True: 0, False: 0}  # I frames sent by the master / the RTU
        self.unacked = 0

    def segment(self, from_master: bool, flags: int, payload: bytes = b"") -> None:
        self.ident += 1
        if from_master:
            self.put(ETH + ipv4(self.master, self.rtu, len(payload), self.ident)
                     + tcp(self.sport, PORT, self.mseq, self.rseq, flags) + payload)
            self.mseq += len(payload) + (flags & 0x03 != 0)
        else:
            self.put(ETH_BACK + ipv4(self.rtu, self.master, len(payload), self.ident)
                     + tcp(PORT, self.sport, self.rseq, self.mseq, flags) + payload)
            self.rseq += len(payload) + (flags & 0x03 != 0)

    def send(self, from_master: bool, payload: bytes) -> None:
        self.segment(from_master, 0x18, payload)

    def i_frame(self, from_master: bool, asdu: bytes) -> None:
        sent = self.sent
        self.send(from_master, _i(sent[from_master], sent[not from_master], asdu))
        sent[from_master] += 1
        if not from_master:
            self.unacked += 1
            if self.unacked == 8:  # w = 8: the master acknowledges
                self.send(True, bytes((0x68, 4, 1, 0))
                          + struct.pack("<H", sent[False] << 1 & 0xFFFF))
                self.unacked = 0


def build(path: Path, packets: int, flows: int, seed: int = 1) -> int:
    rng = random.Random(seed)
    with PcapWriter(path) as pcap:
        number = 0
        while pcap.written < packets:
            number += 1
            ca = 1 + number % 8
            master = bytes((10, 0, 1 + number % flows // 250, 1 + number % 250))
            link = _Connection(pcap.put, master, bytes((10, 0, 100, ca)), 20000 + number % 40000,
                               rng)
            link.segment(True, 0x02)
            link.segment(False, 0x12)
            link.segment(True, 0x10)
            link.send(True, bytes.fromhex("680407000000"))
            link.send(False, bytes.fromhex("68040b000000"))
            link.i_frame(True, _asdu(100, 6, ca, _ioa(0) + b"\x14", 1))
            link.i_frame(False, _asdu(100, 7, ca, _ioa(0) + b"\x14", 1))
            for answer in _interrogation(ca):
                link.i_frame(False, answer)
            link.i_frame(False, _asdu(100, 10, ca, _ioa(0) + b"\x14", 1))
            for step in range(rng.randrange(300, 3000)):
                if pcap.written >= packets - 4:
                    break
                choice = rng.random()
                if choice < 0.9:
                    link.i_frame(False, _spontaneous(rng, ca))
                elif choice < 0.97:
                    command = _asdu(45, 6, ca, _ioa(5000 + step % 16) + b"\x01", 1)
                    link.i_frame(True, command)
                    link.i_frame(False, bytes((45, 1, 7)) + command[3:])
                    link.i_frame(False, bytes((45, 1, 10)) + command[3:])
                else:
                    link.send(True, bytes.fromhex("680443000000"))
                    link.send(False, bytes.fromhex("680483000000"))
            link.segment(True, 0x11)
            link.segment(False, 0x11)
            link.segment(True, 0x10)
    return pcap.written


if __name__ == "__main__":
    main_for(build, __doc__)
