"""Record Modbus/TCP attack captures: a real pymodbus "PLC" and a hostile or misbehaving client.

Run from the repository root (as root, port 502 is privileged and dumpcap
needs capture rights)::

    python -m pcaps.record.modbus_attacks [--out-dir pcaps/modbus] [--only NAME ...]

The victim is the same pymodbus server as in :mod:`pcaps.record.modbus`
(127.0.0.1:502, same deterministic datastore and device identification),
started fresh for every capture.  Two kinds of client talk to it:

* the *attacker*, bound to source address :data:`ATTACKER` (127.0.0.66);
* the *master*, the plant's legitimate HMI on :data:`MASTER` (127.0.0.1),
  which misbehaves in some scenarios (write floods, broadcast writes, ...).

Requests go through the pymodbus client where it can send them, and as
hand-built MBAP frames on a plain asyncio connection where it cannot (unknown
function codes, protocol id 1, length mismatches, UMAS).  Every capture holds
one TCP connection from handshake to FIN, except ``attack-malformed.pcapng``
(two: pymodbus stops reading a connection after a frame with protocol id 1).
Every response, and the server's datastore afterwards, is checked against what
the scenario expects, so a behaviour change in pymodbus makes the script fail
instead of silently producing different captures.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.pdu import ExceptionResponse, FileRecord, ModbusPDU
from pymodbus.pdu.diag_message import (
    ClearCountersResponse,
    ClearOverrunCountResponse,
    ForceListenOnlyModeResponse,
    RestartCommunicationsOptionResponse,
    ReturnQueryDataResponse,
)
from pymodbus.pdu.file_message import WriteFileRecordResponse
from pymodbus.pdu.mei_message import ReadDeviceInformationResponse
from pymodbus.pdu.other_message import (
    GetCommEventCounterResponse,
    GetCommEventLogResponse,
    ReadExceptionStatusResponse,
    ReportDeviceIdResponse,
)
from pymodbus.server import ModbusTcpServer

from pcaps.record.capture import arecord, recorder_main
from pcaps.record.modbus import (
    BIT_COUNT,
    DEVICE_IDENTITY,
    HOLDING_REGISTERS,
    HOST,
    MODBUS_PORT,
    REGISTER_COUNT,
    UNIT_ID,
    RawModbusConnection,
    UnexpectedResponse,
    build_device,
    build_identity,
    expect_ok,
    expect_raw_exception,
    expect_response,
    expect_values,
)

log = logging.getLogger("pcaps.record.modbus_attacks")

#: Source address of the attacker's client.
ATTACKER = "127.0.0.66"
#: Source address of the plant's legitimate master (HMI).
MASTER = "127.0.0.1"
#: Capture filter: everything to/from the victim's Modbus port.
BPF_FILTER = f"tcp port {MODBUS_PORT} and host {HOST}"
#: Bigger than the reference captures' limit: the scan and the flood have ~120-200 requests.
MAX_CAPTURE_BYTES = 100_000
#: Seconds a raw client waits for a response that may never come.
SILENCE_TIMEOUT = 0.5
#: Function codes the scan leaves out: they change state (5, 6, 15, 16, 21, 22, 23)
#: or are diagnostics (8).
SCAN_SKIPPED = frozenset({5, 6, 8, 15, 16, 21, 22, 23})
#: Function codes pymodbus 3.16 answers normally to the scan's ``fc 00 00 00 01`` probe.
SCAN_ANSWERED = frozenset({1, 2, 3, 4, 7, 11, 12, 17, 20, 24})

#: Read-device-id code -> object ids returned (basic, regular, extended).
DEVICE_ID_OBJECTS: dict[int, list[int]] = {
    1: [0x00, 0x01, 0x02],
    2: [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06],
    3: [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x80, 0x81],
}


# --------------------------------------------------------------------------- #
# Victim server
# --------------------------------------------------------------------------- #
@asynccontextmanager
async def victim_server(*, broadcast_enable: bool = False) -> AsyncIterator[ModbusTcpServer]:
    """Run a fresh pymodbus TCP server on ``HOST:502`` with the reference datastore.

    Args:
        broadcast_enable: treat unit id 0 as broadcast (execute, never answer)
            instead of as an ordinary unit id (pymodbus' default).
    """
    server = ModbusTcpServer(
        build_device(),
        identity=build_identity(),
        address=(HOST, MODBUS_PORT),
        broadcast_enable=broadcast_enable,
    )
    await server.serve_forever(background=True)
    try:
        yield server
    finally:
        await server.shutdown()  # type: ignore[no-untyped-call]


async def holding_registers(server: ModbusTcpServer, address: int, count: int) -> list[int]:
    """Read holding registers straight from the server's datastore (no traffic)."""
    return [int(v) for v in await server.async_getValues(UNIT_ID, 3, address, count)]


async def coils(server: ModbusTcpServer, address: int, count: int) -> list[bool]:
    """Read coils straight from the server's datastore (no traffic)."""
    return [bool(v) for v in await server.async_getValues(UNIT_ID, 1, address, count)]


# --------------------------------------------------------------------------- #
# Clients
# --------------------------------------------------------------------------- #
@dataclass
class PacketTrace:
    """Bytes a pymodbus client sent and received (its ``trace_packet`` hook)."""

    sent: list[bytes] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)

    def __call__(self, sending: bool, data: bytes) -> bytes:
        """Record one chunk and hand it back unchanged."""
        (self.sent if sending else self.received).append(data)
        return data


