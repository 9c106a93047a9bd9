"""What the web console adds to the store contract, against both stores (a
real SQLite file, a real Elasticsearch node): triage on the stored alert,
kept when the alert is written again; the live feed of alerts by the order
they were stored; and the inventory documents (assets, communication map,
sensors)."""

from __future__ import annotations

import copy
import json
import sqlite3
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from console.es_sink import ElasticsearchSink
from console.spool import Spool
from console.stores.base import STATUSES, AlertQuery, Store
from console.stores.elasticsearch import ElasticsearchStore
from console.stores.sqlite import SCHEMA_VERSION, SqliteStore
from tests.support.alerts import numbered, replay_alerts

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = replay_alerts(sorted((ROOT / "pcaps" / "modbus").glob("attack-*.pcapng")))
Doc = dict[str, Any]
# 2023-11-14T22:13:20.250000Z
WHEN = 1_700_000_000.25
ISO_WHEN = "2023-11-14T22:13:20.250000Z"


def _alerts(start: int, count: int, tag: str = "console") -> list[Doc]:
    return numbered(TEMPLATES, start, count, tag)


def _ids(docs: list[Doc]) -> list[str]:
    return [doc["event"]["id"] for doc in docs]


@pytest.fixture(params=["sqlite", "elasticsearch"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each store, empty. The Elasticsearch feed without its settling delay:
    `flush` makes writes searchable at once here."""
    opened: Store
    if request.param == "sqlite":
        opened = SqliteStore(tmp_path / "console.db")
    else:
        es = ElasticsearchStore(request.getfixturevalue("elasticsearch_url"), live_delay=0)
        es.install_templates()
        opened = es
    yield opened
    opened.close()


def _triage(doc: Doc | None) -> dict[str, Any]:
    assert doc is not None
    return {key: value for key, value in doc["ics"]["alert"].items()
            if key in ("status", "assignee", "resolution", "updated")}


# -- triage -------------------------------------------------------------------------


def test_triage_round_trip(store: Store) -> None:
    alerts = _alerts(0, 12)
    store.write_alerts(alerts)
    store.flush()
    target, other = alerts[3]["event"]["id"], alerts[7]["event"]["id"]
    assert _triage(store.get_alert(target)) == {"status": "open"}

    changed = store.set_triage(target, status="acknowledged", assignee="alice", updated=WHEN)
    expected = {"status": "acknowledged", "assignee": "alice", "updated": ISO_WHEN}
    assert _triage(changed) == expected
    assert changed is not None and changed["event"]["id"] == target
    assert changed["rule"] == alerts[3]["rule"]
    # Visible to the next query at once, in every way the console reads alerts.
    assert _triage(store.get_alert(target)) == expected
    page = store.search_alerts(AlertQuery(statuses=["acknowledged"]))
    assert (_ids(page.alerts), page.total) == ([target], 1)
    assert _triage(page.alerts[0]) == expected
    assert _ids(store.search_alerts(AlertQuery(assignees=["alice"])).alerts) == [target]
    assert _ids(store.search_alerts(AlertQuery(assignees="alice")).alerts) == [target]
    assert store.count_alerts(AlertQuery(assignees=["bob"])) == 0
    assert store.count_alerts(AlertQuery(statuses=["open"])) == len(alerts) - 1
    everything = {doc["event"]["id"]: doc for doc in store.search_alerts(AlertQuery()).alerts}
    assert _triage(everything[target]) == expected
    assert _triage(everything[other]) == {"status": "open"}
    assert store.top(AlertQuery(), "ics.alert.status") == [
        ("open", len(alerts) - 1), ("acknowledged", 1)]
    assert store.top(AlertQuery(), "ics.alert.assignee") == [("alice", 1)]

    # None leaves a field as it is; "" clears it.
    store.set_triage(other, assignee="bob", updated=WHEN)
    closed = store.set_triage(target, status="closed", resolution="maintenance window",
                              updated=WHEN + 60)
    assert _triage(closed) == {"status": "closed", "assignee": "alice",
                               "resolution": "maintenance window",
                               "updated": "2023-11-14T22:14:20.250000Z"}
    assert store.count_alerts(AlertQuery(statuses=["closed"], assignees=["alice"])) == 1
    assert store.top(AlertQuery(), "ics.alert.assignee") == [("alice", 1), ("bob", 1)]
    reopened = store.set_triage(target, status="open", assignee="", resolution="",
                                updated=WHEN + 120)
    assert _triage(reopened) == {"status": "open", "updated": "2023-11-14T22:15:20.250000Z"}
    assert _triage(store.get_alert(target)) == _triage(reopened)
    assert store.top(AlertQuery(), "ics.alert.assignee") == [("bob", 1)]
    assert store.top(AlertQuery(), "ics.alert.status") == [("open", len(alerts))]


def test_unknown_alert_and_unknown_status(store: Store) -> None:
    alerts = _alerts(0, 3)
    store.write_alerts(alerts)
    store.flush()
    assert store.set_triage("no-such-alert", status="closed", updated=WHEN) is None
    with pytest.raises(ValueError, match="status"):
        store.set_triage(alerts[0]["event"]["id"], status="resolved", updated=WHEN)
    assert set(STATUSES) == {"open", "acknowledged", "closed", "false_positive"}
    for status in STATUSES:
        assert _triage(store.set_triage(alerts[0]["event"]["id"], status=status,
                                        updated=WHEN))["status"] == status
    assert _triage(store.get_alert(alerts[1]["event"]["id"])) == {"status": "open"}


def test_writing_alerts_again_keeps_their_triage(store: Store) -> None:
    alerts = _alerts(0, 20)
    store.write_alerts(alerts)
    store.flush()
    first = {doc["event"]["id"]: doc["event"]["ingested"]
             for doc in store.search_alerts(AlertQuery(size=100)).alerts}
    assert len(first) == len(alerts)
    target = alerts[5]["event"]["id"]
    store.set_triage(target, status="false_positive", assignee="carol",
                     resolution="test bench", updated=WHEN)
    store.write_alerts(alerts)  # a second replay of the same capture
    store.write_alerts(alerts[:10] + alerts[:10])  # a retried batch
    store.flush()
    assert store.count_alerts(AlertQuery()) == len(alerts)
    assert _triage(store.get_alert(target)) == {
        "status": "false_positive", "assignee": "carol", "resolution": "test bench",
        "updated": ISO_WHEN}
    assert store.count_alerts(AlertQuery(statuses=["false_positive"])) == 1
    again = {doc["event"]["id"]: doc["event"]["ingested"]
             for doc in store.search_alerts(AlertQuery(size=100)).alerts}
    assert again == first  # still when each was first stored


def test_a_document_carrying_triage_keeps_the_stored_one(store: Store) -> None:
    """A document that already carries triage (an export written back) sets
    it when new; it does not overwrite triage done since."""
    alert = copy.deepcopy(_alerts(0, 1)[0])
    alert["ics"]["alert"].update(status="acknowledged", assignee="dave")
    store.write_alerts([alert])
    store.flush()
    assert _triage(store.get_alert(alert["event"]["id"])) == {
        "status": "acknowledged", "assignee": "dave"}
    store.set_triage(alert["event"]["id"], status="closed", assignee="", updated=WHEN)
    store.write_alerts([alert])
    store.flush()
    assert _triage(store.get_alert(alert["event"]["id"])) == {
        "status": "closed", "updated": ISO_WHEN}


# -- the live feed ------------------------------------------------------------------


def _drain(store: Store, marker: str, size: int) -> tuple[list[str], str]:
    seen: list[str] = []
    while True:
        new, marker = store.alerts_since(marker, size)
        assert len(new) <= size
        if not new:
            return seen, marker
        seen.extend(_ids(new))


def test_alerts_since_sees_every_alert_once(store: Store) -> None:
    before = _alerts(0, 15, "before")
    store.write_alerts(before)
    store.flush()
    new, start = store.alerts_since(None)
    assert new == []
    assert store.alerts_since(start) == ([], start)  # nothing stored since

    batches = [_alerts(0, 23, "one"), _alerts(0, 9, "two"), _alerts(0, 31, "three")]
    seen: list[str] = []
    marker = start
    for number, batch in enumerate(batches):
        store.write_alerts(batch)
        if number:
            store.write_alerts(before + batches[0])  # re-writes are not new
        store.flush()
        got, marker = _drain(store, marker, 7)
        assert sorted(got) == sorted(_ids(batch))
        seen.extend(got)
    assert len(seen) == len(set(seen)) == sum(map(len, batches))
    # A later reader from the same start sees them all, oldest batch first.
    again, end = _drain(store, start, 10)
    assert again == seen
    assert store.alerts_since(end) == ([], end)
    new, _ = store.alerts_since(start, 5)
    assert len(new) == 5 and all("ingested" in doc["event"] for doc in new)
    assert store.alerts_since(start, 0) == ([], start)


def test_alerts_since_returns_triaged_documents(store: Store) -> None:
    _, marker = store.alerts_since(None)
    alerts = _alerts(0, 4)
    store.write_alerts(alerts)
    store.flush()
    store.set_triage(alerts[2]["event"]["id"], status="acknowledged", updated=WHEN)
    new, _ = store.alerts_since(marker)
    assert sorted(_ids(new)) == sorted(_ids(alerts))
    statuses = {doc["event"]["id"]: doc["ics"]["alert"]["status"] for doc in new}
    assert statuses[alerts[2]["event"]["id"]] == "acknowledged"


@pytest.mark.parametrize("marker", ["nonsense", "", "e30", "WyJzaW5jZSJd"])
def test_a_foreign_marker(store: Store, marker: str) -> None:
    with pytest.raises(ValueError, match="marker"):
        store.alerts_since(marker)


def test_the_feed_waits_for_alerts_to_settle(elasticsearch_url: str) -> None:
    """Elasticsearch: alerts stamped within ``live_delay`` seconds are left
    for a later call (a bulk request still in flight may hold older ones)."""
    store = ElasticsearchStore(elasticsearch_url, live_delay=60)
    store.install_templates()
    _, marker = store.alerts_since(None)
    alerts = _alerts(0, 5)
    store.write_alerts(alerts)
    store.flush()
    assert store.alerts_since(marker) == ([], marker)
    store.live_delay = 0
    new, _ = store.alerts_since(marker)
    assert sorted(_ids(new)) == sorted(_ids(alerts))
    store.close()


# -- through the Elasticsearch sink -------------------------------------------------


def test_the_sink_keeps_triage_and_stamps_delivery(elasticsearch_url: str,
                                                   tmp_path: Path) -> None:
    store = ElasticsearchStore(elasticsearch_url, live_delay=0)
    store.install_templates()
    _, marker = store.alerts_since(None)
    alerts = _alerts(0, 1200, "sink")

    def replay() -> None:  # batches of 600 go as two parallel bulk requests
        sink = ElasticsearchSink(store, Spool(tmp_path / "spool"), linger=0.05,
                                 batch_size=600)
        for document in alerts:
            sink.write_alert(document)
        assert sink.close(timeout=120)
        assert sink.counters["alerts_rejected"] == 0
        store.flush()

    replay()
    stored = _drain(store, marker, 100)
    assert sorted(stored[0]) == sorted(_ids(alerts))
    target = alerts[42]["event"]["id"]
    first = store.get_alert(target)
    assert first is not None
    ingested = first["event"]["ingested"]
    assert ingested > "2024" and first["event"]["id"] == target
    store.set_triage(target, status="closed", assignee="erin", resolution="known",
                     updated=WHEN)
    replay()  # the same capture again: every alert answers "version conflict"
    assert store.count_alerts(AlertQuery()) == len(alerts)
    again = store.get_alert(target)
    assert _triage(again) == {"status": "closed", "assignee": "erin",
                              "resolution": "known", "updated": ISO_WHEN}
    assert again is not None and again["event"]["ingested"] == ingested
    assert store.alerts_since(stored[1]) == ([], stored[1])
    store.close()


# -- inventory ----------------------------------------------------------------------


ASSETS = [
    {"id": "10.0.0.20", "ip": "10.0.0.20", "mac": "00:1d:9c:c7:b0:70", "vendor": None,
     "roles": ["plc"], "protocols": {"served": ["modbus"], "spoken": []},
     "first_seen": "2024-05-01T10:00:00.000000Z", "last_seen": "2024-05-01T11:00:00.000000Z",
     "peers": 2, "events": 120,
     "history": [{"at": "2024-05-01T10:00:00.000000Z", "change": "first_seen",
                  "detail": "10.0.0.20"}]},
    {"id": "10.0.0.5", "ip": "10.0.0.5", "mac": None, "vendor": None, "roles": ["master"],
     "protocols": {"served": [], "spoken": ["modbus"]},
     "first_seen": "2024-05-01T10:00:00.000000Z", "last_seen": "2024-05-01T10:30:00.000000Z",
     "peers": 1, "events": 60, "history": []},
    {"id": "fe80::1", "ip": "fe80::1", "mac": None, "vendor": None, "roles": ["unknown"],
     "protocols": {"served": [], "spoken": []},
     "first_seen": "2024-05-01T10:00:00.000000Z", "last_seen": "2024-05-01T10:00:00.000000Z",
     "peers": 0, "events": 1, "history": []},
]
COMMUNICATIONS = [
    {"id": "e2", "source": "10.0.0.5", "target": "10.0.0.20", "protocol": "modbus",
     "port": 502, "transport": "tcp", "flows": 3, "events": 60, "reads": 50, "writes": 10,
     "controls": 0, "engineering": 0, "first_seen": "2024-05-01T10:00:00.000000Z",
     "last_seen": "2024-05-01T10:30:00.000000Z"},
    # A layer-2 protocol: its ends are not IP addresses, and are kept all the same.
    {"id": "e1", "source": "00:1d:9c:c7:b0:70", "target": "01:0c:cd:01:00:01",
     "protocol": "goose", "port": 0, "transport": "ethernet", "flows": 1, "events": 4,
     "reads": 0, "writes": 0, "controls": 0, "engineering": 0,
     "first_seen": "2024-05-01T10:00:00.000000Z",
     "last_seen": "2024-05-01T10:00:01.000000Z"},
]
SENSORS = [
    {"id": "plant-a", "name": "plant-a", "kind": "replay",
     "first_seen": "2024-05-01T10:00:00.000000Z", "last_seen": "2024-05-01T11:00:00.000000Z",
     "stats": {"packets": 1000, "protocols": {"modbus": 180}}, "captures": ["a.pcapng"]},
]


def test_inventory_upsert_list_get(store: Store) -> None:
    assert store.list_inventory("assets") == []
    assert store.get_inventory("assets", "10.0.0.20") is None
    store.write_inventory("assets", ASSETS)
    store.write_inventory("communications", COMMUNICATIONS)
    store.write_inventory("sensors", SENSORS)
    store.write_inventory("sensors", [])
    # Ordered by id (as strings), each kind on its own.
    assert store.list_inventory("assets") == sorted(ASSETS, key=lambda d: d["id"])
    assert [d["id"] for d in store.list_inventory("assets")] == [
        "10.0.0.20", "10.0.0.5", "fe80::1"]
    assert store.list_inventory("communications") == sorted(COMMUNICATIONS,
                                                            key=lambda d: d["id"])
    assert store.list_inventory("sensors") == SENSORS
    assert store.get_inventory("assets", "10.0.0.5") == ASSETS[1]
    assert store.get_inventory("sensors", "10.0.0.5") is None
    assert store.get_inventory("communications", "e1") == COMMUNICATIONS[1]
    assert store.list_inventory("assets", size=2) == sorted(ASSETS, key=lambda d: d["id"])[:2]

    # A later snapshot replaces each document whole, by id.
    changed = copy.deepcopy(ASSETS[0])
    changed["roles"] = ["plc", "engineering"]
    del changed["history"]
    added = {"id": "10.0.0.9", "ip": "10.0.0.9", "roles": ["hmi"]}
    store.write_inventory("assets", [changed, added])
    assert store.get_inventory("assets", "10.0.0.20") == changed
    assert [d["id"] for d in store.list_inventory("assets")] == [
        "10.0.0.20", "10.0.0.5", "10.0.0.9", "fe80::1"]
    assert len(store.list_inventory("communications")) == 2


def test_inventory_refuses_unknown_kinds_and_missing_ids(store: Store) -> None:
    for call in (lambda: store.write_inventory("hosts", ASSETS),
                 lambda: store.list_inventory("alerts"),
                 lambda: store.get_inventory("events", "x")):
        with pytest.raises(ValueError, match="kind"):
            call()
    for bad in ({"ip": "10.0.0.1"}, {"id": 7}, {"id": ""}):
        with pytest.raises(ValueError, match="id"):
            store.write_inventory("assets", [ASSETS[0], bad])
    assert store.list_inventory("assets") == []  # nothing of a refused batch


def test_inventory_is_the_same_in_both_stores(elasticsearch_url: str, tmp_path: Path) -> None:
    es = ElasticsearchStore(elasticsearch_url)  # templates installed by the first write
    embedded = SqliteStore(tmp_path / "s.db")
    many = [{"id": f"{n:04x}", "ip": f"10.1.{n // 256}.{n % 256}", "roles": ["plc"]}
            for n in range(2500)]
    for one in (es, embedded):
        one.write_inventory("assets", many[::-1])
    for size in (1, 999, 1000, 1001, 2500, 10_000):
        assert es.list_inventory("assets", size) == embedded.list_inventory("assets", size)
    assert len(es.list_inventory("assets")) == 2500
    es.close()
    embedded.close()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def test_inventory_index_mappings(elasticsearch_url: str) -> None:
    store = ElasticsearchStore(elasticsearch_url)
    store.install_templates()
    store.write_inventory("assets", ASSETS)
    store.write_inventory("communications", COMMUNICATIONS)
    store.write_inventory("sensors", SENSORS)
    mapping = _get(f"{elasticsearch_url}/icswatch-assets,icswatch-communications,"
                   "icswatch-sensors/_mapping")
    fields = {
        index: _flatten(body["mappings"]["properties"]) for index, body in mapping.items()}
    assert {index: body["mappings"]["dynamic"] for index, body in mapping.items()} == {
        "icswatch-assets": "false", "icswatch-communications": "false",
        "icswatch-sensors": "false"}
    assets = fields["icswatch-assets"]
    assert (assets["id"], assets["ip"], assets["mac"], assets["roles"]) == (
        "keyword", "ip", "keyword", "keyword")
    assert (assets["protocols.served"], assets["protocols.spoken"]) == ("keyword", "keyword")
    assert (assets["first_seen"], assets["last_seen"]) == ("date", "date")
    assert "history" not in assets and "vendor" not in assets  # _source only
    edges = fields["icswatch-communications"]
    assert (edges["source"], edges["target"], edges["protocol"], edges["port"]) == (
        "ip", "ip", "keyword", "long")
    sensors = fields["icswatch-sensors"]
    assert (sensors["name"], sensors["kind"], sensors["status"]) == (
        "keyword", "keyword", "keyword")
    assert not any(name.startswith("stats") for name in sensors)
    found = _get(f"{elasticsearch_url}/icswatch-assets/_search?q=roles:master")
    assert [hit["_id"] for hit in found["hits"]["hits"]] == ["10.0.0.5"]
    found = _get(f"{elasticsearch_url}/icswatch-communications/_search?q=port:502")
    assert [hit["_id"] for hit in found["hits"]["hits"]] == ["e2"]
    templates = _get(f"{elasticsearch_url}/_index_template/icswatch-assets")
    [template] = templates["index_templates"]
    assert template["index_template"]["index_patterns"] == ["icswatch-assets"]
    assert template["index_template"]["composed_of"] == ["icswatch-assets@custom"]
    store.close()


def _flatten(properties: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for name, spec in properties.items():
        if "properties" in spec:
            out.update(_flatten(spec["properties"], f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = spec["type"]
    return out


def test_alert_mapping_has_the_triage_and_ingest_fields(elasticsearch_url: str) -> None:
    store = ElasticsearchStore(elasticsearch_url)
    store.install_templates()
    store.write_alerts(_alerts(0, 2))
    mapping = _get(f"{elasticsearch_url}/icswatch-alerts/_mapping")
    for body in mapping.values():
        fields = _flatten(body["mappings"]["properties"])
        assert fields["event.ingested"] == "date_nanos"
        assert (fields["ics.alert.assignee"], fields["ics.alert.resolution"],
                fields["ics.alert.updated"]) == ("keyword", "text", "date")
    store.close()


def test_install_templates_maps_new_fields_in_existing_indices(elasticsearch_url: str) -> None:
    """A daily index created by an older template gets the fields added
    since, so triage and the feed work on it for alerts written from now."""
    old = json.loads((ROOT / "deploy" / "elasticsearch" / "alerts-template.json").read_text())
    properties = old["template"]["mappings"]["properties"]
    del properties["event"]["properties"]["ingested"]
    for name in ("assignee", "resolution", "updated"):
        del properties["ics"]["properties"]["alert"]["properties"][name]
    request = urllib.request.Request(
        f"{elasticsearch_url}/icswatch-alerts-2023.11.14", method="PUT",
        data=json.dumps({"mappings": old["template"]["mappings"],
                         "aliases": {"icswatch-alerts": {}}}).encode(),
        headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).close()
    store = ElasticsearchStore(elasticsearch_url, live_delay=0)
    store.install_templates()
    _, marker = store.alerts_since(None)
    alerts = _alerts(0, 3)  # 2023-11-14: into the old index
    store.write_alerts(alerts)
    store.flush()
    store.set_triage(alerts[0]["event"]["id"], assignee="frank", updated=WHEN)
    assert store.count_alerts(AlertQuery(assignees=["frank"])) == 1
    assert sorted(_ids(store.alerts_since(marker)[0])) == sorted(_ids(alerts))
    store.close()


# -- the SQLite file ----------------------------------------------------------------


def test_a_schema_1_file_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    alerts = _alerts(0, 6)
    with SqliteStore(path) as store:
        store.write_alerts(alerts)
    with sqlite3.connect(path) as raw:  # back to what schema 1 had
        raw.execute("DROP INDEX alerts_assignee")
        for column in ("assignee", "resolution", "updated", "ingested"):
            raw.execute(f"ALTER TABLE alerts DROP COLUMN {column}")
        raw.execute("DROP TABLE inventory")
        raw.execute("UPDATE icswatch_schema SET version = 1")
    with SqliteStore(path) as store:
        assert store.count_alerts(AlertQuery()) == len(alerts)
        doc = store.get_alert(alerts[0]["event"]["id"])
        assert doc is not None and "ingested" not in doc["event"]
        assert _triage(doc) == {"status": "open"}
        store.set_triage(alerts[0]["event"]["id"], assignee="gina", updated=WHEN)
        assert store.count_alerts(AlertQuery(assignees=["gina"])) == 1
        store.write_inventory("sensors", SENSORS)
        _, marker = store.alerts_since(None)
        store.write_alerts(_alerts(6, 2))
        store.flush()
        new, _ = store.alerts_since(marker)
        assert _ids(new) == _ids(_alerts(6, 2)) and all("ingested" in d["event"] for d in new)
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT version FROM icswatch_schema").fetchone() == (SCHEMA_VERSION,)
    with SqliteStore(path) as store:  # opens as it is now
        assert store.list_inventory("sensors") == SENSORS
        assert _triage(store.get_alert(alerts[0]["event"]["id"])) == {
            "status": "open", "assignee": "gina", "updated": ISO_WHEN}
