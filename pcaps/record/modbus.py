"""Record reference Modbus/TCP captures from a real pymodbus server and client.

Run from the repository root (as root, port 502 is privileged and dumpcap
needs capture rights)::

    python -m pcaps.record.modbus [--out-dir pcaps/modbus]

Every scenario starts a fresh pymodbus TCP server on 127.0.0.1 with the same
deterministic datastore and device identification, starts ``dumpcap`` on the
loopback interface, opens exactly one TCP connection, runs its requests one at
a time, closes the connection (FIN), and stops the capture.  Every response is
checked against what the scenario expects, so a behaviour change in pymodbus
makes the script fail instead of silently producing different captures.

Register values, request order and payloads are fixed; only timestamps, the
client's ephemeral port and TCP sequence numbers differ between runs.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.pdu import FileRecord, ModbusPDU
from pymodbus.pdu.device import ModbusDeviceIdentification
from pymodbus.pdu.diag_message import ReturnQueryDataResponse
from pymodbus.pdu.file_message import (
    ReadFifoQueueResponse,
    ReadFileRecordResponse,
    WriteFileRecordResponse,
)
from pymodbus.pdu.mei_message import ReadDeviceInformationResponse
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from pcaps.record.capture import arecord, recorder_main

log = logging.getLogger("pcaps.record.modbus")

HOST = "127.0.0.1"
MODBUS_PORT = 502
NONSTANDARD_PORT = 5020
UNIT_ID = 1
MAX_CAPTURE_BYTES = 50_000

# --------------------------------------------------------------------------- #
# Deterministic server contents
# --------------------------------------------------------------------------- #
#: Number of coils / discrete inputs (bit addresses 0..63).
BIT_COUNT = 64
#: Number of holding / input registers (addresses 0..99).
REGISTER_COUNT = 100
#: Coil i is ON when i % 3 == 0 (0b...1001001 pattern).
COILS = [i % 3 == 0 for i in range(BIT_COUNT)]
#: Discrete input i is ON when i % 4 is 0 or 1 (0b...00110011 pattern).
DISCRETE_INPUTS = [i % 4 in (0, 1) for i in range(BIT_COUNT)]
#: Holding register i = 1000 + i.
HOLDING_REGISTERS = [1000 + i for i in range(REGISTER_COUNT)]
#: Input register i = 2000 + i.
INPUT_REGISTERS = [2000 + i for i in range(REGISTER_COUNT)]

#: Objects of FC 43/14 Read Device Identification (0x00-0x06 standard, 0x80+ private).
DEVICE_IDENTITY: dict[int, str] = {
    0x00: "ICSWatch Test Vendor",  # VendorName
    0x01: "IW-PLC-1000",  # ProductCode
    0x02: "V2.4",  # MajorMinorRevision
    0x03: "https://icswatch.example/plc",  # VendorUrl
    0x04: "ICSWatch Reference PLC",  # ProductName
    0x05: "IW-1000-TCP",  # ModelName
    0x06: "pcaps.record.modbus",  # UserApplicationName
    0x80: "serial=IW1000-0042",  # private (extended) objects
    0x81: "site=loopback-lab",
}


def build_device() -> SimDevice:
    """Return the server datastore: one device answering every unit id (id 0).

    Coils, discrete inputs, holding and input registers are four separate
    blocks; coils and discrete inputs are addressed per bit.
    """
    return SimDevice(
        id=0,
        simdata=(
            [SimData(0, values=list(COILS), datatype=DataType.BITS)],
            [SimData(0, values=list(DISCRETE_INPUTS), datatype=DataType.BITS)],
            [SimData(0, values=list(HOLDING_REGISTERS), datatype=DataType.REGISTERS)],
            [SimData(0, values=list(INPUT_REGISTERS), datatype=DataType.REGISTERS)],
        ),
    )


def build_identity() -> ModbusDeviceIdentification:
    """Return the device identification served for FC 43/14 and FC 17."""
    return ModbusDeviceIdentification(info=dict(DEVICE_IDENTITY))  # type: ignore[no-untyped-call]


@asynccontextmanager
async def modbus_server(port: int) -> AsyncIterator[ModbusTcpServer]:
    """Run a fresh pymodbus TCP server on ``HOST:port`` for the duration of the block."""
    server = ModbusTcpServer(build_device(), identity=build_identity(), address=(HOST, port))
    await server.serve_forever(background=True)
    try:
        yield server
    finally:
        await server.shutdown()  # type: ignore[no-untyped-call]


# --------------------------------------------------------------------------- #
# Response checks
# --------------------------------------------------------------------------- #
class UnexpectedResponse(AssertionError):
    """A server response differs from what the scenario expects."""


PDU = TypeVar("PDU", bound=ModbusPDU)


def expect_response(label: str, response: ModbusPDU | None, kind: type[PDU]) -> PDU:
    """Fail unless ``response`` is a normal (non-exception) response of class ``kind``."""
    if response is None or response.isError() or not isinstance(response, kind):
        raise UnexpectedResponse(f"{label}: expected a normal {kind.__name__}, got {response}")
    log.debug("%s -> %s", label, response)
    return response


def expect_ok(label: str, response: ModbusPDU | None) -> ModbusPDU:
    """Fail unless ``response`` is a normal (non-exception) response."""
    return expect_response(label, response, ModbusPDU)


def expect_values(label: str, actual: Sequence[Any], expected: Sequence[Any]) -> None:
    """Fail unless the returned bits/registers equal ``expected``."""
    if list(actual) != list(expected):
        raise UnexpectedResponse(f"{label}: expected {list(expected)}, got {list(actual)}")


# --------------------------------------------------------------------------- #
# Clients
# --------------------------------------------------------------------------- #
@asynccontextmanager
async def modbus_client(port: int) -> AsyncIterator[AsyncModbusTcpClient]:
    """Connect one pymodbus client (no retries, no reconnects) and close it afterwards."""
    client = AsyncModbusTcpClient(HOST, port=port, timeout=2, retries=0, reconnect_delay=0)
    if not await client.connect():
        raise ConnectionError(f"cannot connect to Modbus server {HOST}:{port}")
    try:
        yield client
    finally:
        client.close()


class RawModbusConnection:
    """Plain asyncio TCP connection sending hand-built Modbus/TCP frames.

    The exceptions capture uses it for all of its requests, because one of
    them cannot go through the pymodbus client: the server answers the unknown
    function code with function code 0x80, which the pymodbus client cannot
    decode, and every capture must stay on one TCP connection.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Wrap an open stream pair."""
        self.reader = reader
        self.writer = writer
        self.transaction_id = 0

    @classmethod
    async def open(cls, port: int) -> RawModbusConnection:
        """Connect to ``HOST:port``."""
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    async def request(self, pdu: bytes, unit_id: int = UNIT_ID) -> bytes:
        """Send one request PDU in an MBAP frame and return the response PDU."""
        self.transaction_id += 1
        header = struct.pack(">HHHB", self.transaction_id, 0, len(pdu) + 1, unit_id)
        self.writer.write(header + pdu)
        await self.writer.drain()
        mbap = await asyncio.wait_for(self.reader.readexactly(7), timeout=2)
        tid, protocol, length, unit = struct.unpack(">HHHB", mbap)
        body = await asyncio.wait_for(self.reader.readexactly(length - 1), timeout=2)
        if (tid, protocol, unit) != (self.transaction_id, 0, unit_id):
            raise UnexpectedResponse(f"bad MBAP header in response: {mbap.hex()}")
        return body

    async def close(self) -> None:
        """Close the connection (FIN) and wait until it is closed."""
        self.writer.close()
        await self.writer.wait_closed()


def expect_raw_exception(label: str, response: bytes, function_code: int, code: int) -> None:
    """Fail unless the raw response PDU is ``function_code | 0x80`` with ``code``."""
    expected = bytes([function_code | 0x80, code])
    if response != expected:
        raise UnexpectedResponse(f"{label}: expected {expected.hex()}, got {response.hex()}")
    log.debug("%s -> %s", label, response.hex())


# --------------------------------------------------------------------------- #
# Scenarios
# --------------------------------------------------------------------------- #
async def scenario_read_write(port: int) -> None:
    """Public data-access and device function codes, all answered normally."""
    async with modbus_client(port) as c:
        # FC 1 read coils / FC 2 read discrete inputs
        for address, count in ((0, 8), (3, 13), (16, 48)):
            rr = expect_ok(f"FC1 {address}+{count}", await c.read_coils(address, count=count))
            expect_values("FC1", rr.bits[:count], COILS[address : address + count])
        for address, count in ((0, 8), (5, 21)):
            rr = expect_ok(
                f"FC2 {address}+{count}", await c.read_discrete_inputs(address, count=count)
            )
            expect_values("FC2", rr.bits[:count], DISCRETE_INPUTS[address : address + count])
        # FC 3 read holding registers / FC 4 read input registers
        for address, count in ((0, 10), (50, 5), (99, 1), (0, 100)):
            rr = expect_ok(
                f"FC3 {address}+{count}",
                await c.read_holding_registers(address, count=count),
            )
            expect_values("FC3", rr.registers, HOLDING_REGISTERS[address : address + count])
        for address, count in ((0, 10), (20, 4)):
            rr = expect_ok(
                f"FC4 {address}+{count}", await c.read_input_registers(address, count=count)
            )
            expect_values("FC4", rr.registers, INPUT_REGISTERS[address : address + count])
        # FC 5 write single coil (on, then off) and read back
        expect_ok("FC5 on", await c.write_coil(1, True))
        expect_ok("FC5 off", await c.write_coil(3, False))
        rr = expect_ok("FC1 readback", await c.read_coils(0, count=8))
        expect_values("FC1 readback", rr.bits[:4], [True, True, False, False])
        # FC 6 write single register
        rr = expect_ok("FC6", await c.write_register(10, 0x1234))
        expect_values("FC6", rr.registers, [0x1234])
        # FC 15 write multiple coils
        bits = [True, False, True, True, False, False, True, False, True, True]
        expect_ok("FC15", await c.write_coils(20, bits))
        rr = expect_ok("FC1 readback", await c.read_coils(20, count=len(bits)))
        expect_values("FC1 readback", rr.bits[: len(bits)], bits)
        # FC 16 write multiple registers
        expect_ok("FC16", await c.write_registers(20, [0xCAFE, 0xBEEF, 4242]))
        rr = expect_ok("FC3 readback", await c.read_holding_registers(20, count=3))
        expect_values("FC3 readback", rr.registers, [0xCAFE, 0xBEEF, 4242])
        # FC 22 mask write register: (0x1234 AND 0xF0F2) OR (0x0025 AND NOT 0xF0F2)
        expect_ok("FC22", await c.mask_write_register(address=10, and_mask=0xF0F2, or_mask=0x0025))
        rr = expect_ok("FC3 readback", await c.read_holding_registers(10, count=1))
        expect_values("FC22 readback", rr.registers, [0x1035])
        # FC 23 read/write multiple registers (write happens before the read)
        rr = expect_ok(
            "FC23",
            await c.readwrite_registers(
                read_address=28, read_count=6, write_address=30, values=[7, 8]
            ),
        )
        expect_values("FC23", rr.registers, [1028, 1029, 7, 8, 1032, 1033])
        # FC 24 read FIFO queue (pymodbus server answers a fixed dummy queue)
        fifo = expect_response("FC24", await c.read_fifo_queue(address=40), ReadFifoQueueResponse)
        expect_values("FC24", fifo.values, [0, 1, 2, 3])
        # FC 7 read exception status, FC 11 / 12 comm event counter / log
        expect_ok("FC7", await c.read_exception_status())
        expect_ok("FC11", await c.diag_get_comm_event_counter())
        expect_ok("FC12", await c.diag_get_comm_event_log())
        # FC 17 report server id
        expect_ok("FC17", await c.report_device_id())
        # FC 20 read file record: two sub-requests of 10 registers each
        # (FileRecord's record_length= is in bytes, the wire carries registers)
        read = expect_response(
            "FC20",
            await c.read_file_record(
                [
                    FileRecord(file_number=4, record_number=1, record_length=20),
                    FileRecord(file_number=4, record_number=12, record_length=20),
                ]
            ),
            ReadFileRecordResponse,
        )
        expect_values("FC20", [len(r.record_data) for r in read.records], [20, 20])
        # FC 21 write file record: two sub-requests.  pymodbus 3.16 decodes each
        # sub-request twice, so a request with an odd number of sub-requests is
        # rejected with exception 0x80/01; an even number round-trips fine.
        records = [
            FileRecord(file_number=4, record_number=7, record_data=b"\x00\x01\x00\x02"),
            FileRecord(file_number=5, record_number=9, record_data=b"ICSWATCH"),
        ]
        written = expect_response(
            "FC21", await c.write_file_record(records), WriteFileRecordResponse
        )
        expect_values(
            "FC21", [r.record_data for r in written.records], [r.record_data for r in records]
        )


async def scenario_diagnostics(port: int) -> None:
    """FC 8 diagnostics sub-functions; force-listen-only near the end, then restart."""
    async with modbus_client(port) as c:
        echo = expect_response(
            "FC8/0", await c.diag_query_data(b"\xa5\x37\x42\x00"), ReturnQueryDataResponse
        )
        expect_values("FC8/0 echo", [echo.message], [b"\xa5\x37\x42\x00"])
        expect_ok("FC8/1", await c.diag_restart_communication(False))
        expect_ok("FC8/2", await c.diag_read_diagnostic_register())
        # data field is "char 00"; 0x0A00 keeps LF as the delimiter
        expect_ok("FC8/3", await c.diag_change_ascii_input_delimeter(delimiter=0x0A00))
        expect_ok("FC8/10", await c.diag_clear_counters())
        expect_ok("FC8/11", await c.diag_read_bus_message_count())
        expect_ok("FC8/12", await c.diag_read_bus_comm_error_count())
        expect_ok("FC8/13", await c.diag_read_bus_exception_error_count())
        expect_ok("FC8/14", await c.diag_read_device_message_count())
        expect_ok("FC8/15", await c.diag_read_device_no_response_count())
        expect_ok("FC8/16", await c.diag_read_device_nak_count())
        expect_ok("FC8/17", await c.diag_read_device_busy_count())
        expect_ok("FC8/18", await c.diag_read_bus_char_overrun_count())
        expect_ok("FC8/20", await c.diag_clear_overrun_counter())
        # Force listen only: the spec says no response; the pymodbus client does
        # not wait for one (no_response_expected defaults to True here).
        await c.diag_force_listen_only()
        await asyncio.sleep(0.2)
        # Restart communications option is the only way out of listen-only mode.
        expect_ok("FC8/1 after listen-only", await c.diag_restart_communication(True))
        rr = expect_ok("FC3 after restart", await c.read_holding_registers(0, count=2))
        expect_values("FC3 after restart", rr.registers, HOLDING_REGISTERS[0:2])


async def scenario_device_identification(port: int) -> None:
    """FC 43 / MEI 14 with read device id codes 1 (basic) .. 4 (specific object)."""
    async with modbus_client(port) as c:
        cases = (
            (1, 0x00, [0x00, 0x01, 0x02]),
            (2, 0x00, [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06]),
            (3, 0x00, [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x80, 0x81]),
            (4, 0x04, [0x04]),
            (4, 0x81, [0x81]),
        )
        for read_code, object_id, objects in cases:
            label = f"FC43/14 code {read_code} object {object_id:#04x}"
            info = expect_response(
                label,
                await c.read_device_information(read_code=read_code, object_id=object_id),
                ReadDeviceInformationResponse,
            )
            expect_values(label, sorted(info.information), objects)
            expect_values(
                label,
                [info.information[o] for o in objects],
                [DEVICE_IDENTITY[o].encode() for o in objects],
            )


async def scenario_exceptions(port: int) -> None:
    """Requests answered with exception responses, sent as raw frames on one connection."""
    conn = await RawModbusConnection.open(port)
    try:
        # 02 illegal data address: reads/writes outside the datastore
        rsp = await conn.request(struct.pack(">BHH", 3, REGISTER_COUNT, 1))
        expect_raw_exception("FC3 past end", rsp, 3, ExcCodes.ILLEGAL_ADDRESS)
        rsp = await conn.request(struct.pack(">BHH", 3, 95, 10))
        expect_raw_exception("FC3 straddling end", rsp, 3, ExcCodes.ILLEGAL_ADDRESS)
        rsp = await conn.request(struct.pack(">BHH", 4, 1000, 2))
        expect_raw_exception("FC4 past end", rsp, 4, ExcCodes.ILLEGAL_ADDRESS)
        rsp = await conn.request(struct.pack(">BHH", 1, BIT_COUNT, 8))
        expect_raw_exception("FC1 past end", rsp, 1, ExcCodes.ILLEGAL_ADDRESS)
        rsp = await conn.request(struct.pack(">BHH", 6, 500, 1))
        expect_raw_exception("FC6 past end", rsp, 6, ExcCodes.ILLEGAL_ADDRESS)
        # 03 illegal data value: write multiple registers with quantity 0
        rsp = await conn.request(struct.pack(">BHHB", 16, 0, 0, 0))
        expect_raw_exception("FC16 quantity 0", rsp, 16, ExcCodes.ILLEGAL_VALUE)
        # 03 illegal data value: read device identification with read code 5
        rsp = await conn.request(struct.pack(">BBBB", 43, 14, 5, 0))
        expect_raw_exception("FC43/14 read code 5", rsp, 43, ExcCodes.ILLEGAL_VALUE)
        # 02 illegal data address: specific object 0x50 (reserved range)
        rsp = await conn.request(struct.pack(">BBBB", 43, 14, 4, 0x50))
        expect_raw_exception("FC43/14 object 0x50", rsp, 43, ExcCodes.ILLEGAL_ADDRESS)
        # 01 illegal function: MEI type 13 (CANopen general reference) is unsupported
        rsp = await conn.request(struct.pack(">BBBB", 43, 13, 0, 0))
        expect_raw_exception("FC43/13", rsp, 43, ExcCodes.ILLEGAL_FUNCTION)
        # 04 server device failure: diagnostics sub-function 5 (reserved) makes the
        # pymodbus server's handler fail internally
        rsp = await conn.request(struct.pack(">BHH", 8, 5, 0))
        expect_raw_exception("FC8/5", rsp, 8, ExcCodes.DEVICE_FAILURE)
        # 01 illegal function: user-defined function code 65.  pymodbus cannot decode
        # the request and answers with function code 0x80 (not 0xC1), exception 01.
        rsp = await conn.request(bytes([65, 0x00, 0x00]))
        expect_raw_exception("FC65", rsp, 0x00, ExcCodes.ILLEGAL_FUNCTION)
    finally:
        await conn.close()


async def scenario_nonstandard_port(port: int) -> None:
    """Ordinary reads and writes; the point is the server port (5020, not 502)."""
    async with modbus_client(port) as c:
        rr = expect_ok("FC3", await c.read_holding_registers(0, count=8))
        expect_values("FC3", rr.registers, HOLDING_REGISTERS[0:8])
        rr = expect_ok("FC4", await c.read_input_registers(0, count=4))
        expect_values("FC4", rr.registers, INPUT_REGISTERS[0:4])
        rr = expect_ok("FC1", await c.read_coils(0, count=16))
        expect_values("FC1", rr.bits[:16], COILS[0:16])
        rr = expect_ok("FC2", await c.read_discrete_inputs(0, count=16))
        expect_values("FC2", rr.bits[:16], DISCRETE_INPUTS[0:16])
        expect_ok("FC6", await c.write_register(5, 555))
        expect_ok("FC16", await c.write_registers(6, [666, 777]))
        rr = expect_ok("FC3 readback", await c.read_holding_registers(4, count=4))
        expect_values("FC3 readback", rr.registers, [1004, 555, 666, 777])
        expect_ok("FC5", await c.write_coil(2, True))
        expect_ok("FC15", await c.write_coils(8, [False, True, False, True]))
        rr = expect_ok("FC1 readback", await c.read_coils(0, count=16))
        expected = list(COILS[0:16])
        expected[2] = True
        expected[8:12] = [False, True, False, True]
        expect_values("FC1 readback", rr.bits[:16], expected)


async def scenario_many_units(port: int) -> None:
    """Unit-id sweep: the same holding-register read sent to unit ids 1..30."""
    async with modbus_client(port) as c:
        for unit in range(1, 31):
            rr = expect_ok(
                f"FC3 unit {unit}", await c.read_holding_registers(0, count=2, device_id=unit)
            )
            expect_values(f"FC3 unit {unit}", rr.registers, HOLDING_REGISTERS[0:2])


@dataclass(frozen=True)
class Scenario:
    """One capture file: what runs, on which port, and what it shows."""

    filename: str
    run: Callable[[int], Awaitable[None]]
    port: int = MODBUS_PORT

    @property
    def description(self) -> str:
        """First line of the scenario function's docstring."""
        return (self.run.__doc__ or "").strip().splitlines()[0]


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("read-write.pcapng", scenario_read_write),
    Scenario("diagnostics.pcapng", scenario_diagnostics),
    Scenario("device-identification.pcapng", scenario_device_identification),
    Scenario("exceptions.pcapng", scenario_exceptions),
    Scenario("nonstandard-port.pcapng", scenario_nonstandard_port, port=NONSTANDARD_PORT),
    Scenario("many-units.pcapng", scenario_many_units),
)


async def record_scenario(scenario: Scenario, out_dir: Path) -> Path:
    """Run one scenario against a fresh server while capturing it; return the file."""
    path = out_dir / scenario.filename
    async with (
        modbus_server(scenario.port),
        arecord(path, f"tcp port {scenario.port} and host {HOST}"),
    ):
        await scenario.run(scenario.port)
    size = path.stat().st_size
    if size > MAX_CAPTURE_BYTES:
        raise RuntimeError(f"{path} is {size} bytes, more than {MAX_CAPTURE_BYTES}")
    return path


async def record_all(out_dir: Path, only: Sequence[str] = ()) -> list[Path]:
    """Record every scenario (or those whose file name starts with one of ``only``)."""
    written = []
    for scenario in SCENARIOS:
        if only and not any(scenario.filename.startswith(name) for name in only):
            continue
        path = await record_scenario(scenario, out_dir)
        log.info("wrote %s (%d bytes): %s", path, path.stat().st_size, scenario.description)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    return recorder_main(
        argv,
        prog="python -m pcaps.record.modbus",
        description=__doc__.splitlines()[0],
        only_help="record only scenarios whose file name starts with NAME",
        record_all=record_all,
    )


if __name__ == "__main__":
    sys.exit(main())
