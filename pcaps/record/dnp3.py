"""Record DNP3 captures: a real opendnp3 outstation and master on loopback.

Run from the repository root (as root: dumpcap needs capture rights)::

    python -m pcaps.record.dnp3 [--out-dir pcaps/dnp3] [--only NAME ...]

The stack is opendnp3 (the reference implementation of IEEE 1815) through
its Python binding ``yadnp3`` (``pip install yadnp3``; it installs from a
wheel and imports as ``opendnp3``). The outstation has link address 10 and
30 points of every type but time-and-interval (g50v4, which Wireshark 4.0
cannot dissect), so an integrity poll answers with a fragment larger than
one link frame. The master has link address 1 and runs on 127.0.0.1.
Every capture holds one session, from the TCP handshake (or the first UDP
datagram) to the close; :mod:`pcaps.record.dnp3_attacks` reuses this
module's stations for the attack captures.
"""

from __future__ import annotations

import argparse
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import opendnp3 as dnp3

from pcaps.record.capture import record

log = logging.getLogger("pcaps.record.dnp3")

HOST = "127.0.0.1"
PORT = 20000
MASTER_ADDRESS = 1
OUTSTATION_ADDRESS = 10
POINTS = 30
BPF_FILTER = f"port {PORT}"
TASK_TIMEOUT = 5.0
MASTER = "127.0.0.1"
# 2022-01-01T00:00:00Z: the outstation's clock, so its timestamps are fixed.
OUTSTATION_EPOCH_MS = 1_640_995_200_000


class UnexpectedResponse(RuntimeError):
    """The stack did something the capture is not meant to show."""


# -- the outstation -------------------------------------------------------------


class CommandLog(dnp3.ICommandHandler):  # type: ignore[misc]
    """Accepts every command and remembers what was operated."""

    def __init__(self) -> None:
        super().__init__()
        self.selected: list[tuple[str, int]] = []
        self.operated: list[tuple[str, int, Any]] = []

    def Begin(self) -> None:
        """A batch of commands starts: nothing to prepare (the binding requires it)."""

    def End(self) -> None:
        """A batch of commands ends: nothing to commit."""

    def Select(self, command: Any, index: int) -> Any:
        self.selected.append((type(command).__name__, index))
        return dnp3.CommandStatus.SUCCESS

    def Operate(self, command: Any, index: int, handler: Any, op_type: Any) -> Any:
        value = command.opType if isinstance(command, dnp3.ControlRelayOutputBlock) else \
            command.value
        self.operated.append((type(command).__name__, index, value))
        return dnp3.CommandStatus.SUCCESS


class OutstationApplication(dnp3.IOutstationApplication):  # type: ignore[misc]
    """Supports time writes, class assignment and both restarts; asks for
    time synchronisation when ``need_time``."""

    def __init__(self, need_time: bool = False) -> None:
        super().__init__()
        self.need_time = need_time
        self.restarts: list[str] = []
        self.time_written: list[int] = []

    def SupportsWriteAbsoluteTime(self) -> bool:
        return True

    def WriteAbsoluteTime(self, timestamp: Any) -> bool:
        self.time_written.append(timestamp.msSinceEpoch)
        self.need_time = False
        return True

    def SupportsAssignClass(self) -> bool:
        return True

    def RecordClassAssignment(self, *args: Any) -> None:
        """Class assignments are accepted; the capture shows them, nothing to keep."""

    def GetApplicationIIN(self) -> Any:
        iin = dnp3.ApplicationIIN()
        iin.needTime = self.need_time
        return iin

    def ColdRestartSupport(self) -> Any:
        return dnp3.RestartMode.SUPPORTED_DELAY_COARSE

    def WarmRestartSupport(self) -> Any:
        return dnp3.RestartMode.SUPPORTED_DELAY_FINE

    def ColdRestart(self) -> int:
        self.restarts.append("cold")
        return 30  # seconds

    def WarmRestart(self) -> int:
        self.restarts.append("warm")
        return 500  # milliseconds

    def Now(self) -> Any:
        return dnp3.DNPTime(OUTSTATION_EPOCH_MS)


