"""Oracle test: every EtherNet/IP and CIP field icswatch decodes, against Wireshark.

tshark dissects each capture to JSON. Each encapsulation message becomes one
or more *services* the way icswatch splits it (`sensor.protocols.enip`): a
Multiple Service Packet is one service per "Service Packet #n" subtree, an
Unconnected Send is the request it carries (the send's own ``cip.*`` header
dropped, its ``cip.cm.*`` fields kept). Services are matched by (frame,
order in the frame) and every field icswatch names is compared with the
field of the same name (``enip.``, ``cip.`` and ``cipio.`` prefixes removed):

- equal values agree; a field only one side has, or different values,
  disagree unless `DOCUMENTED` lists it with its reason;
- fields Wireshark shows that icswatch does not decode at all (bit-field
  breakdowns, reserved bytes, generated connection summaries) are counted
  and printed, not compared: they are not decoded fields.

Wireshark repeats field names across nested paths (the request path, a
Forward Open's connection path, an Unconnected Send's route path all hold
``cip.epath``, ``cip.class``…). Those subtrees are read by their title: a
connection path's ``cip.epath`` is icswatch's ``connection_path``, a route
path's is ``route_path``; the segments inside them, and the generated
"Connection Information" and "Route/Connection Path" summaries, are not
compared.

See the figures with ``pytest -rA tests/sensor/protocols/test_enip_tshark.py``.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest

from sensor.event import IcsEvent
from sensor.protocols.enip import FIELDS as ENIP_FIELDS
from sensor.protocols.enip_io import FIELDS as IO_FIELDS
from sensor.runtime import Sensor

REPO: Final = Path(__file__).resolve().parents[3]
OWN_CAPTURES: Final = sorted((REPO / "pcaps" / "enip").glob("*.pcap*"))
SHARED_FOLDER: Final = REPO / ".." / "shared" / "pcaps" / "enip"
SHARED_CAPTURES: Final = sorted(SHARED_FOLDER.glob("*.pcap*")) if SHARED_FOLDER.is_dir() else []
TSHARK: Final = shutil.which("tshark")
THRESHOLD: Final = 99.5
PI_ERROR: Final = 0x00800000

pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")

TSHARK_COMMAND: Final = (
    "-n", "-Y", "enip || cipio", "-T", "json", "--no-duplicate-keys",
    "-J", "frame enip cip cipcm cipcls cipio",
)
KINDS: Final = dict(ENIP_FIELDS) | dict(IO_FIELDS)
# Names icswatch gives where Wireshark has one name for several things.
COMPARED: Final = (frozenset(KINDS) - {"attributes", "connection_path", "route_path"}) | {
    "attribute", "connection_path", "route_path", "time", "response_to"}
BYTES: Final = frozenset({"context", "encap_data", "cpf.data", "sinzero", "epath", "data",
                          "cm.app_reply_data", "connection_path", "route_path"})
STRINGS: Final = frozenset({"lir.name", "lsr.servicename", "symbol", "id.product_name",
                            "sinaddr"})
Values = tuple[Any, ...]


@dataclass(slots=True)
class Service:
    """One side's view of one CIP service (or non-CIP message)."""

    frame: int
    fields: dict[str, Values]
    malformed: str | None = None


# -- Wireshark's side -------------------------------------------------------


def _value(name: str, show: str) -> Any:
    if name in BYTES:
        return show.replace(":", "")
    if name in STRINGS:
        return show
    if name == "time":
        return float(show)
    return int(show, 16) if show.startswith("0x") else int(show)


def _short(key: str) -> str:
    for prefix in ("enip.", "cipio.", "cip."):
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


@dataclass(slots=True)
class Collector:
    """Fields of one service in document order, and what was left out."""

    fields: dict[str, list[Any]] = field(default_factory=dict)
    ignored: Counter[str] = field(default_factory=Counter)

    def add(self, name: str, value: Any) -> None:
        for show in value if isinstance(value, list) else (value,):
            if isinstance(show, dict):
                continue
            if name in COMPARED:
                self.fields.setdefault(name, []).append(_value(name, show))
            else:
                self.ignored[name] += 1

    def copy(self) -> Collector:
        return Collector({k: list(v) for k, v in self.fields.items()}, self.ignored)


SKIPPED_SUBTREES: Final = ("Connection Information", "Route/Connection Path",
                           "Forward Open Connection Path", "Safety")