@asynccontextmanager
async def client_from(
    source: str, trace: PacketTrace | None = None
) -> AsyncIterator[AsyncModbusTcpClient]:
    """Connect one pymodbus client from ``source`` to the victim; close it (FIN) afterwards."""
    client = AsyncModbusTcpClient(
        HOST,
        port=MODBUS_PORT,
        source_address=(source, 0),
        timeout=2,
        retries=0,
        reconnect_delay=0,
        trace_packet=trace,
    )
    if not await client.connect():
        raise ConnectionError(f"cannot connect from {source} to Modbus server {HOST}:{MODBUS_PORT}")
    try:
        sockname = client.ctx.transport.get_extra_info("sockname")
        if sockname[0] != source:
            raise ConnectionError(f"client bound to {sockname[0]}, not {source}")
        yield client
    finally:
        client.close()


class SourcedConnection(RawModbusConnection):
    """Raw Modbus/TCP connection bound to a chosen source address.

    Besides :meth:`RawModbusConnection.request` (well-formed MBAP around a
    PDU) it can send any bytes and tell whether a response came at all.
    """

    @classmethod
    async def open_from(cls, source: str) -> SourcedConnection:
        """Connect from ``source`` (ephemeral port) to the victim."""
        reader, writer = await asyncio.open_connection(HOST, MODBUS_PORT, local_addr=(source, 0))
        if writer.get_extra_info("sockname")[0] != source:
            raise ConnectionError(f"raw connection not bound to {source}")
        return cls(reader, writer)

    def next_transaction_id(self) -> int:
        """Advance and return the transaction id shared with :meth:`request`."""
        self.transaction_id += 1
        return self.transaction_id

    async def exchange(self, frame: bytes, timeout: float = 2.0) -> bytes | None:
        """Send ``frame`` as is; return the response ADU, or None if none comes in ``timeout``."""
        self.writer.write(frame)
        await self.writer.drain()
        try:
            header = await asyncio.wait_for(self.reader.readexactly(7), timeout)
        except TimeoutError:
            return None
        (length,) = struct.unpack(">H", header[4:6])
        body = await asyncio.wait_for(self.reader.readexactly(length - 1), timeout)
        return header + body

    async def close(self) -> None:
        """Send FIN, wait for the server's FIN, then close.

        Unlike the base class this waits for the whole close handshake, so a
        next connection in the same capture starts after this one has ended.
        """
        self.writer.write_eof()
        try:
            leftover = await asyncio.wait_for(self.reader.read(), 2.0)
        finally:
            await super().close()
        if leftover:
            raise UnexpectedResponse(f"unexpected data before close: {leftover.hex()}")


