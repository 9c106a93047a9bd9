"""Oracle test: every decoded DNP3 field against Wireshark's dissector.

tshark dissects each capture to JSON (one ``dnp3`` layer per link frame).
The layers that make an icswatch event — an application fragment (its
last link frame shows the reassembled fragment), a link frame without user
data, a frame with a CRC error — are matched to the events icswatch decodes
from the same capture by (frame number, order in the frame), and every
field either side names is compared. A field only one side has, or with
different values, disagrees unless `DOCUMENTED` lists it with its reason.

Where Wireshark shows the same octets in another shape, the shape is
normalised here: a point's quality flags, which Wireshark splits into eight
booleans (``al.biq.b0``…``b7``), are joined into the octet icswatch keeps
(``al.biq``); timestamps become milliseconds since 1970.

See the figures with ``pytest -rA tests/sensor/protocols/test_dnp3_tshark.py``.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pytest

from sensor.event import IcsEvent
from sensor.protocols.dnp3 import FIELDS
from sensor.runtime import Sensor

REPO: Final = Path(__file__).resolve().parents[3]
OWN_CAPTURES: Final = sorted((REPO / "pcaps" / "dnp3").glob("*.pcap*"))
SHARED_FOLDER: Final = REPO / ".." / "shared" / "pcaps" / "dnp3"
SHARED_CAPTURES: Final = sorted(SHARED_FOLDER.glob("*.pcap*")) if SHARED_FOLDER.is_dir() else []
TSHARK: Final = shutil.which("tshark")
THRESHOLD: Final = 99.5  # per cent, per capture and overall

pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")

Values = tuple[Any, ...]
Pdu = dict[str, Values]

BOOLEANS: Final = frozenset(
    name for name, kind in FIELDS if kind in ("bool", "list[bool]"))
FLOATS: Final = frozenset({
    "al.ana.float", "al.ana.double", "al.anaout.float", "al.anaout.double", "al.da.float",
    "al.da.double"})
BYTES: Final = frozenset({"al.octet_string", "al.file.data", "al.unknown_data_chunk"})
STRINGS: Final = frozenset({"al.file_name", "al.da.value"})
QUALITY: Final = ("al.biq", "al.boq", "al.ctrq", "al.aiq", "al.aoq")
# Bookkeeping of Wireshark's own (reassembly, raw chunks, addresses twice).
SKIPPED: Final = frozenset({"start", "addr", "al.fragments", "al.frag_data"})
IIN_BITS: Final = ("bmsg", "cls1d", "cls2d", "cls3d", "tsr", "dol", "dt", "rst", "fcni", "obju",
                   "pioor", "ebo", "oae", "cc")


def _milliseconds(show: str) -> int:
    """``Mar 10, 2020 13:57:04.043000000 UTC`` -> ms since 1970."""
    month, day, year, clock = show.split()[:4]
    seconds, _, fraction = clock.partition(".")
    moment = datetime.strptime(f"{month} {day} {year} {seconds}", "%b %d, %Y %H:%M:%S")
    return int(moment.replace(tzinfo=UTC).timestamp()) * 1000 + int((fraction + "000")[:3])


def _value(name: str, show: str) -> Any:
    if name in BOOLEANS or name.startswith("al.iin."):
        return show == "1"
    if name in FLOATS:
        return float(show)
    if name in BYTES:
        return show.replace(":", "")
    if name in STRINGS:
        return show
    if name == "al.timestamp":
        return _milliseconds(show)
    if name == "al.reltimestamp":
        return round(float(show.split()[0]) * 1000)
    return int(show, 16) if show.startswith("0x") else int(show)


def _collect(tree: Any, into: dict[str, list[Any]]) -> None:
    """The ``dnp3.*`` fields of one layer in document order; a quality
    subtree (eight flag booleans) becomes one octet."""
    if isinstance(tree, list):
        for item in tree:
            _collect(item, into)
        return
    if not isinstance(tree, dict):
        return
    bits = [key for key in tree if key.rsplit(".", 1)[0][5:] in QUALITY]
    if bits:
        into.setdefault(bits[0].rsplit(".", 1)[0][5:], []).append(
            sum((tree[key] == "1") << int(key[-1]) for key in bits))
    for key, value in tree.items():
        if key in bits or key.startswith(("dnp.", "_ws.")):
            continue
        if key.endswith("_tree") or not key.startswith("dnp3."):
            _collect(value, into)
            continue
        short = key[5:]
        if short in SKIPPED or isinstance(value, dict):
            continue
        for show in value if isinstance(value, list) else (value,):
            into.setdefault(short, []).append(_value(short, show))


def _layer_is_event(layer: dict[str, Any]) -> bool:
    """A layer icswatch reports: a fragment, a frame without user data, or
    a frame with a bad CRC."""
    text = json.dumps(layer)
    return ('"dnp3.al.func"' in text or '"dnp3.tr.ctl"' not in text
            or '"dnp.hdr.CRC.status": "0"' in text or '"dnp.data_chunk.CRC.status": "0"' in text)


def tshark_pdus(capture: Path) -> tuple[dict[tuple[int, int], Pdu], set[int]]:
    """The PDUs tshark dissects, keyed by (frame, order), and the frames it
    marks malformed or with an error."""
    assert TSHARK is not None
    result = subprocess.run(
        [TSHARK, "-n", "-r", str(capture), "-Y", "dnp3", "-T", "json", "--no-duplicate-keys",
         "-J", "frame dnp3"], capture_output=True, check=True)
    pdus: dict[tuple[int, int], Pdu] = {}
    malformed: set[int] = set()
    for packet in json.loads(result.stdout):
        layers = packet["_source"]["layers"]
        frame = int(layers["frame"]["frame.number"])
        text = json.dumps(layers)
        if "_ws.malformed" in text or '"_ws.expert.severity": "8388608"' in text \
                or '"dnp.hdr.CRC.status": "0"' in text \
                or '"dnp.data_chunk.CRC.status": "0"' in text:
            malformed.add(frame)
        dnp3 = layers["dnp3"]
        order = 0
        for layer in dnp3 if isinstance(dnp3, list) else [dnp3]:
            if not _layer_is_event(layer):
                continue
            values: dict[str, list[Any]] = {}
            _collect(layer, values)
            if '"dnp3.al.fragment.overlap.conflict": "1"' in json.dumps(layer):
                values["(overlap)"] = [True]
            iin = values.pop("al.iin", None)
            for bit in IIN_BITS:
                values.pop(f"al.iin.{bit}", None)
            if iin is not None:
                values["al.iin"] = iin
            pdus[(frame, order)] = {name: tuple(v) for name, v in values.items()}
            order += 1
    return pdus, malformed


def icswatch_pdus(capture: Path) -> tuple[dict[tuple[int, int], Pdu], dict[int, str]]:
    events: list[IcsEvent] = []
    Sensor(events.append).replay([capture])
    pdus: dict[tuple[int, int], Pdu] = {}
    malformed: dict[int, str] = {}
    seen: Counter[int] = Counter()
    for event in events:
        if event.protocol != "dnp3":
            continue
        if event.malformed:
            malformed[event.packet] = event.malformed
        fields = {name: tuple(value) if isinstance(value, list) else (value,)
                  for name, value in event.fields.items()}
        if event.malformed:
            fields["(malformed)"] = (event.malformed,)
        if "al.obj" in fields:
            # Wireshark 4.0 shows an octet string object with variation 0:
            # the variation is the string's length.
            fields["al.obj"] = tuple(gv & 0xFF00 if gv >> 8 in (110, 111) else gv
                                     for gv in fields["al.obj"])
        pdus[(event.packet, seen[event.packet])] = fields
        seen[event.packet] += 1
    return pdus, malformed


# -- documented differences -------------------------------------------------

def _always(pdu: Pdu) -> bool:
    return True


def _has_object(*objects: int) -> Callable[[Pdu], bool]:
    return lambda pdu: any(gv in pdu.get("al.obj", ()) for gv in objects)


def _wrapped_fragment(pdu: Pdu) -> bool:
    """The last segment of a fragment whose transport sequence wrapped from
    63 to 0 on the way."""
    return pdu.get("tr.fir") == (False,) and "al.func" in pdu and pdu.get("tr.seq", (64,))[0] < 8


def _rejected_header(pdu: Pdu) -> bool:
    return "hdr.CRC" in pdu or pdu.get("len", (5,))[0] < 5


def _function(*functions: int) -> Callable[[Pdu], bool]:
    return lambda pdu: pdu.get("al.func", (-1,))[0] in functions


def _file_not_write(pdu: Pdu) -> bool:
    return 0x4603 in pdu.get("al.obj", ()) and 2 not in pdu.get("al.file.mode", ())


# (field, reason, when): a field one side has and the other not, or with
# other values, in the PDUs ``when`` accepts (icswatch's side).
DOCUMENTED: Final[tuple[tuple[str, str, Callable[[Pdu], bool]], ...]] = (
    ("hdr.CRC", "Wireshark shows every header CRC; icswatch checks it and keeps it only "
                "when it is wrong (a bad_crc event)", _always),
    ("error", "icswatch's readable reason of a malformed event", _always),
    ("(malformed)", "icswatch's malformed reason", _always),
    ("(PDU) sequence wrap", "a fragment whose transport sequence wrapped from 63 to 0: "
     "Wireshark 4.0 does not reassemble it (\"Unreassembled fragment 0\")", _wrapped_fragment),
    ("al.2bit", "the state of a double-bit input with flags (g3v2, g4): Wireshark 4.0 "
                "shows it only as flag bits 6 and 7 (al.biq)",
     lambda pdu: any(gv in (0x0302, 0x0401, 0x0402, 0x0403) for gv in pdu.get("al.obj", ()))),
    ("(PDU) header rejected", "a frame whose header Wireshark rejects (wrong header CRC, "
     "length below 5) is not DNP3 to it; icswatch reports it malformed", _rejected_header),
    *((name, "Wireshark 4.0 does not dissect the objects of start/stop/initialize "
             "application and assign class requests", _function(16, 17, 18, 22))
      for name in ("al.obj", "al.objq.prefix", "al.objq.range", "al.range.start",
                   "al.range.stop", "al.range.quantity", "al.size")),
    *((name, "a file command (g70v3) that does not open for writing: Wireshark 4.0 shows "
             "its creation time, permissions and size only in mode write", _file_not_write)
      for name in ("al.timestamp", "al.file.perms", "al.file.size")),
    ("al.time_delay", "g52v1 (time delay coarse, the answer to a cold restart) is unknown "
                      "to Wireshark 4.0: it shows the value as unknown_data_chunk",
     _has_object(0x3401)),
    ("al.unknown_data_chunk", "the same g52v1 value, as Wireshark 4.0 shows it",
     _has_object(0x3401)),
)
# Whole PDUs icswatch reports that Wireshark does not dissect as DNP3
# frames: octets with no frame header, a frame cut short at the end.
ONLY_ICSWATCH_REASONS: Final = frozenset({"bad_protocol_id", "truncated"})


def _documented(name: str, pdu: Pdu) -> str | None:
    for field, _reason, when in DOCUMENTED:
        if field == name and when(pdu):
            return field
    return None


class Tally:
    def __init__(self, capture: str) -> None:
        self.capture = capture
        self.compared = 0
        self.agreed = 0
        self.documented: Counter[str] = Counter()
        self.disagreements: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self.missing: list[tuple[int, int]] = []
        self.extra: list[tuple[int, int]] = []
        self.unflagged: list[int] = []

    @property
    def rate(self) -> float:
        return 100.0 * self.agreed / self.compared if self.compared else 100.0

    def summary(self) -> str:
        return (f"{self.capture}: {self.rate:.3f} % of {self.compared} fields agree "
                f"({self.documented.total()} documented differences not counted)")

    def report(self) -> str:
        lines = [self.summary()]
        for name, count in self.disagreements.most_common(20):
            lines.append(f"  {count:6d} x {name}, e.g. {self.examples[name]}")
        return "\n".join(lines)


def _equal(name: str, ours: Values, theirs: Values) -> bool:
    if name in FLOATS:
        return len(ours) == len(theirs) and all(
            math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
            for a, b in zip(ours, theirs, strict=True))
    return ours == theirs


def compare_capture(capture: Path) -> Tally:
    ours, our_malformed = icswatch_pdus(capture)
    theirs, their_malformed = tshark_pdus(capture)
    tally = Tally(capture.name)
    for key, pdu in ours.items():
        other = theirs.get(key)
        if other is not None and "(overlap)" in other:
            # Wireshark 4.0 reassembled this single-segment fragment into an
            # older one with the same transport sequence number ("Conflicting
            # data in fragment overlap"): its application layer is garbage.
            tally.documented["(PDU) misassembled by Wireshark"] += len(pdu)
            continue
        if other is None:
            if pdu.get("(malformed)", ("",))[0] in ONLY_ICSWATCH_REASONS:
                tally.documented["(PDU) not a frame for Wireshark"] += len(pdu)
                continue
            label = next((field for field, _reason, when in DOCUMENTED
                          if field.startswith("(PDU)") and when(pdu)), None)
            if label is not None:
                tally.documented[label] += len(pdu)
                continue
            tally.extra.append(key)
            other = {}
        for name in pdu.keys() | other.keys():
            mine, their = pdu.get(name), other.get(name)
            if mine is not None and their is not None and _equal(name, mine, their):
                tally.compared += 1
                tally.agreed += 1
            elif _documented(name, pdu):
                tally.documented[name] += 1
            else:
                tally.compared += 1
                label = f"{name} ({'only icswatch' if their is None else 'only Wireshark' if mine is None else 'differs'})"  # noqa: E501
                tally.disagreements[label] += 1
                tally.examples.setdefault(
                    label, f"frame {key[0]}: icswatch {mine}, Wireshark {their}"[:240])
    for key, pdu in theirs.items():
        if key not in ours:
            tally.missing.append(key)
            tally.compared += len(pdu)
            tally.disagreements["(PDU) only Wireshark"] += len(pdu)
            tally.examples.setdefault("(PDU) only Wireshark", f"frame {key[0]}: {pdu}"[:240])
    tally.unflagged = sorted(frame for frame in their_malformed if frame not in our_malformed)
    return tally


_tally: Final = functools.cache(compare_capture)


def _check(tally: Tally) -> None:
    print(tally.report())
    assert not tally.missing, f"PDUs tshark sees without an event: {tally.missing[:10]}"
    assert not tally.extra, f"events tshark has no PDU for: {tally.extra[:10]}"
    assert not tally.unflagged, f"frames tshark marks malformed, icswatch not: " \
        f"{tally.unflagged[:10]}"
    assert tally.rate >= THRESHOLD, tally.report()


@pytest.mark.parametrize("capture", OWN_CAPTURES, ids=lambda path: path.name)
def test_own_capture_agrees_with_tshark(capture: Path) -> None:
    _check(_tally(capture))


@pytest.mark.parametrize(
    "capture",
    SHARED_CAPTURES or [pytest.param(
        None, marks=pytest.mark.skip(reason=f"{SHARED_FOLDER.resolve()} is absent"))],
    ids=lambda path: path.name if path else "shared",
)
def test_shared_capture_agrees_with_tshark(capture: Path) -> None:
    _check(_tally(capture))


def test_overall_agreement_with_tshark() -> None:
    tallies = [_tally(capture) for capture in [*OWN_CAPTURES, *SHARED_CAPTURES]]
    compared = sum(t.compared for t in tallies)
    rate = 100.0 * sum(t.agreed for t in tallies) / compared if compared else 100.0
    print("DNP3 fields: icswatch against tshark")
    for tally in tallies:
        print("  " + tally.summary())
    print(f"  overall: {rate:.3f} % of {compared} fields agree")
    documented: Counter[str] = Counter()
    for tally in tallies:
        documented.update(tally.documented)
    reasons = {field: reason for field, reason, _when in DOCUMENTED}
    reasons["(PDU) misassembled by Wireshark"] = (
        "Wireshark 4.0 reassembled a single-segment fragment into an older one with the "
        "same transport sequence (\"Conflicting data in fragment overlap\")")
    for name, count in documented.most_common():
        print(f"  {count:6d} x {name}: {reasons.get(name, 'octets that are no frame to Wireshark')}")  # noqa: E501
    assert compared > 0
    assert rate >= THRESHOLD