def _walk(tree: Any, into: Collector, path_kind: str = "") -> None:
    """Collect a subtree; ``path_kind`` is "connection" or "route" inside
    those EPATHs (only their epath, port and link address are kept)."""
    if isinstance(tree, list):
        for item in tree:
            _walk(item, into, path_kind)
        return
    if not isinstance(tree, dict):
        return
    for key, value in tree.items():
        if key.startswith("_ws.") or key in ("cip", "cipcls", "cipcm"):
            continue
        if key.startswith(SKIPPED_SUBTREES):
            continue
        if key.startswith("Connection Path"):
            _walk(value, into, "connection")
        elif key.startswith("Route Path"):
            _walk(value, into, "route")
        elif "." not in key or key.endswith("_tree"):
            _walk(value, into, path_kind)
        else:
            name = _short(key)
            if path_kind:
                if name == "epath":
                    into.add(f"{path_kind}_path", value)
                elif path_kind == "route" and name in ("port", "linkaddress.byte"):
                    into.add(name, value)
                elif isinstance(value, dict | list):
                    _walk(value, into, path_kind)
                continue
            into.add(name, value)
            if isinstance(value, dict | list):
                _walk(value, into, path_kind)


def _find(tree: Any, prefix: str) -> tuple[str, Any] | None:
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key.startswith(prefix):
                return key, value
            if isinstance(value, dict) and key not in ("cip", "cipcls", "cipcm"):
                found = _find(value, prefix)
                if found is not None:
                    return found
    return None


def _services(cip: dict[str, Any], cm: Any, cls: Any, base: Collector) -> Iterator[Collector]:
    """Split one CIP message (its cip layer plus the cipcm or cipcls layer
    beside it) into services as icswatch does."""
    cm = cm if isinstance(cm, dict) else None
    embedded = _find(cm, "CIP Embedded Message Request") if cm else None
    if cm is not None and embedded is not None:  # Unconnected Send: the carried request
        outer = base.copy()
        _walk(cm, outer)
        inner = embedded[1]
        yield from _services(inner["cip"], inner.get("cipcm"), inner.get("cipcls"), outer)
        return
    msp = _find(cip, "Multiple Service Packet (")
    if msp is None and cm is not None:
        msp = _find(cm, "Multiple Service Packet (")
    if msp is not None:
        head = base.copy()
        if cm is not None and "cip.cm.sc" in cm:  # reply to an Unconnected Send
            _walk({k: v for k, v in cm.items() if not k.startswith((
                "Request Path", "cip.request_path", "Multiple Service Packet"))}, head)
        packets = msp[1]
        head.add("msp.num_services", packets.get("cip.msp.num_services", []))
        for key, packet in packets.items():
            if not key.startswith("Service Packet #") or "cip" not in packet:
                continue
            one = head.copy()
            one.add("msp.offset", packet.get("cip.msp.offset", []))
            yield from _services(packet["cip"], packet.get("cipcm"), packet.get("cipcls"), one)
        return
    one = base.copy()
    unconnected_reply = cm is not None and "cip.cm.sc" in cm
    for key, value in cip.items():
        if unconnected_reply and key.startswith(("Request Path", "cip.request_path_size")):
            continue  # the Unconnected Send's own path, not the carried request's
        _walk({key: value}, one)
    for extra in (cm, cls):
        if isinstance(extra, dict):
            _walk(extra, one)
            nested = extra.get("cipcls")
            if isinstance(nested, dict):
                _walk(nested, one)
    yield one


def _listed(layer: Any) -> list[Any]:
    if layer is None:
        return []
    return layer if isinstance(layer, list) else [layer]


def _malformed(tree: Any) -> bool:
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key == "_ws.malformed":
                return True
            if key == "_ws.expert.severity" and int(value) >= PI_ERROR:
                return True
            if _malformed(value):
                return True
    elif isinstance(tree, list):
        return any(_malformed(item) for item in tree)
    return False


def tshark_services(capture: Path) -> tuple[list[Service], set[int], Counter[str]]:
    """Every service tshark shows, the frames it marks malformed, and the
    fields it shows that icswatch does not decode."""
    assert TSHARK is not None
    result = subprocess.run([TSHARK, *TSHARK_COMMAND, "-r", str(capture)],
                            capture_output=True, check=True)
    services: list[Service] = []
    malformed: set[int] = set()
    ignored: Counter[str] = Counter()
    for packet in json.loads(result.stdout):
        layers = packet["_source"]["layers"]
        frame = int(layers["frame"]["frame.number"])
        if _malformed(layers):
            malformed.add(frame)
        cips = _listed(layers.get("cip"))
        cms = _listed(layers.get("cipcm"))
        classes = _listed(layers.get("cipcls"))
        io = _listed(layers.get("cipio"))
        for enip in _listed(layers.get("enip")):
            base = Collector(ignored=ignored)
            _walk(enip, base)
            command = base.fields.get("command", [None])[0]
            types = base.fields.get("cpf.typeid", [])
            if command in (0x6F, 0x70) and {0xB1, 0xB2} & set(types) and cips:
                cip = cips.pop(0)
                if not isinstance(cip, dict):  # an empty data item: no CIP
                    services.append(Service(frame, {k: tuple(v) for k, v in base.fields.items()}))
                    continue
                cm = cms.pop(0) if cms else None
                cls = classes.pop(0) if classes and cm is None else None
                for one in _services(cip, cm, cls, base):
                    services.append(Service(frame, {k: tuple(v) for k, v in one.fields.items()}))
                continue
            if command is None and io:
                _walk(io.pop(0), base)
            services.append(Service(frame, {k: tuple(v) for k, v in base.fields.items()}))
    return services, malformed, ignored


