"""Record reference IEC 60870-5-104 captures from a real c104 (lib60870) RTU and master.

Run from the repository root (as root: dumpcap needs capture rights)::

    python -m pcaps.record.iec104 [--out-dir pcaps/iec104] [--only NAME ...]

Every scenario starts a fresh c104 server, the *RTU* (controlled station) on
127.0.0.1:2404 with common address 1 and the points of `MONITORING` and
`COMMANDS`, starts ``dumpcap`` on the loopback interface, connects one c104
client, the plant's *master* (controlling station, originator address 1), runs
its exchanges, disconnects (FIN) and stops the capture. Every confirmation
and every command the RTU receives is checked, so a behaviour change in c104
makes the script fail instead of silently producing different captures.

The attack scenarios (:mod:`pcaps.record.iec104_attacks`) reuse the RTU and
talk to it from 127.0.0.66: through a c104 client behind `Relay` (c104 cannot
bind its client to a source address; the relay copies its bytes unchanged to
a socket bound to 127.0.0.66, and only the relay's leg on port 2404 is
captured), or through `RawClient`, which speaks the APCI itself for what
c104 cannot send (reset process, file transfer, malformed frames).

Point values and exchanges are fixed; timestamps (and the CP56Time2a time
tags, which carry the time of recording), ephemeral ports and TCP sequence
numbers differ between runs. (No ``from __future__ import annotations``: c104
checks the annotations of its callbacks as objects, not strings.)
"""

import argparse
import contextlib
import datetime
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import c104

from pcaps.record.capture import record

log = logging.getLogger("pcaps.record.iec104")

HOST = "127.0.0.1"
MASTER = "127.0.0.1"
ATTACKER = "127.0.0.66"
IEC104_PORT = 2404
RELAY_PORT = 12404
COMMON_ADDRESS = 1
MASTER_ORIGINATOR = 1
BPF_FILTER = f"tcp port {IEC104_PORT}"
MAX_CAPTURE_BYTES = 100_000
#: Seconds to wait for a confirmation that should come.
ANSWER_TIMEOUT = 2.0
#: A fixed time tag for time-tagged commands (CP56Time2a), so they are reproducible.
COMMAND_TIME = datetime.datetime(2024, 5, 17, 8, 30, 15, 250000)

T = c104.Type


def byte32(value: int) -> c104.Byte32:
    """A 32-bit bitstring (c104 2.2's Byte32(int) reads some values as 0)."""
    return c104.Byte32(value.to_bytes(4, "big"))


#: Monitoring points of the RTU: IOA -> (type, initial information).
MONITORING: dict[int, tuple[c104.Type, Callable[[], Any]]] = {
    100: (T.M_SP_NA_1, lambda: c104.SingleInfo(on=True)),
    101: (T.M_SP_NA_1, lambda: c104.SingleInfo(on=False, quality=c104.Quality.Blocked)),
    102: (T.M_SP_TB_1, lambda: c104.SingleInfo(on=True)),
    110: (T.M_DP_NA_1, lambda: c104.DoubleInfo(state=c104.Double.ON)),
    111: (T.M_DP_TB_1, lambda: c104.DoubleInfo(state=c104.Double.OFF)),
    120: (T.M_ST_NA_1, lambda: c104.StepInfo(state=c104.Int7(-5), transient=True)),
    121: (T.M_ST_TB_1, lambda: c104.StepInfo(state=c104.Int7(17), transient=False)),
    130: (T.M_BO_NA_1, lambda: c104.BinaryInfo(blob=byte32(0x12345678))),
    131: (T.M_BO_TB_1, lambda: c104.BinaryInfo(blob=byte32(0xA5A50F0F))),
    140: (T.M_ME_NA_1, lambda: c104.NormalizedInfo(actual=c104.NormalizedFloat(0.25))),
    141: (T.M_ME_TD_1, lambda: c104.NormalizedInfo(actual=c104.NormalizedFloat(-0.5))),
    150: (T.M_ME_NB_1, lambda: c104.ScaledInfo(actual=c104.Int16(-1234))),
    151: (T.M_ME_TE_1, lambda: c104.ScaledInfo(actual=c104.Int16(4321))),
    160: (T.M_ME_NC_1, lambda: c104.ShortInfo(actual=230.5)),
    161: (T.M_ME_NC_1, lambda: c104.ShortInfo(actual=49.98)),
    162: (T.M_ME_TF_1, lambda: c104.ShortInfo(actual=-12.75)),
    170: (T.M_IT_NA_1, lambda: c104.BinaryCounterInfo(
        counter=123456, sequence=c104.UInt5(3), quality=c104.BinaryCounterQuality(0))),
    171: (T.M_IT_TB_1, lambda: c104.BinaryCounterInfo(
        counter=-42, sequence=c104.UInt5(7), quality=c104.BinaryCounterQuality.Carry)),
    180: (T.M_ME_ND_1, lambda: c104.NormalizedInfo(actual=c104.NormalizedFloat(0.75))),
    190: (T.M_PS_NA_1, lambda: c104.StatusAndChanged(
        status=c104.PackedSingle(0x00F0), changed=c104.PackedSingle(0x0011))),
    191: (T.M_EP_TD_1, lambda: c104.ProtectionEventInfo(
        state=c104.EventState.ON, elapsed_ms=c104.UInt16(120))),
}

