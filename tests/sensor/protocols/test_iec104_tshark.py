"""Oracle test: every decoded IEC 60870-5-104 field against Wireshark's dissector.

tshark (4.0) dissects each capture to JSON; a frame's APDUs stay separate
there (one ``iec60870_104`` layer per APDU, one ``iec60870_asdu`` layer per I
frame). Both sides frame the stream the same way, so the n-th APDU tshark
shows in a frame is the n-th event icswatch decodes from it. Every field
either side names is compared; `wireshark_view` reshapes icswatch's fields
where Wireshark shows the same octets another way (the flag bits of a quality
octet, a big-endian bitstring, a date as text), and `DOCUMENTED` lists, with
the reason, what is counted apart. Also: every frame tshark marks malformed
carries a malformed event.

See the figures with ``pytest -rA -s tests/sensor/protocols/test_iec104_tshark.py``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import pytest

from sensor.event import IcsEvent
from sensor.protocols.iec104_types import WIRESHARK_DECODED
from sensor.runtime import Sensor

REPO: Final = Path(__file__).resolve().parents[3]
OWN_CAPTURES: Final = sorted((REPO / "pcaps" / "iec104").glob("*.pcap*"))
SHARED_FOLDER: Final = REPO / ".." / "shared" / "pcaps" / "iec104"
SHARED_CAPTURES: Final = sorted(SHARED_FOLDER.glob("*.pcap*")) if SHARED_FOLDER.is_dir() else []
TSHARK: Final = shutil.which("tshark")
THRESHOLD: Final = 99.5  # per cent, per capture and overall
PREFIXES: Final = ("iec60870_104.", "iec60870_asdu.")
PI_ERROR: Final = "8388608"

pytestmark = pytest.mark.skipif(
    TSHARK is None, reason="tshark is not installed (apt-get install tshark)"
)

Values = tuple[Any, ...]


@dataclass(slots=True)
class Apdu:
    """One side's view of one APDU: field names without the prefix to the
    tuple of their values in wire order."""

    frame: int
    fields: dict[str, Values]
    malformed: bool = False

    @property
    def type_id(self) -> int:
        return int(self.fields.get("typeid", (-1,))[0])


# -- Wireshark's side -------------------------------------------------------

BYTES: Final = frozenset({"data", "rawdata"})
FLOATS: Final = frozenset({"float", "normval", "cp24time"})


def _value(name: str, show: str) -> Any:
    """A JSON value is the display string: decimal or 0x-hex for integers
    (booleans are 0 or 1), aa:bb:… for bytes, "x seconds" for CP24Time2a."""
    if name in BYTES:
        return show.replace(":", "")
    if name in FLOATS:
        return float(show.split()[0])
    if name == "cp56time":
        return show
    return int(show, 16) if show.startswith("0x") else int(show)


def _collect(tree: Any, into: dict[str, list[Any]]) -> None:
    """Gather the fields of one layer in document order, walking the
    per-object subtrees ("IOA: 12") and bit trees (``siq_tree``)."""
    if isinstance(tree, list):  # a key repeated in one object, merged
        for item in tree:
            _collect(item, into)
        return
    if not isinstance(tree, dict):
        return
    for key, value in tree.items():
        if key.startswith("_ws."):
            continue
        if key.startswith(PREFIXES) and not key.endswith("_tree"):
            short = key.partition(".")[2]
            for show in value if isinstance(value, list) else (value,):
                into.setdefault(short, []).append(_value(short, show))
        elif isinstance(value, dict | list):
            _collect(value, into)


def _has_error(tree: Any) -> bool:
    """Does a frame hold a malformed marker or an expert error?"""
    text = json.dumps(tree)
    return '"_ws.malformed"' in text or f'"_ws.expert.severity": "{PI_ERROR}"' in text


def _as_list(layer: Any) -> list[Any]:
    return layer if isinstance(layer, list) else [] if layer is None else [layer]


def tshark_apdus(capture: Path) -> list[Apdu]:
    assert TSHARK is not None
    result = subprocess.run(
        [TSHARK, "-n", "-Y", "iec60870_104", "-T", "json", "--no-duplicate-keys", "-r",
         str(capture)],
        capture_output=True, check=True, env={**os.environ, "TZ": "UTC"},
    )
    apdus: list[Apdu] = []
    for packet in json.loads(result.stdout):
        layers = packet["_source"]["layers"]
        frame = int(layers["frame"]["frame.number"])
        malformed = _has_error(layers)
        asdus = _as_list(layers.get("iec60870_asdu"))
        for apci in _as_list(layers["iec60870_104"]):
            values: dict[str, list[Any]] = {}
            _collect(apci, values)
            if values.get("type") == [0]:  # an I frame: its ASDU layer follows
                _collect(asdus.pop(0) if asdus else None, values)
            apdus.append(Apdu(frame, {k: tuple(v) for k, v in values.items()}, malformed))
    return apdus


# -- icswatch's side --------------------------------------------------------

# The flag bits of the quality octets, as Wireshark names them.
QUALITY_BITS: Final = {
    "siq": (("bl", 0x10), ("sb", 0x20), ("nt", 0x40), ("iv", 0x80)),
    "diq": (("bl", 0x10), ("sb", 0x20), ("nt", 0x40), ("iv", 0x80)),
    "qds": (("ov", 0x01), ("bl", 0x10), ("sb", 0x20), ("nt", 0x40), ("iv", 0x80)),
}
def _wireshark_date(iso: str) -> str:
    """icswatch's date as Wireshark 4.0 shows it (tshark run with TZ=UTC)."""
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        return iso  # an impossible date: Wireshark's mktime() rolls it over
    return f"{when:%b} {when.day:2d}, {when:%Y %H:%M:%S.%f}000 UTC"