# -- icswatch's side --------------------------------------------------------


def icswatch_services(capture: Path) -> tuple[list[Service], list[IcsEvent]]:
    events: list[IcsEvent] = []
    Sensor(events.append).replay([capture])
    events = [e for e in events if e.protocol in ("enip", "enip_io")]
    services: list[Service] = []
    for event in events:
        fields: dict[str, Values] = {}
        for name, value in event.fields.items():
            fields[name] = tuple(value) if isinstance(value, list) else (value,)
        # Wireshark calls every attribute id cip.attribute, the path's first.
        listed = fields.pop("attributes", ())
        if listed:
            fields["attribute"] = fields.get("attribute", ()) + listed
        if "symbol" in fields:
            fields["symbol"] = tuple(str(fields["symbol"][0]).split("."))
        if event.response_time is not None:
            fields["time"] = (event.response_time,)
            fields["response_to"] = (event.request_packet,)
        services.append(Service(event.packet, fields, event.malformed))
    return services, events


# -- documented differences -------------------------------------------------

ICSWATCH: Final = "only icswatch"
WIRESHARK: Final = "only Wireshark"
BOTH: Final = "values differ"


@dataclass(frozen=True, slots=True)
class Difference:
    field: str
    kind: str
    reason: str
    when: Callable[[Service], bool] | None = None

    def covers(self, name: str, kind: str, service: Service) -> bool:
        return name == self.field and kind == self.kind and (
            self.when is None or self.when(service))


def _encapsulation_only(service: Service) -> bool:
    """Not a SendRRData/SendUnitData carrying a CPF (an error reply has none)."""
    return service.fields.get("command") not in ((0x6F,), (0x70,)) \
        or "cpf.itemcount" not in service.fields


DOCUMENTED: Final[tuple[Difference, ...]] = (
    Difference("identity", ICSWATCH, "the device identity as one map for the asset "
               "inventory (Wireshark shows its parts, compared field by field)"),
    Difference("tag.type", ICSWATCH, "Logix tag service data type: Wireshark 4.0 has no "
               "Logix decoder and shows these bytes in cip.data (compared)"),
    Difference("tag.elements", ICSWATCH, "Logix tag service element count, inside cip.data"),
    Difference("tag.offset", ICSWATCH, "Logix fragmented service byte offset, inside cip.data"),
    Difference("time", ICSWATCH, "icswatch pairs every encapsulation command with its "
               "reply; Wireshark only SendRRData and SendUnitData", _encapsulation_only),
    Difference("response_to", ICSWATCH, "icswatch pairs every encapsulation command with "
               "its reply; Wireshark only SendRRData and SendUnitData", _encapsulation_only),
)


# -- the comparison ---------------------------------------------------------


@dataclass(slots=True)
class Tally:
    capture: str
    tshark_services: int = 0
    icswatch_services: int = 0
    compared: int = 0
    agreed: int = 0
    documented: Counter[Difference] = field(default_factory=Counter)
    ignored: Counter[str] = field(default_factory=Counter)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    unflagged: list[int] = field(default_factory=list)
    disagreements: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: dict[tuple[str, str], str] = field(default_factory=dict)  # the first of each

    @property
    def rate(self) -> float:
        return 100.0 * self.agreed / self.compared if self.compared else 100.0

    def summary(self) -> str:
        return (f"{self.capture}: {self.rate:.3f} % of {self.compared} fields agree "
                f"({self.documented.total()} documented differences not counted; services: "
                f"{self.tshark_services} tshark, {self.icswatch_services} icswatch)")

    def report(self) -> str:
        lines = [self.summary()]
        for key, count in self.disagreements.most_common(20):
            lines.append(f"  {count:6d} x {key[0]} ({key[1]}), e.g. {self.examples[key]}")
        return "\n".join(lines)