class FileStore(dnp3.IFileHandler):  # type: ignore[misc]
    """A tiny file system: ``/config/settings.xml`` and ``/logs/events.log``."""

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, bytes] = {
            "/config/settings.xml": b"<settings><breaker trip='on'/></settings>",
            "/logs/events.log": b"2022-01-01 00:00:00 breaker 4 closed\n",
        }
        self.handles: dict[int, str] = {}
        self.deleted: list[str] = []
        self.opened: list[str] = []

    def OpenFile(self, filename: str, auth_key: int, permissions: Any, mode: Any,
                 max_block_size: int, request_id: int) -> Any:
        result = dnp3.FileOpenResult()
        self.opened.append(filename)
        if filename not in self.files:
            result.status = dnp3.FileStatus.NOT_EXIST
            return result
        handle = 0x1000 + len(self.handles)
        self.handles[handle] = filename
        result.status = dnp3.FileStatus.SUCCESS
        result.fileHandle = handle
        result.fileSize = len(self.files[filename])
        result.maxBlockSize = min(max_block_size, 64)
        return result

    def ReadBlock(self, handle: int, block: int) -> Any:
        result = dnp3.FileBlockResult()
        data = self.files.get(self.handles.get(handle, ""), b"")
        chunk = data[block * 64 : (block + 1) * 64]
        result.data = chunk
        result.lastBlock = (block + 1) * 64 >= len(data)
        result.status = dnp3.FileStatus.SUCCESS
        return result

    def CloseFile(self, handle: int, request_id: int) -> Any:
        self.handles.pop(handle, None)
        return dnp3.FileStatus.SUCCESS

    def DeleteFile(self, filename: str) -> Any:
        if self.files.pop(filename, None) is None:
            return dnp3.FileStatus.NOT_EXIST
        self.deleted.append(filename)
        return dnp3.FileStatus.SUCCESS

    def GetFileInfo(self, filename: str) -> Any:
        return dnp3.FileCommandResult()

    def AbortFile(self, handle: int) -> None:
        self.handles.pop(handle, None)

    def AuthenticateFile(self, username: str, password: str) -> Any:
        return dnp3.OutstationFileAuthResult()


class Outstation:
    """The RTU: opendnp3 outstation on ``HOST:PORT`` (TCP server, or UDP)."""

    def __init__(self, manager: Any, *, udp_peer: str | None = None,
                 allow_unsolicited: bool = False, need_time: bool = False) -> None:
        self.commands = CommandLog()
        self.application = OutstationApplication(need_time)
        self.files = FileStore()
        if udp_peer is None:
            self.channel = manager.AddTCPServer(
                "outstation", dnp3.levels.NOTHING, dnp3.ServerAcceptMode.CloseExisting,
                dnp3.IPEndpoint(HOST, PORT), None)
        else:
            self.channel = manager.AddUDPChannel(
                "outstation", dnp3.levels.NOTHING, dnp3.ChannelRetry.Default(),
                dnp3.IPEndpoint(HOST, PORT), dnp3.IPEndpoint(udp_peer, PORT + 1), None)
        database = dnp3.DatabaseConfig(POINTS)
        database.time_and_interval = {}
        config = dnp3.OutstationStackConfig(database)
        config.outstation.params.allowUnsolicited = allow_unsolicited
        config.outstation.eventBufferConfig = dnp3.EventBufferConfig.AllTypes(100)
        config.link.LocalAddr = OUTSTATION_ADDRESS
        config.link.RemoteAddr = MASTER_ADDRESS
        self.stack = self.channel.AddOutstation(
            "outstation", self.commands, self.application, config, self.files)
        self.stack.Enable()

    def update(self, *changes: tuple[Any, int]) -> None:
        """Apply measurement changes (value, index); each makes an event."""
        builder = dnp3.UpdateBuilder()
        for value, index in changes:
            builder.Update(value, index)
        self.stack.Apply(builder.Build())

    def shutdown(self) -> None:
        self.stack.Disable()
        self.channel.Shutdown()


# -- the master ------------------------------------------------------------------