#: Command points of the RTU: IOA -> (type, command mode, IOA of the
#: monitoring point that reports the new state, or None).
COMMANDS: dict[int, tuple[c104.Type, c104.CommandMode, int | None]] = {
    1000: (T.C_SC_NA_1, c104.CommandMode.SELECT_AND_EXECUTE, 100),
    1001: (T.C_SC_NA_1, c104.CommandMode.DIRECT, 101),
    1002: (T.C_SC_TA_1, c104.CommandMode.DIRECT, 102),
    1010: (T.C_DC_NA_1, c104.CommandMode.DIRECT, 110),
    1011: (T.C_DC_TA_1, c104.CommandMode.SELECT_AND_EXECUTE, 111),
    1020: (T.C_RC_NA_1, c104.CommandMode.DIRECT, None),
    1021: (T.C_RC_TA_1, c104.CommandMode.DIRECT, None),
    1030: (T.C_SE_NA_1, c104.CommandMode.DIRECT, 140),
    1031: (T.C_SE_TA_1, c104.CommandMode.DIRECT, 141),
    1040: (T.C_SE_NB_1, c104.CommandMode.DIRECT, 150),
    1041: (T.C_SE_TB_1, c104.CommandMode.DIRECT, 151),
    1050: (T.C_SE_NC_1, c104.CommandMode.SELECT_AND_EXECUTE, 160),
    1051: (T.C_SE_TC_1, c104.CommandMode.DIRECT, 162),
    1060: (T.C_BO_NA_1, c104.CommandMode.DIRECT, 130),
    1061: (T.C_BO_TA_1, c104.CommandMode.DIRECT, 131),
}


class UnexpectedBehaviour(AssertionError):
    """c104 answered differently from what the captures are meant to show."""


class NotStarted(UnexpectedBehaviour):
    """The c104 client's STARTDT went unconfirmed (it happens to about one
    connection in twenty-five to a freshly started c104 server)."""


def expect(label: str, condition: bool, detail: object = "") -> None:
    if not condition:
        raise UnexpectedBehaviour(f"{label}: {detail}")


# --------------------------------------------------------------------------- #
# The RTU
# --------------------------------------------------------------------------- #
@dataclass
class Rtu:
    """The c104 server and what it received."""

    server: c104.Server
    station: c104.Station
    points: dict[int, c104.Point]
    commands: list[tuple[str, int, Any, bool]] = field(default_factory=list)
    clock_syncs: list[datetime.datetime] = field(default_factory=list)
    # What the RTU refused: (cause, type, common address).
    unexpected: list[tuple[str, str, int]] = field(default_factory=list)

    def transmit(self, ioa: int, value: Any, cause: c104.Cot = c104.Cot.SPONTANEOUS) -> None:
        """Report a new value of a monitoring point."""
        point = self.points[ioa]
        point.value = value
        expect(f"transmit {ioa}", point.transmit(cause=cause))