def _equal(name: str, ours: Values, theirs: Values) -> bool:
    if name == "time":
        return len(ours) == len(theirs) and all(
            math.isclose(a, b, abs_tol=1e-6) for a, b in zip(ours, theirs, strict=True))
    return ours == theirs


def compare(ours: Service, theirs: Service, tally: Tally) -> None:
    for name in ours.fields.keys() | theirs.fields.keys():
        mine, other = ours.fields.get(name), theirs.fields.get(name)
        if mine is not None and other is not None and _equal(name, mine, other):
            tally.compared += 1
            tally.agreed += 1
            continue
        kind = ICSWATCH if other is None else WIRESHARK if mine is None else BOTH
        documented = next((d for d in DOCUMENTED if d.covers(name, kind, ours)), None)
        if documented is not None:
            tally.documented[documented] += 1
            continue
        tally.compared += 1
        tally.disagreements[(name, kind)] += 1
        tally.examples.setdefault(
            (name, kind), f"frame {ours.frame}: icswatch {mine}, Wireshark {other}"[:240])


def _keyed(services: list[Service]) -> dict[tuple[int, int], Service]:
    keyed: dict[tuple[int, int], Service] = {}
    seen: Counter[int] = Counter()
    for service in services:
        keyed[(service.frame, seen[service.frame])] = service
        seen[service.frame] += 1
    return keyed


def compare_capture(capture: Path) -> Tally:
    our_list, events = icswatch_services(capture)
    their_list, malformed, ignored = tshark_services(capture)
    ours, theirs = _keyed(our_list), _keyed(their_list)
    tally = Tally(capture.name, len(theirs), len(ours), ignored=ignored)
    for key, service in ours.items():
        other = theirs.get(key)
        if other is None:
            if service.malformed == "truncated":  # cut short by the flow's end
                tally.documented[TRUNCATED_AT_END] += len(service.fields)
                continue
            tally.extra.append(f"frame {service.frame}")
            continue
        compare(service, other, tally)
    tally.missing = [f"frame {key[0]}" for key in theirs if key not in ours]
    flagged = {e.packet for e in events if e.malformed}
    tally.unflagged = sorted(malformed - flagged)
    return tally


TRUNCATED_AT_END: Final = Difference(
    "(service)", ICSWATCH, "a message the flow ended inside (or a tail too short for a "
    "header): icswatch reports it truncated, Wireshark waits for the rest and shows nothing")

_tally: Final = functools.cache(compare_capture)
Property = Callable[[str, object], None]


def _check(tally: Tally) -> None:
    print(tally.report())
    assert not tally.missing, f"services tshark shows without an event: {tally.missing[:10]}"
    assert not tally.extra, f"events tshark shows no service for: {tally.extra[:10]}"
    assert not tally.unflagged, f"frames tshark marks malformed, icswatch does not: " \
        f"{tally.unflagged[:10]}"
    assert tally.rate >= THRESHOLD, tally.report()


@pytest.mark.parametrize(
    "capture",
    [*OWN_CAPTURES, *(SHARED_CAPTURES or [pytest.param(
        None, marks=pytest.mark.skip(reason=f"{SHARED_FOLDER.resolve()} is absent"))])],
    ids=lambda path: path.name if path else "shared",
)
def test_capture_agrees_with_tshark(capture: Path, record_property: Property) -> None:
    tally = _tally(capture)
    record_property("agreement_percent", round(tally.rate, 3))
    _check(tally)


def test_overall_agreement_with_tshark(record_property: Property) -> None:
    tallies = [_tally(capture) for capture in [*OWN_CAPTURES, *SHARED_CAPTURES]]
    compared = sum(t.compared for t in tallies)
    agreed = sum(t.agreed for t in tallies)
    rate = 100.0 * agreed / compared if compared else 100.0
    record_property("agreement_percent", round(rate, 3))
    print("EtherNet/IP and CIP fields: icswatch against tshark")
    for tally in tallies:
        print("  " + tally.summary())
    print(f"  overall: {rate:.3f} % of {compared} fields agree")
    documented: Counter[Difference] = Counter()
    ignored: Counter[str] = Counter()
    for tally in tallies:
        documented.update(tally.documented)
        ignored.update(tally.ignored)
    print("Documented differences (not counted):")
    for difference in (*DOCUMENTED, TRUNCATED_AT_END):
        print(f"  {documented[difference]:6d} x {difference.field} ({difference.kind}): "
              f"{difference.reason}")
    print("Wireshark fields icswatch does not decode (not compared):")
    print("  " + ", ".join(f"{name} {count}" for name, count in ignored.most_common()))
    assert compared > 0
    assert rate >= THRESHOLD
