"""The communication map and asset inventory from real captures."""

from __future__ import annotations

from pathlib import Path

from console.times import iso
from detectors.inventory import Inventory, merge_asset, merge_communication
from sensor.runtime import Sensor

PCAPS = Path(__file__).resolve().parents[2] / "pcaps" / "modbus"


def _inventory(*names: str) -> Inventory:
    inventory = Inventory()
    Sensor(inventory.observe).replay([PCAPS / name for name in names])
    return inventory


def test_edges_count_flows_events_and_access_classes() -> None:
    inventory = _inventory("read-write.pcapng")
    edges = inventory.communications(iso)
    assert len(edges) == 1
    edge = edges[0]
    assert (edge["source"], edge["target"], edge["protocol"], edge["port"]) == (
        "127.0.0.1", "127.0.0.1", "modbus", 502)
    assert edge["flows"] == 1 and edge["events"] > 0
    assert edge["reads"] > 0 and edge["writes"] > 0
    assert edge["first_seen"] <= edge["last_seen"]
    again = _inventory("read-write.pcapng").communications(iso)
    assert again[0]["id"] == edge["id"]  # stable: a second replay replaces, not adds


def test_assets_roles_and_history() -> None:
    inventory = _inventory("attack-unauthorised-write.pcapng")
    assets = {asset["ip"]: asset for asset in inventory.assets(iso)}
    attacker = assets["127.0.0.66"]
    assert attacker["protocols"] == {"served": [], "spoken": ["modbus"]}
    assert attacker["roles"] == ["master"]
    assert "plc" in assets["127.0.0.1"]["roles"]
    assert attacker["history"] == [
        {"at": attacker["first_seen"], "change": "first_seen", "detail": "127.0.0.66"}]
    # A later snapshot after more traffic records what changed.
    Sensor(inventory.observe).replay([PCAPS / "nonstandard-port.pcapng"])
    later = {asset["ip"]: asset for asset in inventory.assets(iso)}
    assert later["127.0.0.66"]["history"] == attacker["history"]
    changes = [(c["change"], c["detail"]) for c in later["127.0.0.1"]["history"]]
    assert changes == [("first_seen", "127.0.0.1"), ("new_peer", "127.0.0.1"),
                       ("role", "plc -> master, plc")]


def test_engineering_access_marks_an_engineering_workstation() -> None:
    inventory = _inventory("attack-file-record-write.pcapng")
    roles = {asset["ip"]: asset["roles"] for asset in inventory.assets(iso)}
    assert "engineering" in roles["127.0.0.66"]


def test_snapshots_of_later_runs_add_to_earlier_ones() -> None:
    first = {a["ip"]: a for a in _inventory("read-write.pcapng").assets(iso)}
    second = {a["ip"]: a for a in _inventory("attack-unauthorised-write.pcapng").assets(iso)}
    merged = merge_asset(first["127.0.0.1"], second["127.0.0.1"])
    assert merged["events"] == first["127.0.0.1"]["events"] + second["127.0.0.1"]["events"]
    assert merged["first_seen"] == min(first["127.0.0.1"]["first_seen"],
                                       second["127.0.0.1"]["first_seen"])
    assert merged["last_seen"] == max(first["127.0.0.1"]["last_seen"],
                                      second["127.0.0.1"]["last_seen"])
    assert set(merged["roles"]) == set(first["127.0.0.1"]["roles"]) | set(
        second["127.0.0.1"]["roles"])
    assert merged["history"][: len(first["127.0.0.1"]["history"])] == first["127.0.0.1"][
        "history"]
    assert merge_asset(None, second["127.0.0.66"]) == second["127.0.0.66"]
    edge = _inventory("read-write.pcapng").communications(iso)[0]
    twice = merge_communication(edge, edge)
    assert twice["events"] == 2 * edge["events"] and twice["flows"] == 2 * edge["flows"]
    assert (twice["first_seen"], twice["last_seen"]) == (edge["first_seen"], edge["last_seen"])