@contextmanager
def rtu(report_ms: dict[int, int] | None = None) -> Iterator[Rtu]:
    """A fresh RTU on ``HOST:2404``, with ``report_ms`` periodic points."""
    server = c104.Server(ip=HOST, port=IEC104_PORT, tick_rate_ms=50, select_timeout_ms=5000)
    station = server.add_station(common_address=COMMON_ADDRESS)
    points: dict[int, c104.Point] = {}
    for ioa, (kind, info) in MONITORING.items():
        point = station.add_point(io_address=ioa, type=kind,
                                  report_ms=(report_ms or {}).get(ioa, 0))
        point.info = info()
        points[ioa] = point
    unit = Rtu(server, station, points)

    def on_command(point: c104.Point, previous_info: c104.Information,
                   message: c104.IncomingMessage) -> c104.ResponseState:
        unit.commands.append(
            (point.type.name, point.io_address, point.value, message.is_select_command))
        return c104.ResponseState.SUCCESS

    def on_clock_sync(server: c104.Server, ip: str,
                      date_time: datetime.datetime) -> c104.ResponseState:
        unit.clock_syncs.append(date_time)
        return c104.ResponseState.SUCCESS

    def on_unexpected(server: c104.Server, message: c104.IncomingMessage,
                      cause: c104.Umc) -> None:
        unit.unexpected.append((cause.name, message.type.name, message.common_address))

    for ioa, (kind, mode, related) in COMMANDS.items():
        point = station.add_point(io_address=ioa, type=kind, command_mode=mode,
                                  related_io_address=related,
                                  related_io_autoreturn=related is not None)
        point.on_receive(callable=on_command)
        points[ioa] = point
    server.on_clock_sync(callable=on_clock_sync)
    server.on_unexpected_message(callable=on_unexpected)
    server.start()
    deadline = time.monotonic() + 5
    while not server.is_running:
        expect("RTU start", time.monotonic() < deadline)
        time.sleep(0.01)
    time.sleep(0.5)
    try:
        yield unit
    finally:
        server.stop()


# --------------------------------------------------------------------------- #
# Clients
# --------------------------------------------------------------------------- #
class Relay:
    """Copies one TCP connection from ``HOST:RELAY_PORT`` to ``HOST:2404``
    through a socket bound to ``source``, byte for byte, closing each
    direction when the other closes it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.listener = socket.create_server((HOST, RELAY_PORT))
        self.threads: list[threading.Thread] = []
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self.threads.append(accept)

    def _accept(self) -> None:
        inner, _ = self.listener.accept()
        outer = socket.create_connection((HOST, IEC104_PORT), source_address=(self.source, 0))
        for one, other in ((inner, outer), (outer, inner)):
            pump = threading.Thread(target=self._pump, args=(one, other), daemon=True)
            pump.start()
            self.threads.append(pump)

    @staticmethod
    def _pump(one: socket.socket, other: socket.socket) -> None:
        with contextlib.suppress(OSError):  # either side closed: the relay is done
            while data := one.recv(65536):
                other.sendall(data)
            other.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        for thread in self.threads[1:]:
            thread.join(5)
        self.listener.close()


@dataclass
class Master:
    """A c104 client connected to the RTU, with the RTU's points."""

    client: c104.Client
    connection: c104.Connection
    station: c104.Station
    points: dict[int, c104.Point]

    def command(self, ioa: int, info: Any) -> bool:
        """Send a command (select first in select-and-execute mode). c104's
        answer is not always right (it may match a confirmation to the wrong
        command), so scenarios check what the RTU executed instead."""
        point = self.points[ioa]
        point.info = info
        accepted: bool = point.transmit(cause=c104.Cot.ACTIVATION)
        if not accepted:
            log.debug("c104 reports %s %d not confirmed", point.type.name, ioa)
        return accepted

    def idle(self, seconds: float) -> None:
        time.sleep(seconds)


@contextmanager
def master(source: str = MASTER, originator: int = MASTER_ORIGINATOR,
           keep_alive: int = 0, points: Sequence[int] = ()) -> Iterator[Master]:
    """A c104 client (from ``source``: through a `Relay` unless it is
    ``HOST``) that has sent STARTDT and got its confirmation."""
    relay = Relay(source) if source != HOST else None
    client = c104.Client(tick_rate_ms=50, command_timeout_ms=int(ANSWER_TIMEOUT * 1000))
    client.originator_address = originator
    port = RELAY_PORT if relay else IEC104_PORT
    connection = client.add_connection(ip=HOST, port=port, init=c104.Init.NONE)
    expect("add connection", connection is not None)
    assert connection is not None
    if keep_alive:
        connection.protocol_parameters.keep_alive_interval = keep_alive
        connection.protocol_parameters.confirm_interval = 1
    station = connection.add_station(common_address=COMMON_ADDRESS)
    expect("add station", station is not None)
    assert station is not None
    own: dict[int, c104.Point] = {}
    for ioa in points:
        kind, mode = (COMMANDS[ioa][0], COMMANDS[ioa][1]) if ioa in COMMANDS \
            else (MONITORING[ioa][0], c104.CommandMode.DIRECT)
        point = station.add_point(io_address=ioa, type=kind, command_mode=mode)
        assert point is not None
        own[ioa] = point
    client.start()
    deadline = time.monotonic() + 2
    while connection.state != c104.ConnectionState.OPEN:
        if time.monotonic() > deadline:
            client.stop()
            if relay is not None:
                relay.close()
            raise NotStarted(f"STARTDT unconfirmed: {connection.state}")
        time.sleep(0.01)
    try:
        yield Master(client, connection, station, own)
    finally:
        time.sleep(0.3)  # the last S frames
        client.stop()
        if relay is not None:
            relay.close()


