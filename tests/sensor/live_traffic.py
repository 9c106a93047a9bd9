"""Real Modbus/TCP traffic for the live-capture test (tests/sensor/test_live_mirror.py).

    python tests/sensor/live_traffic.py server 10.77.0.2   # prints "ready", serves until killed
    python tests/sensor/live_traffic.py client 10.77.0.2   # reads, writes, force listen only

The server is the pymodbus simulator device the project's captures are
recorded against (pcaps/record/modbus.py); the client uses pymodbus too.
"""

from __future__ import annotations

import asyncio
import sys

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.server import ModbusTcpServer

from pcaps.record.modbus import HOLDING_REGISTERS, build_device, build_identity

PORT = 502


async def serve(host: str) -> None:
    server = ModbusTcpServer(build_device(), identity=build_identity(), address=(host, PORT))
    await server.serve_forever(background=True)
    print("ready", flush=True)
    await asyncio.Event().wait()


async def talk(host: str) -> None:
    client = AsyncModbusTcpClient(host, port=PORT, timeout=2, retries=0, reconnect_delay=0)
    if not await client.connect():
        raise SystemExit(f"cannot connect to {host}:{PORT}")
    try:
        rr = await client.read_holding_registers(0, count=4)
        assert rr.registers == HOLDING_REGISTERS[0:4], rr
        await client.read_coils(0, count=16)
        await client.read_input_registers(10, count=3)
        await client.write_register(5, 4242)
        await client.write_registers(20, values=[1, 2, 3])
        await client.write_coil(3, True)
        rr = await client.read_holding_registers(5, count=1)
        assert rr.registers == [4242], rr
        # FC 8/4 force listen only (no response): ICSW-MODBUS-002; then
        # restart communications (8/1), the only way out of listen-only mode.
        await client.diag_force_listen_only()
        await asyncio.sleep(0.2)
        await client.diag_restart_communication(True)
        await client.read_holding_registers(0, count=2)
    finally:
        client.close()
    await asyncio.sleep(0.2)  # the FIN exchange


def main() -> None:
    mode, host = sys.argv[1], sys.argv[2]
    asyncio.run(serve(host) if mode == "server" else talk(host))


if __name__ == "__main__":
    main()