@asynccontextmanager
async def raw_from(source: str) -> AsyncIterator[SourcedConnection]:
    """One raw connection from ``source``, closed (FIN) at the end of the block."""
    conn = await SourcedConnection.open_from(source)
    try:
        yield conn
    finally:
        await conn.close()


def mbap(tid: int, pdu: bytes, *, protocol: int = 0, length: int | None = None) -> bytes:
    """Build an ADU for unit :data:`UNIT_ID`; ``length`` defaults to the correct one."""
    actual = len(pdu) + 1 if length is None else length
    return struct.pack(">HHHB", tid, protocol, actual, UNIT_ID) + pdu


# --------------------------------------------------------------------------- #
# Response checks
# --------------------------------------------------------------------------- #
def expect_exception(label: str, response: ModbusPDU | None, function_code: int, code: int) -> None:
    """Fail unless ``response`` is exception ``code`` to ``function_code``."""
    if (
        not isinstance(response, ExceptionResponse)
        or response.function_code != function_code | 0x80
        or response.exception_code != code
    ):
        raise UnexpectedResponse(
            f"{label}: expected exception {code} to FC {function_code}, got {response}"
        )
    log.debug("%s -> %s", label, response)


def expect_device_id(label: str, response: ModbusPDU | None, read_code: int) -> None:
    """Fail unless ``response`` carries exactly the objects of ``read_code``."""
    info = expect_response(label, response, ReadDeviceInformationResponse)
    objects = DEVICE_ID_OBJECTS[read_code]
    expect_values(label, sorted(info.information), objects)
    expect_values(
        label,
        [info.information[o] for o in objects],
        [DEVICE_IDENTITY[o].encode() for o in objects],
    )


def expect_raw_pdu(label: str, response: bytes, expected: bytes) -> None:
    """Fail unless the raw response PDU equals ``expected``."""
    if response != expected:
        raise UnexpectedResponse(f"{label}: expected {expected.hex()}, got {response.hex()}")
    log.debug("%s -> %s", label, response.hex())


# --------------------------------------------------------------------------- #
# Scenarios: each gets the victim server (to check its datastore afterwards)
# and the client's source address.
# --------------------------------------------------------------------------- #
async def scenario_unauthorised_write(server: ModbusTcpServer, source: str) -> None:
    """FC 6, 16, 5, 15 and 22 writes from an unknown host, all answered normally."""
    async with client_from(source) as c:
        expect_ok("FC6", await c.write_register(10, 0x0BAD))
        expect_ok("FC16", await c.write_registers(20, [0xDEAD, 0xBEEF, 0x0000, 0xFFFF]))
        expect_ok("FC5", await c.write_coil(0, False))
        expect_ok("FC15", await c.write_coils(8, [True] * 8))
        # (1030 AND 0x0000) OR (0x00FF AND NOT 0x0000) = 0x00FF
        expect_ok("FC22", await c.mask_write_register(address=30, and_mask=0x0000, or_mask=0x00FF))
    expect_values("FC6 effect", await holding_registers(server, 10, 1), [0x0BAD])
    expect_values(
        "FC16 effect", await holding_registers(server, 20, 4), [0xDEAD, 0xBEEF, 0x0000, 0xFFFF]
    )
    expect_values("FC22 effect", await holding_registers(server, 30, 1), [0x00FF])
    expect_values("FC5 effect", await coils(server, 0, 1), [False])
    expect_values("FC15 effect", await coils(server, 8, 8), [True] * 8)