def wireshark_view(apdu: Apdu) -> None:
    """Reshape icswatch's fields where Wireshark 4.0 shows the same octets
    another way."""
    fields = apdu.fields
    for name, bits in QUALITY_BITS.items():
        if name in fields:
            for suffix, mask in bits:
                fields[f"{name}.{suffix}"] = tuple(int(b & mask != 0) for b in fields[name])
    if "bitstring" in fields:  # Wireshark 4.0 reads BSI big-endian
        fields["bitstring"] = tuple(
            int.from_bytes(v.to_bytes(4, "little"), "big") for v in fields["bitstring"])
    if "cp56time" in fields:
        dates = fields["cp56time"]
        fields["cp56time"] = tuple(_wireshark_date(d) for d in dates)
        fields["cp56time.ms"] = tuple(int(d[17:19]) * 1000 + int(d[20:23]) for d in dates)
        fields["cp56time.min"] = tuple(int(d[14:16]) for d in dates)
        fields["cp56time.hour"] = tuple(int(d[11:13]) for d in dates)
        fields["cp56time.day"] = tuple(int(d[8:10]) for d in dates)
        fields["cp56time.month"] = tuple(int(d[5:7]) for d in dates)
    if apdu.type_id >= 0 and apdu.type_id not in WIRESHARK_DECODED:
        # Wireshark shows the first object address and the rest as rawdata.
        if "ioa" in fields:
            fields["ioa"] = fields["ioa"][:1]
        for name in list(fields):
            if name in RAW_TYPE_ELEMENTS:
                del fields[name]


# What icswatch decodes in the types Wireshark 4.0 leaves raw (``rawdata``
# holds the same octets on both sides and is compared).
RAW_TYPE_ELEMENTS: Final = frozenset({
    "scd", "sep", "spe", "oci", "qdp", "cp16time", "fbp", "tsc", "qpa", "nof", "nos", "lof",
    "frq", "srq", "scq", "lsq", "chs", "afq", "los", "sof", "cp56time", "cp56time.iv",
    "cp56time.gen", "cp56time.su", "cp56time.dow", "cp56time.ms", "cp56time.min",
    "cp56time.hour", "cp56time.day", "cp56time.month", "cp24time", "cp24time.ms",
    "cp24time.min", "cp24time.iv", "qds", "qds.ov", "qds.bl", "qds.sb", "qds.nt", "qds.iv",
})


