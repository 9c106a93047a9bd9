"""The communication map and asset inventory from real captures."""

from __future__ import annotations

from pathlib import Path

from console.times import iso
from detectors.inventory import Inventory, merge_asset, merge_communication
from detectors.vendors import mac_vendor
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


def test_devices_identified_by_their_protocol_answers() -> None:
    facts = {}
    for capture, protocol in (("modbus/device-identification.pcapng", "modbus"),
                              ("s7comm/identity.pcapng", "s7comm"),
                              ("enip/identity-attributes.pcapng", "enip")):
        inventory = Inventory()
        Sensor(inventory.observe).replay([PCAPS.parent / capture])
        [device] = [a for a in inventory.assets(iso) if a["identity"]]
        assert device["identity"]["protocol"] == protocol
        facts[protocol] = device
    assert facts["modbus"]["vendor"] == "ICSWatch Test Vendor"
    assert facts["modbus"]["identity"]["product"] == "IW-PLC-1000"
    assert facts["modbus"]["identity"]["firmware"] == "V2.4"
    assert facts["s7comm"]["vendor"] == "Siemens"
    assert facts["s7comm"]["identity"]["product"] == "6ES7 315-2EH14-0AB0"
    assert facts["enip"]["identity"]["serial"] == "006c061a"
    # Loopback frames carry a null MAC: no vendor is guessed from it.
    assert facts["modbus"]["mac_vendor"] is None


def test_vendor_from_the_mac_registry() -> None:
    assert mac_vendor("00:1d:9c:c5:13:dd") == "Rockwell Automation"
    assert mac_vendor("08:00:06:01:02:03") == "SIEMENS AG"
    for unassigned in ("00:00:00:00:00:00", "02:00:00:00:00:01", "01:00:5e:00:00:01",
                       "not a mac", None):
        assert mac_vendor(unassigned) is None


def test_a_new_firmware_is_history() -> None:
    inventory = Inventory()
    Sensor(inventory.observe).replay([PCAPS / "device-identification.pcapng"])
    [before] = [a for a in inventory.assets(iso) if a["identity"]]
    after = {**before, "identity": {**before["identity"], "firmware": "V2.5"}}
    merged = merge_asset(before, after)
    assert merged["history"][-1]["change"] == "identity"
    assert merged["history"][-1]["detail"] == "firmware V2.4 -> V2.5"
    assert merged["identity"]["firmware"] == "V2.5"