async def scenario_force_listen_only(server: ModbusTcpServer, source: str) -> None:
    """FC 8 sub-function 4 (force listen only mode), data 0x0000."""
    _ = server
    async with client_from(source) as c:
        # The spec says the device must not answer; pymodbus does (08 00 04, no data),
        # so wait for that response instead of the client's default fire-and-forget.
        expect_response(
            "FC8/4",
            await c.diag_force_listen_only(no_response_expected=False),
            ForceListenOnlyModeResponse,
        )


async def scenario_restart_comms(server: ModbusTcpServer, source: str) -> None:
    """FC 8 sub-function 1 (restart communications option), data 0xFF00 (clear event log)."""
    _ = server
    async with client_from(source) as c:
        rsp = expect_response(
            "FC8/1",
            await c.diag_restart_communication(True),
            RestartCommunicationsOptionResponse,
        )
        expect_values("FC8/1 echo", [rsp.message], [0xFF00])


async def scenario_clear_counters(server: ModbusTcpServer, source: str) -> None:
    """FC 8 sub-functions 10 (clear counters and diagnostic register) and 20 (clear overrun)."""
    _ = server
    async with client_from(source) as c:
        expect_response("FC8/10", await c.diag_clear_counters(), ClearCountersResponse)
        expect_response("FC8/20", await c.diag_clear_overrun_counter(), ClearOverrunCountResponse)


#: Requests and spacing of the device-identification storm.
STORM_REQUESTS = 12
STORM_INTERVAL = 0.16


async def scenario_device_id_storm(server: ModbusTcpServer, source: str) -> None:
    """12 x FC 43/14 read device identification, read codes 1, 2, 3 cycling, in ~1.8 s."""
    _ = server
    loop = asyncio.get_running_loop()
    async with client_from(source) as c:
        start = loop.time()
        for i in range(STORM_REQUESTS):
            await asyncio.sleep(max(0.0, start + i * STORM_INTERVAL - loop.time()))
            read_code = 1 + i % 3
            expect_device_id(
                f"FC43/14 #{i + 1} code {read_code}",
                await c.read_device_information(read_code=read_code, object_id=0),
                read_code,
            )


async def scenario_function_scan(server: ModbusTcpServer, source: str) -> None:
    """Raw probe of function codes 1..127 (``fc 00 00 00 01``), skipping writes and FC 8."""
    _ = server
    answered: list[int] = []
    async with raw_from(source) as conn:
        for fc in range(1, 128):
            if fc in SCAN_SKIPPED:
                continue
            rsp = await conn.request(bytes([fc, 0x00, 0x00, 0x00, 0x01]))
            label = f"scan FC {fc}"
            if fc in SCAN_ANSWERED:
                if not rsp or rsp[0] != fc:
                    raise UnexpectedResponse(
                        f"{label}: expected a normal response, got {rsp.hex()}"
                    )
                answered.append(fc)
            elif fc == 43:
                # MEI type 0 is unknown: a proper exception, function code 0xAB
                expect_raw_exception(label, rsp, 43, ExcCodes.ILLEGAL_FUNCTION)
            else:
                # no PDU class: pymodbus answers function code 0x80, not fc | 0x80
                expect_raw_exception(label, rsp, 0x00, ExcCodes.ILLEGAL_FUNCTION)
    log.debug("scan: normal responses to FC %s", answered)


async def scenario_exception_storm(server: ModbusTcpServer, source: str) -> None:
    """40 x FC 3 at addresses 1000..1039, outside the datastore: exception 02 each time."""
    _ = server
    async with client_from(source) as c:
        for address in range(1000, 1040):
            expect_exception(
                f"FC3 @{address}",
                await c.read_holding_registers(address, count=1),
                3,
                ExcCodes.ILLEGAL_ADDRESS,
            )


#: Number of writes in the master's write flood, and its time budget.
FLOOD_WRITES = 200
FLOOD_BUDGET = 1.0