class RawClient:
    """A controlling station that writes its own APDUs on a socket bound to
    ``source``: sequence numbers, acknowledgements (an S frame for every I
    frame received) and deliberately broken frames."""

    def __init__(self, source: str = ATTACKER) -> None:
        self.sock = socket.create_connection((HOST, IEC104_PORT), source_address=(source, 0))
        self.sent = 0
        self.received = 0
        self.buffer = b""
        self.closed = False

    def send(self, frame: bytes) -> None:
        self.sock.sendall(frame)

    def u_frame(self, function: int) -> bytes:
        return bytes((0x68, 4, function << 2 | 3, 0, 0, 0))

    def i_frame(self, asdu: bytes, ns: int | None = None) -> bytes:
        if ns is None:
            ns = self.sent
            self.sent = (self.sent + 1) & 0x7FFF
        return bytes((0x68, len(asdu) + 4)) + struct.pack("<HH", ns << 1,
                                                          self.received << 1) + asdu

    def startdt(self) -> None:
        self.send(self.u_frame(0x01))
        frames = self.receive(until=lambda f: f[2] == 0x0B)
        expect("STARTDT con", any(f[2] == 0x0B for f in frames), frames)

    def receive(self, timeout: float = ANSWER_TIMEOUT,
                until: Callable[[bytes], bool] | None = None) -> list[bytes]:
        """APDUs received until ``until`` holds for one (or the timeout, or
        the RTU closes the connection); I frames are acknowledged at once."""
        frames: list[bytes] = []
        deadline = time.monotonic() + timeout
        while not self.closed:
            while len(self.buffer) >= 2 and len(self.buffer) >= 2 + self.buffer[1]:
                frame = self.buffer[: 2 + self.buffer[1]]
                self.buffer = self.buffer[2 + self.buffer[1]:]
                frames.append(frame)
                if frame[2] & 1 == 0:
                    self.received = (self.received + 1) & 0x7FFF
                    self.send(bytes((0x68, 4, 1, 0)) + struct.pack("<H", self.received << 1))
                if until is not None and until(frame):
                    return frames
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                break
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                break
            self.buffer += data
        return frames

    def close(self) -> None:
        with contextlib.suppress(OSError):  # the RTU may have closed first
            self.sock.shutdown(socket.SHUT_WR)
            self.receive(timeout=1.0)
        self.sock.close()


def asdu(type_id: int, cause: int, ioa: int, element: bytes, *, vsq: int = 1,
         originator: int = 0, common_address: int = COMMON_ADDRESS) -> bytes:
    """An ASDU with one information object (or ``vsq`` as given)."""
    return (bytes((type_id, vsq, cause, originator)) + struct.pack("<H", common_address)
            + ioa.to_bytes(3, "little") + element)


def cause_of(frame: bytes) -> int:
    """The cause of transmission (with P/N and T bits) of an I frame."""
    return frame[8]


def type_of(frame: bytes) -> int:
    return frame[6] if len(frame) > 6 and frame[2] & 1 == 0 else -1


# --------------------------------------------------------------------------- #
# Scenarios
# --------------------------------------------------------------------------- #
def scenario_monitoring(unit: Rtu) -> None:
    """STARTDT, general interrogation of every monitoring type, counter
    interrogation, a read, clock synchronisation, a test command,
    spontaneous and periodic measurements, idle time with TESTFR, STOPDT."""
    with master(keep_alive=1, points=[160, 170]) as m:
        con = m.connection
        expect("interrogation", con.interrogation(common_address=COMMON_ADDRESS))
        expect("counter interrogation", con.counter_interrogation(
            common_address=COMMON_ADDRESS, freeze=c104.Frz.FREEZE_WITHOUT_RESET))
        expect("read 160", m.points[160].read())
        expect("clock sync", con.clock_sync(common_address=COMMON_ADDRESS))
        expect("test command", con.test(common_address=COMMON_ADDRESS))
        unit.transmit(160, 231.25)
        unit.transmit(150, c104.Int16(-1250))
        unit.transmit(110, c104.Double.OFF)
        unit.transmit(102, False)
        unit.transmit(162, -13.5)
        unit.transmit(170, 123500)
        unit.transmit(180, c104.NormalizedFloat(-0.125))
        unit.transmit(190, c104.PackedSingle(0x00F1))
        unit.transmit(191, c104.EventState.OFF)
        m.idle(3.5)  # periodic reports and TESTFR act/con after t3 (1 s)
        expect("STOPDT", con.mute())  # the master stops data transfer before leaving
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while con.state != c104.ConnectionState.OPEN_MUTED:
            expect("STOPDT confirmed", time.monotonic() < deadline, con.state)
            time.sleep(0.01)
    expect("clock sync received", len(unit.clock_syncs) == 1, unit.clock_syncs)


