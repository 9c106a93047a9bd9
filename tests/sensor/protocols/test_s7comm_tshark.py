"""Oracle test: every decoded S7comm/COTP field against Wireshark 4.0's
dissectors (``s7comm``, ``cotp``), on pcaps/s7comm/ and ../shared/pcaps/s7comm/.

tshark dissects each capture to JSON. Each S7 PDU (an ``s7comm`` layer) and
each COTP control TPDU (connection request/confirm, disconnect…) is one unit,
matched with the icswatch event of the same frame in the same order; every
field either side names is compared (Wireshark names without the
``s7comm.`` prefix, ``cotp.*`` kept). A field missing on one side or with
another value disagrees unless `DOCUMENTED` says why Wireshark 4.0 shows the
same bytes another way. Frames tshark marks malformed must carry a
malformed icswatch event.

Wireshark 4.0 has no S7comm-plus dissector, so S7comm-plus is checked in
test_s7comm_plus.py against frames built from the protocol description.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest

from sensor.event import IcsEvent
from sensor.runtime import Sensor

REPO: Final = Path(__file__).resolve().parents[3]
OWN: Final = sorted((REPO / "pcaps" / "s7comm").glob("*.pcap*"))
SHARED_FOLDER: Final = REPO.parent / "shared" / "pcaps" / "s7comm"
SHARED: Final = sorted(SHARED_FOLDER.glob("*.pcap*")) if SHARED_FOLDER.is_dir() else []
TSHARK: Final = shutil.which("tshark")
THRESHOLD: Final = 99.5

pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")

# Wireshark byte fields (aa:bb:… in JSON, plain hex in icswatch).
BYTES: Final = frozenset({
    "resp.data", "param.data", "data.userdata", "data.blockcontrol.unknown1",
    "param.pistart.unknown1", "param.userdata.szl_part_list", "szl.001c.000x.res",
    "blockinfo.res_unknown", "cotp.src-tsap-bytes", "cotp.dst-tsap-bytes",
})
BOOLEANS: Final = frozenset({"cotp.opts.extended_formats", "cotp.opts.no_explicit_flow_control"})
# Subtrees without a value of their own.
CONTAINERS: Final = frozenset({
    "header", "param", "data", "param.item", "data.item", "param.pistart.parameterblock",
    "data.userdata.szl_data_tree", "fragments", "param.subitem",
})
# Facts icswatch derives from the bytes Wireshark shows: compared nowhere.
ICSWATCH_ONLY: Final = {
    "item": "the item address as an engineer writes it (DB1.DBX 0.0 BYTE 8)",
    "block": "the block a request names (DB2), from its type and number",
    "identity": "asset facts gathered from SZL 0x0011/0x001C records",
    "rack": "rack of the CPU, from the called TSAP", "slot": "slot, from the called TSAP",
    "connection_type": "PG/OP/S7 basic, from the called TSAP",
    "malformed_detail": "why icswatch flags the PDU",
}
# Wireshark fields icswatch leaves out, by prefix, each with the reason.
WIRESHARK_ONLY: Final = {
    "data.ts": "the S7 timestamp as one absolute time, rendered in the local time zone; "
               "icswatch keeps its BCD parts (ts_year2, ts_month, …) which are compared",
    "fragment": "Wireshark's reassembly bookkeeping for fragmented userdata",
    "reassembled": "Wireshark's reassembly bookkeeping for fragmented userdata",
    "szl.": "records of SZL lists other than 0x0011/0x001C, which Wireshark decodes field "
            "by field and icswatch keeps raw (param.userdata.szl_part_list)",
    "cpu.": "alarm/message structures of userdata group 4, kept raw (data.userdata)",
    "tis.": "programmer-command (group 1) structures, kept raw (data.userdata)",
    "cyclic.": "cyclic-service (group 2) structures, kept raw (data.userdata)",
}


@dataclass(slots=True)
class Unit:
    frame: int
    kind: str  # "s7" or "cotp"
    fields: dict[str, tuple[Any, ...]]
    malformed: bool = False


@functools.cache
def _string_fields() -> frozenset[str]:
    """Wireshark's FT_STRING fields (kept as text, even "0x0100" or "00002")."""
    assert TSHARK is not None
    out = subprocess.run([TSHARK, "-G", "fields"], capture_output=True, check=True, text=True)
    names: set[str] = set()
    for line in out.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) > 3 and parts[0] == "F" and parts[3] == "FT_STRING":
            if parts[2].startswith("s7comm."):
                names.add(parts[2][len("s7comm."):])
            elif parts[2].startswith("cotp."):
                names.add(parts[2])
    return frozenset(names)


# Wireshark names that are both a value and the parent of other fields; a
# document store (Elasticsearch) cannot hold both, so icswatch renames them.
RENAMED: Final = {
    "param.item.address": "param.item.address.raw",
    "data.userdata": "data.userdata.raw",
    "data.userdata.szl_id.partlist_len": "data.userdata.szl_partlist_len",
    "data.userdata.szl_id.partlist_cnt": "data.userdata.szl_partlist_cnt",
}