async def scenario_write_flood(server: ModbusTcpServer, source: str) -> None:
    """200 x FC 6 to register 10 (values 1..200) back to back, well under 1 s."""
    loop = asyncio.get_running_loop()
    async with client_from(source) as c:
        start = loop.time()
        for value in range(1, FLOOD_WRITES + 1):
            expect_ok(f"FC6 #{value}", await c.write_register(10, value))
        elapsed = loop.time() - start
    log.debug("write flood: %d writes in %.3f s", FLOOD_WRITES, elapsed)
    if elapsed >= FLOOD_BUDGET:
        raise RuntimeError(f"write flood took {elapsed:.3f} s, more than {FLOOD_BUDGET} s")
    expect_values("FC6 effect", await holding_registers(server, 10, 1), [FLOOD_WRITES])


async def scenario_broadcast_write(server: ModbusTcpServer, source: str) -> None:
    """FC 6 and FC 16 to unit id 0 (broadcast): executed by the server, never answered."""
    trace = PacketTrace()
    async with client_from(source, trace) as c:
        # The server runs with broadcast_enable=True, so unit 0 is a broadcast: it
        # executes the write and sends nothing back; the client must not wait.
        await c.write_register(10, 0x4242, device_id=0, no_response_expected=True)
        await asyncio.sleep(SILENCE_TIMEOUT)
        await c.write_registers(
            20, [0x0101, 0x0202, 0x0303], device_id=0, no_response_expected=True
        )
        await asyncio.sleep(SILENCE_TIMEOUT)
    if trace.received:
        raise UnexpectedResponse(f"broadcast got a response: {b''.join(trace.received).hex()}")
    expect_values("FC6 effect", await holding_registers(server, 10, 1), [0x4242])
    expect_values("FC16 effect", await holding_registers(server, 20, 3), [0x0101, 0x0202, 0x0303])


async def scenario_out_of_range_write(server: ModbusTcpServer, source: str) -> None:
    """FC 6 to register 5000 and FC 16 to 4000..4009: exception 02 illegal data address."""
    _ = server
    async with client_from(source) as c:
        expect_exception("FC6 @5000", await c.write_register(5000, 1), 6, ExcCodes.ILLEGAL_ADDRESS)
        expect_exception(
            "FC16 @4000+10",
            await c.write_registers(4000, list(range(1, 11))),
            16,
            ExcCodes.ILLEGAL_ADDRESS,
        )


async def scenario_malformed(server: ModbusTcpServer, source: str) -> None:
    """Protocol id 1 (no answer), MBAP length 8 on a 5-byte FC 3, FC 0x5B, then a valid FC 3."""
    _ = server
    read_one = struct.pack(">BHH", 3, 0, 1)
    # Connection 1: protocol id 0x0001.  pymodbus logs "Invalid Modbus protocol id",
    # never answers and keeps the bytes at the head of its buffer, so nothing else
    # on this connection would ever be answered: wait a little, then close.
    async with raw_from(source) as conn:
        frame = mbap(conn.next_transaction_id(), read_one, protocol=1)
        rsp = await conn.exchange(frame, SILENCE_TIMEOUT)
        if rsp is not None:
            raise UnexpectedResponse(f"protocol id 1: expected silence, got {rsp.hex()}")
    # Connection 2: the rest.
    async with raw_from(source) as conn:
        # MBAP length 8 = unit + FC 3 request (5 bytes) + 2 junk bytes: pymodbus
        # takes the whole frame, ignores the junk and answers the read normally.
        tid = conn.next_transaction_id()
        rsp = await conn.exchange(mbap(tid, read_one + b"\xde\xad", length=8))
        expect_raw_pdu(
            "FC3 with junk", (rsp or b"")[7:], struct.pack(">BBH", 3, 2, HOLDING_REGISTERS[0])
        )
        # Function code 0x5B (not public): exception 01 with function code 0x80.
        rsp = await conn.request(bytes([0x5B, 0x00, 0x00, 0x00, 0x01]))
        expect_raw_exception("FC 0x5B", rsp, 0x00, ExcCodes.ILLEGAL_FUNCTION)
        # A valid read afterwards is answered.
        rsp = await conn.request(struct.pack(">BHH", 3, 0, 2))
        expect_raw_pdu("FC3 valid", rsp, struct.pack(">BBHH", 3, 4, *HOLDING_REGISTERS[0:2]))