class Measurements(dnp3.ISOEHandler):  # type: ignore[misc]
    """Counts the measurements the master receives, by type."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()

    def BeginFragment(self, info: Any) -> None:
        """Counts are kept per value (`Process`), not per fragment."""

    def EndFragment(self, info: Any) -> None:
        """See `BeginFragment`."""

    def Process(self, info: Any, values: Sequence[Any]) -> None:
        if not values:
            return
        name = type(values[0].value).__name__
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + len(values)


class MasterApplication(dnp3.IMasterApplication):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()

    def OnReceiveIIN(self, iin: Any) -> None:
        """The IIN bits are in the capture; the recorder does not act on them."""

    def OnTaskStart(self, task_type: Any, task_id: Any) -> None:
        """Tasks are checked by their results, not followed."""

    def OnTaskComplete(self, info: Any) -> None:
        """See `OnTaskStart`."""

    def OnOpen(self) -> None:
        """The channel listener reports the link state; nothing to do here."""

    def OnClose(self) -> None:
        """See `OnOpen`."""

    def AssignClassDuringStartup(self) -> bool:
        return False

    def Now(self) -> Any:
        return dnp3.UTCTimestamp(OUTSTATION_EPOCH_MS + 3_600_000)


class Master:
    """A SCADA master (opendnp3) connected from ``source`` to the outstation."""

    def __init__(self, manager: Any, source: str = MASTER, *, udp: bool = False,
                 outstations: Sequence[int] = (OUTSTATION_ADDRESS,),
                 disable_unsolicited: bool = False, time_sync: bool = False,
                 response_timeout: float = 2.0, name: str = "master") -> None:
        self.measurements = Measurements()
        if udp:
            self.channel = manager.AddUDPChannel(
                name, dnp3.levels.NOTHING, dnp3.ChannelRetry.Default(),
                dnp3.IPEndpoint(source, PORT + 1), dnp3.IPEndpoint(HOST, PORT), None)
        else:
            self.channel = manager.AddTCPClient(
                name, dnp3.levels.NOTHING, dnp3.ChannelRetry.Default(),
                [dnp3.IPEndpoint(HOST, PORT)], source, None)
        self.stacks = []
        for address in outstations:
            config = dnp3.MasterStackConfig()
            config.master.disableUnsolOnStartup = disable_unsolicited
            config.master.responseTimeout = dnp3.TimeDuration.Milliseconds(
                int(response_timeout * 1000))
            config.master.timeSyncMode = dnp3.TimeSyncMode.NonLAN if time_sync else \
                getattr(dnp3.TimeSyncMode, "None")
            config.link.LocalAddr = MASTER_ADDRESS
            config.link.RemoteAddr = address
            stack = self.channel.AddMaster(f"{name}-{address}", self.measurements,
                                           MasterApplication(), config)
            self.stacks.append(stack)
        self.stack = self.stacks[0]
        for stack in self.stacks:
            stack.Enable()

    def wait(self, start: Callable[[Callable[[Any], None]], None], what: str) -> Any:
        """Start a task that reports through a callback; wait for its result."""
        done = threading.Event()
        results: list[Any] = []

        def callback(result: Any) -> None:
            results.append(getattr(result, "summary", result))
            done.set()

        start(callback)
        if not done.wait(TASK_TIMEOUT):
            raise UnexpectedResponse(f"{what}: no result within {TASK_TIMEOUT} s")
        log.debug("%s: %s", what, results[0])
        return results[0]

    def expect_success(self, start: Callable[[Callable[[Any], None]], None], what: str) -> None:
        result = self.wait(start, what)
        if result not in (dnp3.TaskCompletion.SUCCESS, ) and \
                getattr(result, "name", "") != "SUCCESS":
            raise UnexpectedResponse(f"{what}: {result}")

    def scan(self, headers: Sequence[Any], pause: float = 0.1) -> None:
        self.stack.Scan(list(headers), self.measurements)
        time.sleep(pause)

    def shutdown(self) -> None:
        for stack in self.stacks:
            stack.Disable()
        self.channel.Shutdown()


@contextmanager
def stations(*, udp: bool = False, allow_unsolicited: bool = False, need_time: bool = False
             ) -> Iterator[tuple[Any, Outstation]]:
    """A DNP3 manager and a fresh outstation; both shut down afterwards."""
    manager = dnp3.DNP3Manager(2)
    outstation = Outstation(manager, udp_peer=MASTER if udp else None,
                            allow_unsolicited=allow_unsolicited, need_time=need_time)
    try:
        yield manager, outstation
    finally:
        outstation.shutdown()
        time.sleep(0.3)
        manager.Shutdown()


def settle(seconds: float = 1.0) -> None:
    """Let the master finish its startup sequence (or the last exchange)."""
    time.sleep(seconds)


def port_free(port: int = PORT) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


# -- benign scenarios ---------------------------------------------------------------


def _events(outstation: Outstation, step: int) -> None:
    outstation.update(
        (dnp3.Binary(step % 2 == 0), step % 5),
        (dnp3.DoubleBitBinary(dnp3.DoubleBit.DETERMINED_ON if step % 2 else
                              dnp3.DoubleBit.DETERMINED_OFF), 1),
        (dnp3.Analog(100.0 + step * 12.5), 2),
        (dnp3.Counter(1000 + step), 3),
        (dnp3.BinaryOutputStatus(step % 2 == 1), 4),
        (dnp3.AnalogOutputStatus(50.0 + step), 5),
    )


def polling(path: Path) -> None:
    """Startup integrity poll (a multi-frame response), time synchronisation
    (delay measurement and time write), event polls of classes 1, 2 and 3
    after measurement changes, and reads of single object types."""
    with stations(need_time=True) as (manager, outstation), record(path, BPF_FILTER):
        master = Master(manager, time_sync=True, disable_unsolicited=True)
        settle(1.5)
        if not outstation.application.time_written:
            raise UnexpectedResponse("the master did not synchronise the outstation's time")
        for step in range(4):
            _events(outstation, step)
            master.stack.ScanClasses(dnp3.ClassField.AllEventClasses(), master.measurements)
            time.sleep(0.2)
        for group, variation in ((1, 2), (3, 2), (10, 2), (20, 1), (20, 2), (21, 1), (30, 1),
                                 (30, 2), (30, 5), (30, 6), (40, 1), (40, 3), (110, 0)):
            master.scan([dnp3.Header.AllObjects(group, variation)])
        master.scan([dnp3.Header.Range8(30, 5, 2, 4), dnp3.Header.Range16(20, 1, 0, 9)])
        _events(outstation, 5)
        for group, variation in ((2, 2), (4, 2), (22, 1), (32, 3), (32, 7), (11, 2), (42, 3)):
            master.scan([dnp3.Header.Count8(group, variation, 2)])
        master.stack.ScanClasses(dnp3.ClassField.AllClasses(), master.measurements)
        settle(0.5)
        master.shutdown()
        settle(0.3)
    if master.measurements.counts.get("Analog", 0) < POINTS:
        raise UnexpectedResponse(f"integrity poll incomplete: {master.measurements.counts}")


def unsolicited(path: Path) -> None:
    """Unsolicited reporting: the master enables it after its integrity
    poll and assigns event classes; measurement changes are reported
    unsolicited and confirmed."""
    header = dnp3.Header
    with stations(allow_unsolicited=True) as (manager, outstation), record(path, BPF_FILTER):
        master = Master(manager, disable_unsolicited=False)
        settle(1.5)
        # Binary inputs to class 1, analog inputs to class 2, counters to class 3.
        master.stack.PerformFunction("assign class", dnp3.FunctionCode.ASSIGN_CLASS, [
            header.AllObjects(60, 2), header.AllObjects(1, 0), header.AllObjects(3, 0),
            header.AllObjects(60, 3), header.AllObjects(30, 0),
            header.AllObjects(60, 4), header.AllObjects(20, 0)])
        time.sleep(0.3)
        for step in range(4):
            _events(outstation, step)
            time.sleep(0.3)
        master.shutdown()
        settle(0.3)
    if master.measurements.counts.get("Analog", 0) < POINTS + 4:
        raise UnexpectedResponse(f"unsolicited events missing: {master.measurements.counts}")


def udp_polling(path: Path) -> None:
    """DNP3 over UDP: integrity poll and event polls, as in `polling`."""
    with stations(udp=True) as (manager, outstation), record(path, f"udp and {BPF_FILTER}"):
        master = Master(manager, udp=True)
        settle(1.5)
        for step in range(3):
            _events(outstation, step)
            master.stack.ScanClasses(dnp3.ClassField.AllEventClasses(), master.measurements)
            time.sleep(0.2)
        master.shutdown()
        settle(0.3)


def controls(path: Path) -> None:
    """The plant's master operating outputs: select-before-operate and
    direct operate of relays (CROB), analog output blocks of each type,
    freezes of the counters and a read of the frozen counters."""
    crob = dnp3.ControlRelayOutputBlock
    with stations() as (manager, outstation), record(path, BPF_FILTER):
        master = Master(manager)
        settle(1.5)
        stack = master.stack
        master.expect_success(lambda cb: stack.SelectAndOperate(
            crob(dnp3.OperationType.LATCH_ON), 0, cb), "select/operate latch on")
        master.expect_success(lambda cb: stack.DirectOperate(
            crob(dnp3.OperationType.PULSE_ON, dnp3.TripCloseCode.CLOSE, False, 1, 250, 250), 1,
            cb), "direct operate pulse close")
        master.expect_success(lambda cb: stack.DirectOperate(
            dnp3.AnalogOutputInt16(-120), 0, cb), "analog output 16")
        master.expect_success(lambda cb: stack.SelectAndOperate(
            dnp3.AnalogOutputInt32(70000), 1, cb), "analog output 32")
        master.expect_success(lambda cb: stack.DirectOperate(
            dnp3.AnalogOutputFloat32(47.5), 2, cb), "analog output float")
        master.expect_success(lambda cb: stack.DirectOperate(
            dnp3.AnalogOutputDouble64(0.125), 3, cb), "analog output double")
        stack.Freeze(dnp3.FreezeType.ImmediateFreeze, [dnp3.Header.AllObjects(20, 0)])
        time.sleep(0.2)
        stack.Freeze(dnp3.FreezeType.FreezeAndClear, [dnp3.Header.Range8(20, 0, 0, 4)])
        time.sleep(0.2)
        master.scan([dnp3.Header.AllObjects(21, 1)])
        settle(0.3)
        master.shutdown()
        settle(0.3)
    if len(outstation.commands.operated) != 6:
        raise UnexpectedResponse(f"operated: {outstation.commands.operated}")


SCENARIOS: dict[str, Callable[[Path], None]] = {
    "polling": polling,
    "unsolicited": unsolicited,
    "udp-polling": udp_polling,
    "controls": controls,
}


def record_scenarios(out_dir: Path, only: Sequence[str],
                     scenarios: dict[str, Callable[[Path], None]]) -> None:
    """Run each scenario (all, or those whose name starts with one of
    ``only``) into ``out_dir/<name>.pcapng``."""
    for name, scenario in scenarios.items():
        if only and not any(name.startswith(o) or name.removeprefix("attack-").startswith(o)
                            for o in only):
            continue
        if not port_free():
            raise UnexpectedResponse(f"port {PORT} is in use")
        path = out_dir / f"{name}.pcapng"
        log.info("recording %s", path)
        scenario(path)
        time.sleep(0.5)


def recorder_cli(argv: Sequence[str] | None, prog: str, description: str,
                 scenarios: dict[str, Callable[[Path], None]]) -> int:
    """``--out-dir``, ``--only``, ``-v``, as the Modbus recorders take them."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--out-dir", type=Path, default=Path("pcaps/dnp3"),
                        help="directory for the capture files (default: %(default)s)")
    parser.add_argument("--only", nargs="*", default=(), metavar="NAME",
                        help=f"record only these captures: {', '.join(scenarios)}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every task result")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    record_scenarios(args.out_dir, args.only, scenarios)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return recorder_cli(argv, "python -m pcaps.record.dnp3",
                        "Record DNP3 captures from opendnp3 (yadnp3) on loopback.", SCENARIOS)


if __name__ == "__main__":
    raise SystemExit(main())
