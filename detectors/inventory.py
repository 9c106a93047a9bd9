"""The communication map and a first asset inventory, learned from events.

An edge is one (initiator, responder, protocol, responder port) pair, with
its flows, events by access class and first/last time; an asset is one IP
address with its MAC, the protocols it serves and speaks, its peers and the
roles its traffic suggests. Documents are cumulative totals keyed by a
stable id, so writing them again (a later snapshot, a second replay of the
same capture) replaces rather than adds.

Per event the cost is one attribute read on the flow and a few integer
increments: the edge is kept on the flow (``Flow.consumer_state``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from detectors.vendors import mac_vendor
from sensor.event import CONTROL, FILE, PROGRAM, READ, REQUEST, WRITE, IcsEvent
from sensor.flows.flow import Flow

# The role of a host that serves a protocol: the field device behind it.
SERVER_ROLES: Final = {
    "modbus": "plc", "s7comm": "plc", "s7comm_plus": "plc", "enip": "plc", "cip": "plc",
    "fins": "plc", "melsec": "plc", "profinet": "plc", "opcua": "server",
    "dnp3": "rtu", "iec104": "rtu", "mms": "ied", "goose": "ied", "bacnet": "controller",
    "hart_ip": "gateway",
}
# Engineering work (programs, files) marks an engineering workstation; plain
# polling and commands mark an HMI/SCADA master.
ENGINEERING_ACCESS: Final = frozenset({PROGRAM, FILE})


@dataclass(slots=True)
class Edge:
    source: str
    target: str
    protocol: str
    port: int
    transport: str
    first_ts: float
    last_ts: float
    flows: int = 0
    events: int = 0
    reads: int = 0
    writes: int = 0
    controls: int = 0
    engineering: int = 0
    source_mac: str | None = None
    target_mac: str | None = None

    @property
    def id(self) -> str:
        basis = f"{self.source}|{self.target}|{self.protocol}|{self.port}|{self.transport}"
        return hashlib.sha1(basis.encode()).hexdigest()[:20]


@dataclass(slots=True)
class Change:
    ts: float
    change: str
    detail: str


@dataclass(slots=True)
class Asset:
    ip: str
    first_ts: float
    last_ts: float
    mac: str | None = None
    served: set[str] = field(default_factory=set)
    spoken: set[str] = field(default_factory=set)
    peers: set[str] = field(default_factory=set)
    events: int = 0
    roles: tuple[str, ...] = ()
    history: list[Change] = field(default_factory=list)


MAX_HISTORY: Final = 200

# The responses that describe the device answering them: operation -> (the
# event field holding the facts, the protocol's names for vendor, product,
# firmware and serial number, the vendor when the protocol implies it).
IDENTITY_SOURCES: Final = {
    "read_device_identification": (
        "device_identification", ("vendor_name", "product_code", "major_minor_revision", None),
        None),
    "list_identity": (
        "identity", ("vendor", "product_name", "revision", "serial_number"), None),
    "get_attributes_all": (
        "identity", ("vendor", "product_name", "revision", "serial_number"), None),
    "read_szl": (
        "identity", (None, "order_number", "firmware_version", "serial_number"), "Siemens"),
}
IDENTITY_KEYS: Final = ("vendor", "product", "firmware", "serial")


def identity_facts(event: IcsEvent) -> dict[str, str] | None:
    """Vendor, product, firmware and serial number a response tells of the
    device that sent it (only the ones it tells), with the protocol."""
    source = IDENTITY_SOURCES.get(event.operation)
    if source is None:
        return None
    field_name, names, implied = source
    raw = event.fields.get(field_name)
    if not isinstance(raw, dict):
        return None
    facts = {key: str(raw[name]) for key, name in zip(IDENTITY_KEYS, names, strict=True)
             if name is not None and raw.get(name) not in (None, "")}
    if implied is not None:
        facts.setdefault("vendor", implied)
    if not facts:
        return None
    facts["protocol"] = event.protocol
    return facts


class Inventory:
    """Feed it every event (`observe`); `communications` and `assets` give
    the documents the console stores."""

    def __init__(self) -> None:
        self.edges: dict[tuple[str, str, str, int, str], Edge] = {}
        self._assets: dict[str, Asset] = {}
        # What devices said of themselves, by address (the responder's).
        self.identities: dict[str, dict[str, str]] = {}

    def observe(self, event: IcsEvent) -> None:
        flow = event.flow
        edge = flow.consumer_state
        if edge is None:
            edge = flow.consumer_state = self._edge(flow, event)
        edge.events += 1
        ts = event.ts
        if ts > edge.last_ts:
            edge.last_ts = ts
        if event.direction == REQUEST:
            access = event.access
            if access == READ:
                edge.reads += 1
            elif access == WRITE:
                edge.writes += 1
            elif access == CONTROL:
                edge.controls += 1
            elif access in ENGINEERING_ACCESS:
                edge.engineering += 1
        elif event.operation in IDENTITY_SOURCES:
            facts = identity_facts(event)
            if facts is not None:
                known = self.identities.setdefault(event.src_ip, {})
                known.update(facts)

    __call__ = observe

    def _edge(self, flow: Flow, event: IcsEvent) -> Edge:
        key = (flow.initiator_ip, flow.responder_ip, event.protocol, flow.responder_port,
               flow.transport_name)
        edge = self.edges.get(key)
        if edge is None:
            edge = self.edges[key] = Edge(*key, first_ts=event.ts, last_ts=event.ts)
        edge.flows += 1
        if flow.initiator_mac:
            edge.source_mac = flow.initiator_mac
        if flow.responder_mac:
            edge.target_mac = flow.responder_mac
        return edge

    # -- documents ------------------------------------------------------------------

    def communications(self, iso: Callable[[float], str]) -> list[dict[str, Any]]:
        """One document per edge; ``iso`` formats epoch seconds."""
        return [
            {"id": edge.id, "source": edge.source, "target": edge.target,
             "protocol": edge.protocol, "port": edge.port, "transport": edge.transport,
             "flows": edge.flows, "events": edge.events, "reads": edge.reads,
             "writes": edge.writes, "controls": edge.controls,
             "engineering": edge.engineering,
             "first_seen": iso(edge.first_ts), "last_seen": iso(edge.last_ts)}
            for edge in self.edges.values()
        ]

    def assets(self, iso: Callable[[float], str]) -> list[dict[str, Any]]:
        """One document per IP address, with the changes seen since the
        first snapshot (new protocols, new peers, new roles)."""
        self._update_assets()
        return [
            {"id": asset.ip, "ip": asset.ip, "mac": asset.mac,
             "vendor": self.identities.get(asset.ip, {}).get("vendor") or mac_vendor(asset.mac),
             "mac_vendor": mac_vendor(asset.mac),
             "identity": self.identities.get(asset.ip),
             "roles": list(asset.roles) or ["unknown"],
             "protocols": {"served": sorted(asset.served), "spoken": sorted(asset.spoken)},
             "first_seen": iso(asset.first_ts), "last_seen": iso(asset.last_ts),
             "peers": len(asset.peers), "events": asset.events,
             "history": [{"at": iso(change.ts), "change": change.change,
                          "detail": change.detail} for change in asset.history]}
            for asset in sorted(self._assets.values(), key=lambda asset: asset.ip)
        ]

    def _update_assets(self) -> None:
        """Fold the edges into assets in time order, so history reads as it
        happened. Totals are recomputed; history only grows."""
        seen: dict[str, Asset] = {}
        engineering: set[str] = set()
        masters: set[str] = set()
        for edge in sorted(self.edges.values(), key=lambda edge: edge.first_ts):
            for ip, mac, role_side in ((edge.source, edge.source_mac, False),
                                       (edge.target, edge.target_mac, True)):
                asset = seen.get(ip)
                if asset is None:
                    previous = self._assets.get(ip)
                    asset = seen[ip] = Asset(ip, edge.first_ts, edge.last_ts)
                    if previous is not None:
                        asset.history = previous.history
                        asset.first_ts = min(previous.first_ts, edge.first_ts)
                    else:
                        asset.history.append(Change(edge.first_ts, "first_seen", ip))
                asset.last_ts = max(asset.last_ts, edge.last_ts)
                asset.mac = mac or asset.mac
                asset.events += edge.events
                asset.peers.add(edge.target if ip == edge.source else edge.source)
                (asset.served if role_side else asset.spoken).add(edge.protocol)
            if edge.engineering:
                engineering.add(edge.source)
            else:
                masters.add(edge.source)
        for ip, asset in seen.items():
            roles = {SERVER_ROLES.get(protocol, "server") for protocol in asset.served}
            if ip in engineering:
                roles.add("engineering")
            elif ip in masters:
                roles.add("master")
            asset.roles = tuple(sorted(roles))
            previous = self._assets.get(ip)
            if previous is not None:
                self._note_changes(previous, asset)
        self._assets = seen

    @staticmethod
    def _note_changes(before: Asset, after: Asset) -> None:
        now = after.last_ts
        for protocol in sorted((after.served | after.spoken) - (before.served | before.spoken)):
            after.history.append(Change(now, "new_protocol", protocol))
        for peer in sorted(after.peers - before.peers):
            after.history.append(Change(now, "new_peer", peer))
        if after.roles != before.roles and before.roles:
            after.history.append(Change(now, "role", f"{', '.join(before.roles)} -> "
                                                      f"{', '.join(after.roles)}"))
        del after.history[:-MAX_HISTORY]


# -- accumulating snapshots across runs ----------------------------------------------

def _earliest(a: Any, b: Any) -> Any:
    return min(value for value in (a, b) if value) if a or b else None


def _latest(a: Any, b: Any) -> Any:
    return max(value for value in (a, b) if value) if a or b else None


EDGE_COUNTERS: Final = ("flows", "events", "reads", "writes", "controls", "engineering")


def merge_communication(stored: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """An edge seen by an earlier run and by this one: counters add up,
    times widen. (Replaying the same capture twice counts it twice, as a
    second look at the same traffic would.)"""
    if stored is None:
        return new
    merged = dict(new)
    for name in EDGE_COUNTERS:
        merged[name] = int(stored.get(name) or 0) + int(new.get(name) or 0)
    merged["first_seen"] = _earliest(stored.get("first_seen"), new.get("first_seen"))
    merged["last_seen"] = _latest(stored.get("last_seen"), new.get("last_seen"))
    return merged


def merge_asset(stored: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """An asset known from earlier runs: what it serves, speaks and is grows;
    its history keeps the earlier entries and adds this run's changes."""
    if stored is None:
        return new
    merged = dict(new)
    old_protocols = stored.get("protocols") or {}
    protocols = {side: sorted(set(old_protocols.get(side) or ()) |
                              set((new.get("protocols") or {}).get(side) or ()))
                 for side in ("served", "spoken")}
    merged["protocols"] = protocols
    roles = (set(stored.get("roles") or ()) | set(new.get("roles") or ())) - {"unknown"}
    merged["roles"] = sorted(roles) or ["unknown"]
    merged["mac"] = new.get("mac") or stored.get("mac")
    for key in ("vendor", "mac_vendor"):
        merged[key] = new.get(key) or stored.get(key)
    before, now = stored.get("identity") or {}, new.get("identity") or {}
    merged["identity"] = {**before, **now} or None
    merged["events"] = int(stored.get("events") or 0) + int(new.get("events") or 0)
    merged["peers"] = max(int(stored.get("peers") or 0), int(new.get("peers") or 0))
    merged["first_seen"] = _earliest(stored.get("first_seen"), new.get("first_seen"))
    merged["last_seen"] = _latest(stored.get("last_seen"), new.get("last_seen"))
    history = list(stored.get("history") or [])
    at = new.get("last_seen")
    known = set(old_protocols.get("served") or ()) | set(old_protocols.get("spoken") or ())
    for protocol in sorted(set(protocols["served"]) | set(protocols["spoken"])):
        if protocol not in known:
            history.append({"at": at, "change": "new_protocol", "detail": protocol})
    for key in ("product", "firmware", "serial"):
        if before.get(key) and now.get(key) and before[key] != now[key]:
            history.append({"at": at, "change": "identity",
                            "detail": f"{key} {before[key]} -> {now[key]}"})
    old_roles = sorted(set(stored.get("roles") or ()) - {"unknown"})
    if old_roles and sorted(roles) != old_roles:
        history.append({"at": at, "change": "role",
                        "detail": f"{', '.join(old_roles)} -> {', '.join(sorted(roles))}"})
    merged["history"] = history[-MAX_HISTORY:]
    return merged


def merge_sensor(stored: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """A sensor reporting again: first seen stays, the rest is this run's."""
    if stored is None:
        return new
    return {**new, "first_seen": _earliest(stored.get("first_seen"), new.get("first_seen"))}


MERGERS: Final = {"communications": merge_communication, "assets": merge_asset,
                  "sensors": merge_sensor}