#: Records written by the FC 21 scenario (two sub-requests; see pcaps.record.modbus).
FILE_RECORDS = (
    (4, 7, b"\xde\xad\xbe\xef"),
    (5, 9, b"FIRMWARE"),
)


async def scenario_file_record_write(server: ModbusTcpServer, source: str) -> None:
    """FC 21 write file record with two sub-requests, echoed back by the server."""
    _ = server
    records = [
        FileRecord(file_number=f, record_number=r, record_data=d) for f, r, d in FILE_RECORDS
    ]
    async with client_from(source) as c:
        written = expect_response(
            "FC21", await c.write_file_record(records), WriteFileRecordResponse
        )
        expect_values(
            "FC21", [r.record_data for r in written.records], [d for _, _, d in FILE_RECORDS]
        )


async def scenario_recon_diagnostics(server: ModbusTcpServer, source: str) -> None:
    """FC 17, 11, 12, 7 and FC 8 sub-function 0 (return query data): reconnaissance."""
    _ = server
    async with client_from(source) as c:
        expect_response("FC17", await c.report_device_id(), ReportDeviceIdResponse)
        expect_response("FC11", await c.diag_get_comm_event_counter(), GetCommEventCounterResponse)
        expect_response("FC12", await c.diag_get_comm_event_log(), GetCommEventLogResponse)
        expect_response("FC7", await c.read_exception_status(), ReadExceptionStatusResponse)
        echo = expect_response(
            "FC8/0", await c.diag_query_data(b"\x12\x34"), ReturnQueryDataResponse
        )
        expect_values("FC8/0 echo", [echo.message], [b"\x12\x34"])


async def scenario_mass_write(server: ModbusTcpServer, source: str) -> None:
    """FC 16 zeroing all 100 registers (0..99) and FC 15 clearing all 64 coils (0..63)."""
    async with client_from(source) as c:
        expect_ok("FC16 x100", await c.write_registers(0, [0] * REGISTER_COUNT))
        expect_ok("FC15 x64", await c.write_coils(0, [False] * BIT_COUNT))
    expect_values("FC16 effect", await holding_registers(server, 0, REGISTER_COUNT), [0] * 100)
    expect_values("FC15 effect", await coils(server, 0, BIT_COUNT), [False] * BIT_COUNT)


#: UMAS requests: (session 0x00, UMAS function) -> read PLC id, start PLC, stop PLC.
UMAS_REQUESTS = (b"\x5a\x00\x02", b"\x5a\x00\x40", b"\x5a\x00\x41")


async def scenario_umas(server: ModbusTcpServer, source: str) -> None:
    """FC 90 (0x5A, Schneider UMAS): read PLC id, start PLC, stop PLC; exception 0x80/01."""
    _ = server
    async with raw_from(source) as conn:
        for pdu in UMAS_REQUESTS:
            rsp = await conn.request(pdu)
            expect_raw_exception(f"UMAS {pdu.hex()}", rsp, 0x00, ExcCodes.ILLEGAL_FUNCTION)


#: Pause between the master's identification read and its write.
RECON_PAUSE = 1.0
RECON_VALUES = [1111, 2222, 3333, 4444, 5555]


async def scenario_recon_then_write(server: ModbusTcpServer, source: str) -> None:
    """FC 43/14 basic device identification, then 1 s later FC 16 to registers 20..24."""
    async with client_from(source) as c:
        expect_device_id(
            "FC43/14 code 1", await c.read_device_information(read_code=1, object_id=0), 1
        )
        await asyncio.sleep(RECON_PAUSE)
        expect_ok("FC16", await c.write_registers(20, RECON_VALUES))
    expect_values("FC16 effect", await holding_registers(server, 20, 5), RECON_VALUES)