def _value(name: str, show: str) -> Any:
    if name in _string_fields():
        return show
    if name in BYTES:
        return show.replace(":", "")
    if name in BOOLEANS:
        return show == "1"
    try:
        return int(show, 16) if show.startswith("0x") else int(show)
    except ValueError:
        return show


def _walk(tree: Any, prefix: str, into: dict[str, list[Any]]) -> None:
    if isinstance(tree, list):
        for item in tree:
            _walk(item, prefix, into)
        return
    for key, value in tree.items():
        if key.endswith("_tree"):
            _walk(value, prefix, into)
            continue
        if not key.startswith(prefix):
            continue
        name = key[len("s7comm."):] if prefix == "s7comm." else key
        if isinstance(value, dict) or (
                isinstance(value, list) and value and isinstance(value[0], dict)):
            _walk(value, prefix, into)
        elif name not in CONTAINERS:
            for show in value if isinstance(value, list) else (value,):
                into.setdefault(RENAMED.get(name, name), []).append(_value(name, show))


def tshark_units(capture: Path) -> list[Unit]:
    assert TSHARK is not None
    out = subprocess.run(
        [TSHARK, "-n", "-r", str(capture), "-Y", "s7comm || (cotp && cotp.type != 0x0f)",
         "-T", "json", "--no-duplicate-keys", "-J", "frame cotp s7comm _ws.malformed"],
        capture_output=True, check=True)
    units: list[Unit] = []
    for packet in json.loads(out.stdout):
        layers = packet["_source"]["layers"]
        frame = int(layers["frame"]["frame.number"])
        text = json.dumps(layers)
        malformed = "_ws.malformed" in text
        s7 = layers.get("s7comm", [])
        for layer in s7 if isinstance(s7, list) else [s7]:
            values: dict[str, list[Any]] = {}
            _walk(layer, "s7comm.", values)
            units.append(Unit(frame, "s7", {k: tuple(v) for k, v in values.items()}, malformed))
        cotp = layers.get("cotp", [])
        for layer in cotp if isinstance(cotp, list) else [cotp]:
            if layer.get("cotp.type") == "0x0f":
                continue
            values = {}
            _walk(layer, "cotp.", values)
            units.append(Unit(frame, "cotp", {k: tuple(v) for k, v in values.items()},
                              malformed))
    return units


def _wireshark_view(fields: dict[str, tuple[Any, ...]]) -> None:
    """Bit views Wireshark adds beside a value icswatch keeps whole."""
    status = fields.get("param.blockcontrol.functionstatus")
    if status is not None:
        fields["param.blockcontrol.functionstatus.more"] = (bool(status[0] & 1),)
        fields["param.blockcontrol.functionstatus.error"] = (bool(status[0] & 2),)
    flags = fields.get("param.userdata.blockinfo.flags")
    if flags is not None:
        fields["param.userdata.blockinfo.linked"] = (bool(flags[0] & 1),)
        fields["param.userdata.blockinfo.standard_block"] = (bool(flags[0] & 2),)
        fields["param.userdata.blockinfo.nonretain"] = (bool(flags[0] & 8),)
    szl_id = fields.get("data.userdata.szl_id")
    if szl_id is not None:
        fields["data.userdata.szl_id.diag_type"] = (szl_id[0] & 0xF000,)
        fields["data.userdata.szl_id.partlist_ex"] = (szl_id[0] & 0x0FFF,)
        fields["data.userdata.szl_id.partlist_num"] = (szl_id[0] & 0x00FF,)


def icswatch_units(capture: Path) -> tuple[list[Unit], list[IcsEvent]]:
    events: list[IcsEvent] = []
    Sensor(events.append).replay([capture])
    units: list[Unit] = []
    for event in events:
        if event.protocol != "s7comm":
            continue
        fields = {name: tuple(value) if isinstance(value, list) else (value,)
                  for name, value in event.fields.items() if name not in ICSWATCH_ONLY}
        kind = "cotp" if event.operation.startswith("cotp_") else "s7"
        if event.operation == "malformed" and "header.protid" not in fields:
            kind = "framing"
        if event.response_time is not None:
            fields["request_frame"] = (event.request_packet,)
        _wireshark_view(fields)
        units.append(Unit(event.packet, kind, fields, event.malformed is not None))
    return units, events


@dataclass(slots=True)
class Tally:
    capture: str
    compared: int = 0
    agreed: int = 0
    documented: Counter[str] = field(default_factory=Counter)
    disagreements: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    unflagged: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return 100.0 * self.agreed / self.compared if self.compared else 100.0

    def disagree(self, key: str, example: str, weight: int = 1) -> None:
        self.compared += weight
        self.disagreements[key] += weight
        self.examples.setdefault(key, example[:240])

    def report(self) -> str:
        lines = [f"{self.capture}: {self.rate:.3f} % of {self.compared} fields agree "
                 f"({self.documented.total()} documented differences not counted)"]
        lines += [f"  {n:5d} x {k}: {self.examples[k]}"
                  for k, n in self.disagreements.most_common(15)]
        return "\n".join(lines)


