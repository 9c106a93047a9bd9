"""Record reference EtherNet/IP captures from real stacks on loopback.

The device is cpppo's EtherNet/IP simulator (``python -m cpppo.server.enip``,
a Logix-like controller with tags and an Identity object), started fresh for
every capture on 127.0.0.1:44818 (TCP and UDP). The clients are the two
stacks plants use from Python: pycomm3 (Allen-Bradley's CIPDriver: List
Identity, Get Attributes All, Large Forward Open and connected messaging)
and cpppo's own client (tag reads and writes, fragmented services, Multiple
Service Packet, List Services/Interfaces, UDP List Identity, a small Forward
Open). Run from the repository root, as root (dumpcap needs capture rights)::

    python -m pcaps.record.enip [--out-dir pcaps/enip] [--only NAME ...]

Every reply is checked (values read back, identity, statuses), so a
behaviour change in either stack makes the script fail instead of silently
producing other captures. Session handles, ports, connection ids and
timestamps differ between runs; requests and tag values do not.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pcaps.record.capture import record

log = logging.getLogger("pcaps.record.enip")

HOST = "127.0.0.1"
ENIP_PORT = 44818
#: The simulated controller's tags: name=TYPE[count].
TAGS = ("SCADA=INT[100]", "TEMP=REAL", "BIG=DINT[400]", "SETPOINT=DINT[10]")
#: What cpppo's Identity object says about itself (its defaults).
PRODUCT_NAME = "1756-L61/B LOGIX5561"
VENDOR_ID = 1
DEVICE_TYPE = 14
PRODUCT_CODE = 54
BPF_FILTER = f"port {ENIP_PORT}"


class UnexpectedReply(RuntimeError):
    """A stack answered otherwise than the capture is meant to show."""


def expect(label: str, got: Any, want: Any) -> None:
    if got != want:
        raise UnexpectedReply(f"{label}: expected {want!r}, got {got!r}")
    log.debug("%s -> %r", label, got)


@contextlib.contextmanager
def simulator(host: str = HOST, tags: Sequence[str] = TAGS) -> Iterator[subprocess.Popen[bytes]]:
    """Run cpppo's EtherNet/IP simulator on ``host``:44818 (TCP and UDP)
    until the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cpppo.server.enip", "--no-config", "--no-print",
         "--address", f"{host}:{ENIP_PORT}", *tags],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"cpppo simulator exited with {process.returncode}")
            with contextlib.suppress(OSError), socket.create_connection((host, ENIP_PORT), 0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("cpppo simulator did not start within 15 s")
            time.sleep(0.1)
        time.sleep(0.3)  # let the probe connection's close settle before capturing
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpppo_connector(source: str | None = None, udp: bool = False) -> Any:
    from cpppo.server.enip import client

    return client.connector(host=HOST, port=ENIP_PORT, timeout=3, udp=udp,
                            source_address=source)


def cpppo_tags(operations: Sequence[str], *, source: str | None = None, fragment: bool = False,
               multiple: int = 0) -> list[Any]:
    """Run tag operations (cpppo syntax: ``SCADA[1]``, ``SCADA[2-4]=(INT)7,8,9``)
    on one connection; return each operation's result (values, or True for
    a write), failing on any error status."""
    from cpppo.server.enip import client

    with cpppo_connector(source) as conn:
        ops = client.parse_operations(list(operations))
        results = list(conn.results(ops, fragment=fragment, multiple=multiple, timeout=3))
    for operation, result in zip(operations, results, strict=True):
        if result is None:
            raise UnexpectedReply(f"{operation}: no successful reply")
    return results


def cpppo_service(conn: Any, code: int, path: str, data: list[int] | None = None) -> Any:
    """Send one CIP service through Unconnected Send and return the reply
    (None when the device answers with an encapsulation error)."""
    from cpppo.server.enip import client

    conn.service_code(code=code, path=path, data=data)
    reply, _ = client.await_response(conn, timeout=3)
    if reply is None:
        return None
    return reply.get("enip.CIP.send_data.CPF.item[1].unconnected_send.request")


# -- scenarios ----------------------------------------------------------------


def scenario_list_identity(_: Path) -> None:
    """TCP List Identity (pycomm3), then List Services, List Identity and
    List Interfaces over TCP and List Identity over UDP (cpppo)."""
    from cpppo.server.enip import client
    from pycomm3 import CIPDriver

    identity = CIPDriver.list_identity(HOST)
    expect("pycomm3 list_identity", identity and identity["product_name"], PRODUCT_NAME)
    with cpppo_connector() as conn:
        for request in (conn.list_services, conn.list_identity, conn.list_interfaces):
            request()
            reply, _ = client.await_response(conn, timeout=3)
            if reply is None or reply.get("enip.status") != 0:
                raise UnexpectedReply(f"{request.__name__}: {reply}")
    with cpppo_connector(udp=True) as conn:
        conn.list_identity()
        reply, _ = client.await_response(conn, timeout=3)
        name = reply and reply.get("enip.CIP.list_identity.CPF.item[0].identity_object."
                                   "product_name")
        expect("UDP list_identity", name, PRODUCT_NAME)


def scenario_identity_attributes(_: Path) -> None:
    """The Identity object read the ways engineering tools read it:
    Get Attributes All (instance and class), Get Attribute Single of
    attributes 1 and 7, Get Attribute List of 1, 2, 3, 7 (pycomm3,
    unconnected)."""
    from pycomm3 import CIPDriver, ClassCode, Services

    with CIPDriver(HOST) as driver:
        reply = driver.generic_message(service=Services.get_attributes_all,
                                       class_code=ClassCode.identity_object, instance=1,
                                       connected=False, name="identity")
        expect("GAA identity", bytes(reply.value)[15:35].decode(), PRODUCT_NAME)
        for attribute, want in ((1, VENDOR_ID.to_bytes(2, "little")),
                                (7, bytes([len(PRODUCT_NAME)]) + PRODUCT_NAME.encode())):
            reply = driver.generic_message(service=Services.get_attribute_single,
                                           class_code=ClassCode.identity_object, instance=1,
                                           attribute=attribute, connected=False)
            expect(f"GAS identity/{attribute}", bytes(reply.value), want)
        reply = driver.generic_message(service=Services.get_attributes_all,
                                       class_code=ClassCode.identity_object, instance=0,
                                       connected=False, name="identity class")
        if reply.error:
            raise UnexpectedReply(f"GAA identity class: {reply.error}")
        reply = driver.generic_message(service=Services.get_attribute_list,
                                       class_code=ClassCode.identity_object, instance=1,
                                       request_data=b"\x04\x00\x01\x00\x02\x00\x03\x00\x07\x00",
                                       connected=False, name="identity list")
        # cpppo leaves out the attribute count: the reply starts with attribute 1.
        expect("GAL identity", bytes(reply.value)[:6], b"\x01\x00\x00\x00\x01\x00")


def scenario_tag_read_write(_: Path) -> None:
    """Logix tag services from the plant's HMI: Read Tag, Write Tag, a
    fragmented read of 300 DINTs (a partial transfer), one of 100, a fragmented write and
    a Multiple Service Packet of reads and writes (cpppo client)."""
    results = cpppo_tags(["SCADA[0-3]=(INT)11,22,33,44", "SCADA[0-3]", "TEMP=(REAL)21.5",
                          "TEMP", "SETPOINT[2]=(DINT)1500", "SETPOINT[2]"])
    expect("SCADA[0-3]", results[1], [11, 22, 33, 44])
    expect("SETPOINT[2]", results[5], [1500])
    results = cpppo_tags(["BIG[0-299]", "BIG[0-99]", "BIG[10-13]=(DINT)7,7,7,7"],
                         fragment=True)
    # 300 DINTs do not fit one reply: cpppo answers the first 122 with
    # status 0x06 (partial transfer), as a controller does.
    expect("BIG[0-299] first fragment", len(results[0]), 122)
    expect("BIG[0-99]", len(results[1]), 100)
    results = cpppo_tags(["SCADA[10]", "SCADA[11]=(INT)5", "TEMP", "SETPOINT[0-1]"],
                         multiple=500)
    expect("multiple: SCADA[10]", results[0], [0])


def scenario_connected_messaging(_: Path) -> None:
    """Class 3 connected messaging: pycomm3 opens a Large Forward Open and
    reads the Identity object over it (SendUnitData), then closes it; cpppo
    opens a (small) Forward Open, reads tags over it and closes it."""
    from cpppo.server.enip import client
    from pycomm3 import CIPDriver, ClassCode, Services

    with CIPDriver(HOST) as driver:
        for attribute in (1, 7, 6):
            reply = driver.generic_message(service=Services.get_attribute_single,
                                           class_code=ClassCode.identity_object, instance=1,
                                           attribute=attribute, connected=True)
            if reply.error:
                raise UnexpectedReply(f"connected GAS {attribute}: {reply.error}")
        reply = driver.generic_message(service=Services.get_attributes_all,
                                       class_code=ClassCode.identity_object, instance=1,
                                       connected=True)
        expect("connected GAA", bytes(reply.value)[15:35].decode(), PRODUCT_NAME)
    with client.implicit(host=HOST, port=ENIP_PORT, timeout=3) as conn:
        ops = client.parse_operations(["SCADA[0-1]", "TEMP", "SETPOINT[2]"])
        results = list(conn.results(ops, timeout=3))
        expect("connected reads", [r is not None for r in results], [True, True, True])


SCENARIOS: dict[str, Callable[[Path], None]] = {
    "list-identity": scenario_list_identity,
    "identity-attributes": scenario_identity_attributes,
    "tag-read-write": scenario_tag_read_write,
    "connected-messaging": scenario_connected_messaging,
}


def run(out_dir: Path, scenarios: dict[str, Callable[[Path], None]], only: Sequence[str],
        host: str = HOST) -> None:
    wanted = [name.removeprefix("attack-") for name in only]
    for name, scenario in scenarios.items():
        if wanted and not any(name.removeprefix("attack-").startswith(w) for w in wanted):
            continue
        path = out_dir / f"{name}.pcapng"
        with simulator(host), record(path, BPF_FILTER):
            scenario(path)
        log.info("%s: %d bytes", path, path.stat().st_size)


def main(argv: Sequence[str] | None = None, scenarios: dict[str, Callable[[Path], None]]
         = SCENARIOS, prog: str = "pcaps.record.enip") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("pcaps/enip"))
    parser.add_argument("--only", nargs="*", default=(), metavar="NAME")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("cpppo", "enip", "pycomm3", "network"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    os.umask(0o022)
    run(args.out_dir, scenarios, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