def scenario_control(unit: Rtu) -> None:
    """The master's own commands: every command type, select-and-execute
    and direct, with and without time tag; each confirmed."""
    with master(points=list(COMMANDS)) as m:
        m.command(1000, c104.SingleCmd(on=False))  # select, then execute
        m.command(1001, c104.SingleCmd(on=True, qualifier=c104.Qoc.SHORT_PULSE))
        m.command(1002, c104.SingleCmd(on=False, recorded_at=COMMAND_TIME))
        m.command(1010, c104.DoubleCmd(state=c104.Double.OFF, qualifier=c104.Qoc.LONG_PULSE))
        m.command(1011, c104.DoubleCmd(state=c104.Double.ON, recorded_at=COMMAND_TIME))
        m.command(1020, c104.StepCmd(direction=c104.Step.HIGHER))
        m.command(1021, c104.StepCmd(direction=c104.Step.LOWER, recorded_at=COMMAND_TIME))
        m.command(1030, c104.NormalizedCmd(target=c104.NormalizedFloat(0.5)))
        m.command(1031, c104.NormalizedCmd(target=c104.NormalizedFloat(-0.25),
                                           recorded_at=COMMAND_TIME))
        m.command(1040, c104.ScaledCmd(target=c104.Int16(1000)))
        m.command(1041, c104.ScaledCmd(target=c104.Int16(-2000), recorded_at=COMMAND_TIME))
        m.command(1050, c104.ShortCmd(target=60.5))
        m.command(1051, c104.ShortCmd(target=-7.25, recorded_at=COMMAND_TIME))
        m.command(1060, c104.BinaryCmd(blob=byte32(0x0F0F0F0F)))
        m.command(1061, c104.BinaryCmd(blob=byte32(0x80000001), recorded_at=COMMAND_TIME))
    executed = [ioa for _kind, ioa, _value, _select in unit.commands]
    expect("commands executed", executed == list(COMMANDS), unit.commands)


@dataclass
class Scenario:
    name: str
    run: Callable[[Rtu], None]
    report_ms: dict[int, int] = field(default_factory=dict)

    @property
    def filename(self) -> str:
        return f"{self.name}.pcapng"


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("monitoring", scenario_monitoring, {161: 1000}),
    Scenario("control", scenario_control),
)


def record_scenario(scenario: Scenario, out_dir: Path, attempts: int = 5) -> Path:
    path = out_dir / scenario.filename
    for attempt in range(1, attempts + 1):
        log.info("recording %s", path)
        try:
            with rtu(scenario.report_ms) as unit, record(path, BPF_FILTER):
                time.sleep(0.2)
                scenario.run(unit)
            break
        except UnexpectedBehaviour as exc:
            # c104 is not always reliable (a STARTDT left unconfirmed, a
            # confirmation matched to the wrong command); a behaviour that
            # really changed fails every attempt.
            if attempt == attempts:
                raise
            log.warning("%s; recording again", exc)
            time.sleep(1.0)
    size = path.stat().st_size
    expect(f"{path} size", size <= MAX_CAPTURE_BYTES, size)
    return path


def run(argv: Sequence[str] | None, scenarios: Sequence[Scenario], prog: str) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("pcaps/iec104"))
    parser.add_argument("--only", nargs="*", default=(), metavar="NAME",
                        help="record only the scenarios whose file name starts with NAME")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    for scenario in scenarios:
        if args.only and not any(scenario.name.startswith(o) or scenario.name.startswith(
                "attack-" + o) for o in args.only):
            continue
        record_scenario(scenario, args.out_dir)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(argv, SCENARIOS, "python -m pcaps.record.iec104")


if __name__ == "__main__":
    raise SystemExit(main())