def _plain(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


def icswatch_apdus(capture: Path) -> tuple[list[Apdu], list[IcsEvent]]:
    events: list[IcsEvent] = []
    Sensor(events.append).replay([capture])
    apdus: list[Apdu] = []
    ours = [e for e in events if e.protocol == "iec104"]
    for event in ours:
        fields = {name: tuple(map(_plain, v)) if isinstance(v, list) else (_plain(v),)
                  for name, v in event.fields.items()}
        apdu = Apdu(event.packet, fields, event.malformed is not None)
        wireshark_view(apdu)
        apdus.append(apdu)
    return apdus, ours


# -- documented differences -------------------------------------------------

ICSWATCH: Final = "only icswatch"
WIRESHARK: Final = "only Wireshark"
BOTH: Final = "values differ"


@dataclass(frozen=True, slots=True)
class Difference:
    """A known difference, counted apart: ``field`` on one side only or with
    other values (``kind``), where ``when`` holds (always when None)."""

    field: str
    kind: str
    reason: str
    when: Callable[[Apdu], bool] | None = None

    def covers(self, name: str, kind: str, apdu: Apdu) -> bool:
        return name == self.field and kind == self.kind and (
            self.when is None or self.when(apdu))


def _impossible_date(apdu: Apdu) -> bool:
    return any(not d.endswith(" UTC") for d in apdu.fields.get("cp56time", ()))


def _junk_only(apdu: Apdu) -> bool:
    return "apdulen" not in apdu.fields


def _shorter_than_apci(apdu: Apdu) -> bool:
    """An APDU (with its junk) shorter than the six octets that framed it."""
    length = apdu.fields.get("apdulen", (99,))[0]
    return len(apdu.fields.get("data", ("",))[0]) // 2 + 2 + length < 6


DOCUMENTED: Final[tuple[Difference, ...]] = (
    Difference("start", WIRESHARK, "the start octet, 0x68 in every APDU by definition"),
    Difference("seq_error", ICSWATCH, "icswatch follows N(S)/N(R) per direction; Wireshark "
               "does not"),
    Difference("tx_expected", ICSWATCH, "the N(S) icswatch expected (with seq_error)"),
    Difference("rx_max", ICSWATCH, "the highest N(R) possible (with seq_error)"),
    Difference("cp56time.year", WIRESHARK, "the year octet: icswatch's cp56time carries the "
               "year read as Wireshark reads it (0-69 → 20xx, 70-127 → 19xx) and is compared"),
    Difference("cp56time", BOTH, "an impossible date (month 0, day 0…): Wireshark's "
               "mktime() rolls it over, icswatch keeps the octets as they are",
               _impossible_date),
    Difference("data", BOTH, "octets with no 0x68: Wireshark's data leaves out the last "
               "octet of the PDU (its loop stops one short), icswatch keeps all", _junk_only),
    Difference("(APDU)", ICSWATCH, "octets left at the end of a flow that never formed an "
               "APDU: icswatch reports them (truncated), Wireshark waits for more",
               lambda apdu: apdu.frame == 0),
    Difference("(APDU)", ICSWATCH, "an APDU length so short that the PDU is under six "
               "octets: Wireshark's TCP layer reports a bounds error (malformed) before the "
               "IEC 104 dissector sees it; icswatch reports it with its length",
               _shorter_than_apci),
)


# -- the comparison ---------------------------------------------------------


@dataclass(slots=True)
class Tally:
    capture: str
    compared: int = 0
    agreed: int = 0
    documented: Counter[Difference] = field(default_factory=Counter)
    disagreements: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    examples: dict[tuple[str, str, int], str] = field(default_factory=dict)
    unflagged: list[int] = field(default_factory=list)
    tshark_apdus: int = 0
    icswatch_apdus: int = 0

    @property
    def rate(self) -> float:
        return 100.0 * self.agreed / self.compared if self.compared else 100.0

    def disagree(self, name: str, kind: str, apdu: Apdu, detail: str) -> None:
        key = (name, kind, apdu.type_id)
        self.disagreements[key] += 1
        self.examples.setdefault(key, f"frame {apdu.frame}: {detail}"[:240])

    def summary(self) -> str:
        return (f"{self.capture}: {self.rate:.3f} % of {self.compared} fields agree "
                f"({self.documented.total()} documented differences not counted; APDUs: "
                f"{self.tshark_apdus} tshark, {self.icswatch_apdus} icswatch)")

    def report(self) -> str:
        lines = [self.summary()]
        for key, count in self.disagreements.most_common(20):
            name, kind, type_id = key
            lines.append(f"  {count:6d} x {name} ({kind}) type {type_id}: {self.examples[key]}")
        return "\n".join(lines)


def _equal(name: str, ours: Values, theirs: Values) -> bool:
    if name in FLOATS:
        return len(ours) == len(theirs) and all(
            math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6)
            for a, b in zip(ours, theirs, strict=True))
    return ours == theirs