# --------------------------------------------------------------------------- #
# Recording
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class AttackScenario:
    """One capture file: what runs, from which address, against which server."""

    filename: str
    run: Callable[[ModbusTcpServer, str], Awaitable[None]]
    source: str = ATTACKER
    broadcast_enable: bool = False

    @property
    def description(self) -> str:
        """First line of the scenario function's docstring."""
        return (self.run.__doc__ or "").strip().splitlines()[0]

    def matches(self, name: str) -> bool:
        """True if ``name`` selects this scenario (file name prefix, ``attack-`` optional)."""
        return self.filename.startswith(name) or self.filename.startswith(f"attack-{name}")


SCENARIOS: tuple[AttackScenario, ...] = (
    AttackScenario("attack-unauthorised-write.pcapng", scenario_unauthorised_write),
    AttackScenario("attack-force-listen-only.pcapng", scenario_force_listen_only),
    AttackScenario("attack-restart-comms.pcapng", scenario_restart_comms),
    AttackScenario("attack-clear-counters.pcapng", scenario_clear_counters),
    AttackScenario("attack-device-id-storm.pcapng", scenario_device_id_storm),
    AttackScenario("attack-function-scan.pcapng", scenario_function_scan),
    AttackScenario("attack-exception-storm.pcapng", scenario_exception_storm),
    AttackScenario("attack-write-flood.pcapng", scenario_write_flood, MASTER),
    AttackScenario(
        "attack-broadcast-write.pcapng", scenario_broadcast_write, MASTER, broadcast_enable=True
    ),
    AttackScenario("attack-out-of-range-write.pcapng", scenario_out_of_range_write, MASTER),
    AttackScenario("attack-malformed.pcapng", scenario_malformed),
    AttackScenario("attack-file-record-write.pcapng", scenario_file_record_write),
    AttackScenario("attack-recon-diagnostics.pcapng", scenario_recon_diagnostics),
    AttackScenario("attack-mass-write.pcapng", scenario_mass_write, MASTER),
    AttackScenario("attack-umas.pcapng", scenario_umas),
    AttackScenario("attack-recon-then-write.pcapng", scenario_recon_then_write, MASTER),
)


async def record_scenario(scenario: AttackScenario, out_dir: Path) -> Path:
    """Run one scenario against a fresh victim server while capturing it; return the file."""
    path = out_dir / scenario.filename
    async with (
        victim_server(broadcast_enable=scenario.broadcast_enable) as server,
        arecord(path, BPF_FILTER),
    ):
        await scenario.run(server, scenario.source)
    size = path.stat().st_size
    if size > MAX_CAPTURE_BYTES:
        raise RuntimeError(f"{path} is {size} bytes, more than {MAX_CAPTURE_BYTES}")
    return path


async def record_all(out_dir: Path, only: Sequence[str] = ()) -> list[Path]:
    """Record every scenario, or those selected by ``only`` (see :meth:`AttackScenario.matches`)."""
    selected = [s for s in SCENARIOS if not only or any(s.matches(n) for n in only)]
    if only and not selected:
        raise SystemExit(f"no scenario matches {' '.join(only)}")
    written = []
    for scenario in selected:
        path = await record_scenario(scenario, out_dir)
        log.info(
            "wrote %s (%d bytes, from %s): %s",
            path,
            path.stat().st_size,
            scenario.source,
            scenario.description,
        )
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    return recorder_main(
        argv,
        prog="python -m pcaps.record.modbus_attacks",
        description=__doc__.splitlines()[0],
        only_help="record only scenarios whose file name starts with NAME or attack-NAME",
        record_all=record_all,
    )


if __name__ == "__main__":
    sys.exit(main())