def _documented_wireshark_only(name: str) -> str | None:
    for prefix, reason in WIRESHARK_ONLY.items():
        if name.startswith(prefix):
            return reason
    return None


def _raw_szl(theirs: Unit) -> bool:
    """Wireshark decoded this SZL list's records itself."""
    return any(name.startswith("szl.") and not name.startswith(("szl.xy11.", "szl.001c."))
               for name in theirs.fields)


def compare(ours: Unit, theirs: Unit, tally: Tally) -> None:
    for name in ours.fields.keys() | theirs.fields.keys():
        mine, other = ours.fields.get(name), theirs.fields.get(name)
        if name == "request_frame":
            # Wireshark's s7comm dissector does not pair jobs with their acks.
            tally.documented["request_frame (icswatch pairs requests and responses)"] += 1
            continue
        if mine == other:
            tally.compared += 1
            tally.agreed += 1
        elif mine is None and (reason := _documented_wireshark_only(name)):
            tally.documented[reason] += 1
        elif name == "param.userdata.szl_part_list" and other is None and _raw_szl(theirs):
            tally.documented["SZL records Wireshark decodes field by field"] += 1
        elif name == "data.userdata.raw" and other is None and any(
                n.startswith(("cpu.", "tis.", "cyclic.")) for n in theirs.fields):
            tally.documented["userdata Wireshark decodes further, kept raw"] += 1
        else:
            side = "only icswatch" if other is None else \
                "only Wireshark" if mine is None else "differs"
            tally.disagree(f"{name} ({side})",
                           f"frame {ours.frame}: icswatch {mine}, Wireshark {other}")


def _by_frame(units: list[Unit]) -> dict[tuple[int, str, int], Unit]:
    keyed: dict[tuple[int, str, int], Unit] = {}
    seen: Counter[tuple[int, str]] = Counter()
    for unit in units:
        keyed[(unit.frame, unit.kind, seen[(unit.frame, unit.kind)])] = unit
        seen[(unit.frame, unit.kind)] += 1
    return keyed


def compare_capture(capture: Path) -> Tally:
    ours_list, events = icswatch_units(capture)
    ours, theirs = _by_frame(ours_list), _by_frame(tshark_units(capture))
    tally = Tally(capture.name)
    for key, unit in ours.items():
        other = theirs.get(key)
        if other is not None:
            compare(unit, other, tally)
        elif unit.kind == "framing" or (unit.malformed and unit.fields.get(
                "header.rosctr", (1,))[0] not in (1, 2, 3, 7)):
            # TPKT/COTP framing errors, and S7 PDUs with an impossible ROSCTR,
            # which Wireshark's heuristic does not take for S7comm at all.
            tally.documented["malformed framing Wireshark does not dissect as S7"] += 1
        else:
            tally.disagree("(unit only icswatch)", f"frame {unit.frame}: {unit.fields}",
                           len(unit.fields))
    for key, unit in theirs.items():
        if key not in ours:
            tally.disagree("(unit only Wireshark)", f"frame {unit.frame}: {unit.fields}",
                           len(unit.fields))
    flagged = {e.packet for e in events if e.malformed is not None}
    tally.unflagged = sorted({u.frame for u in theirs.values() if u.malformed} - flagged)
    return tally


_tally: Final = functools.cache(compare_capture)


def _check(tally: Tally) -> None:
    print(tally.report())
    assert not tally.unflagged, f"frames tshark marks malformed, icswatch does not: " \
        f"{tally.unflagged}"
    assert tally.rate >= THRESHOLD, tally.report()


@pytest.mark.parametrize("capture", OWN, ids=lambda p: p.name)
def test_own_capture_agrees_with_tshark(capture: Path) -> None:
    _check(_tally(capture))


@pytest.mark.parametrize(
    "capture",
    SHARED or [pytest.param(None, marks=pytest.mark.skip(
        reason=f"{SHARED_FOLDER} is absent"))],
    ids=lambda p: p.name if p else "shared",
)
def test_shared_capture_agrees_with_tshark(capture: Path) -> None:
    _check(_tally(capture))


def test_overall_agreement_with_tshark() -> None:
    tallies = [_tally(capture) for capture in [*OWN, *SHARED]]
    compared = sum(t.compared for t in tallies)
    agreed = sum(t.agreed for t in tallies)
    rate = 100.0 * agreed / compared if compared else 100.0
    print("S7comm fields: icswatch against tshark")
    for t in tallies:
        print("  " + t.report().splitlines()[0])
    print(f"  overall: {rate:.3f} % of {compared} fields agree")
    documented: Counter[str] = Counter()
    for t in tallies:
        documented.update(t.documented)
    for reason, count in documented.most_common():
        print(f"  documented {count:5d} x {reason}")
    assert compared > 0
    assert rate >= THRESHOLD