def _documented(name: str, kind: str, apdu: Apdu) -> Difference | None:
    return next((d for d in DOCUMENTED if d.covers(name, kind, apdu)), None)


def compare_apdu(ours: Apdu, theirs: Apdu, tally: Tally) -> None:
    for name in ours.fields.keys() | theirs.fields.keys():
        mine, other = ours.fields.get(name), theirs.fields.get(name)
        if mine is not None and other is not None and _equal(name, mine, other):
            tally.compared += 1
            tally.agreed += 1
            continue
        kind = ICSWATCH if other is None else WIRESHARK if mine is None else BOTH
        documented = _documented(name, kind, ours)
        if documented is not None:
            tally.documented[documented] += 1
            continue
        tally.compared += 1
        tally.disagree(name, kind, ours, f"icswatch {mine}, Wireshark {other}")


def _by_frame(apdus: list[Apdu]) -> dict[tuple[int, int], Apdu]:
    keyed: dict[tuple[int, int], Apdu] = {}
    seen: Counter[int] = Counter()
    for apdu in apdus:
        keyed[(apdu.frame, seen[apdu.frame])] = apdu
        seen[apdu.frame] += 1
    return keyed


def compare_capture(capture: Path) -> Tally:
    ours_list, _ = icswatch_apdus(capture)
    theirs_list = tshark_apdus(capture)
    ours, theirs = _by_frame(ours_list), _by_frame(theirs_list)
    tally = Tally(capture.name, tshark_apdus=len(theirs), icswatch_apdus=len(ours))
    for key, apdu in ours.items():
        other = theirs.get(key)
        if other is None:
            documented = _documented("(APDU)", ICSWATCH, apdu)
            if documented is not None:
                tally.documented[documented] += len(apdu.fields)
                continue
            tally.compared += len(apdu.fields)
            tally.disagree("(APDU)", ICSWATCH, apdu, f"{apdu.fields}")
            continue
        compare_apdu(apdu, other, tally)
    for key, apdu in theirs.items():
        if key not in ours:
            tally.compared += len(apdu.fields)
            tally.disagree("(APDU)", WIRESHARK, apdu, f"{apdu.fields}")
    flagged = {apdu.frame for apdu in ours_list if apdu.malformed}
    tally.unflagged = sorted({a.frame for a in theirs_list if a.malformed} - flagged)
    return tally


# -- the tests --------------------------------------------------------------

Property = Callable[[str, object], None]
_tally: Final = functools.cache(compare_capture)


@pytest.mark.parametrize(
    "capture",
    [*OWN_CAPTURES, *(SHARED_CAPTURES or [pytest.param(
        None, marks=pytest.mark.skip(reason=f"{SHARED_FOLDER.resolve()} is absent"))])],
    ids=lambda path: path.name if path else "shared",
)
def test_capture_agrees_with_tshark(capture: Path) -> None:
    tally = _tally(capture)
    print(tally.report())
    assert not tally.unflagged, f"frames tshark marks malformed, icswatch not: {tally.unflagged}"
    assert tally.rate >= THRESHOLD, tally.report()


def test_overall_agreement_with_tshark(record_property: Property) -> None:
    tallies = [_tally(capture) for capture in [*OWN_CAPTURES, *SHARED_CAPTURES]]
    compared = sum(tally.compared for tally in tallies)
    agreed = sum(tally.agreed for tally in tallies)
    rate = 100.0 * agreed / compared if compared else 100.0
    record_property("agreement_percent", round(rate, 3))
    print("IEC 104 fields: icswatch against tshark")
    for tally in tallies:
        print("  " + tally.summary())
    print(f"  overall: {rate:.3f} % of {compared} fields agree")
    documented: Counter[Difference] = Counter()
    for tally in tallies:
        documented.update(tally.documented)
    print("Documented differences (not counted):")
    for difference in DOCUMENTED:
        print(f"  {documented[difference]:6d} x {difference.field} ({difference.kind}): "
              f"{difference.reason}")
    assert compared > 0
    assert rate >= THRESHOLD
