"""The Elasticsearch store against a real node (tests/support/esnode.py):
templates and ECS field types, idempotent writes, and the same answers as
the embedded SQLite store for every query the console makes."""

from __future__ import annotations

import ipaddress
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from console.stores.base import TOP_FIELDS, AlertQuery, Store, StoreError
from console.stores.elasticsearch import ElasticsearchStore
from console.stores.sqlite import SqliteStore
from detectors.alert import alert_document
from detectors.rules.engine import RuleEngine
from detectors.rules.loader import load_rules
from sensor.event import IcsEvent
from sensor.runtime import Sensor

ROOT = Path(__file__).resolve().parents[3]
CAPTURES = sorted((ROOT / "pcaps" / "modbus").glob("*.pcapng"))
MASTERS = {"modbus_masters": [ipaddress.ip_network("127.0.0.1/32")]}
ORGANIZATIONS = ("org-a", "org-b", None)
Doc = dict[str, Any]


def _alerts() -> list[Doc]:
    found: dict[str, Doc] = {}
    for number, capture in enumerate(CAPTURES):
        for groups in (None, MASTERS):
            engine = RuleEngine(load_rules(None, groups))

            def consume(event: IcsEvent, engine: RuleEngine = engine, n: int = number) -> None:
                for alert in engine.process(event):
                    alert.organization = ORGANIZATIONS[n % len(ORGANIZATIONS)]
                    document = alert_document(alert)
                    found.setdefault(document["event"]["id"], document)

            Sensor(consume).replay([capture])
    return list(found.values())


DOCUMENTS = _alerts()
# The same triage in both stores (DOCUMENTS[0] stays open).
TRIAGE: list[tuple[int, dict[str, Any]]] = [
    (1, {"status": "acknowledged", "assignee": "alice"}),
    (2, {"status": "closed", "assignee": "bob", "resolution": "planned maintenance"}),
    (5, {"status": "false_positive", "resolution": "test bench"}),
    (8, {"assignee": "alice"}),
    (8, {"status": "acknowledged", "assignee": ""}),
]


@pytest.fixture
def stores(elasticsearch_url: str, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    es = ElasticsearchStore(elasticsearch_url)
    es.install_templates()
    embedded = SqliteStore(tmp_path / "alerts.db")
    for store in (es, embedded):
        store.write_alerts(DOCUMENTS)
        store.flush()
        for number, (index, triage) in enumerate(TRIAGE):
            store.set_triage(DOCUMENTS[index]["event"]["id"], updated=1_700_000_000 + number,
                             **triage)
    yield es, embedded
    es.close()
    embedded.close()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def test_templates_give_ecs_types(stores: tuple[Store, Store], elasticsearch_url: str) -> None:
    mapping = _get(f"{elasticsearch_url}/icswatch-alerts/_mapping/field/"
                   "@timestamp,source.ip,destination.port,event.severity,rule.id,"
                   "threat.technique.id,network.protocol,ics.alert.severity,message")
    types = {field: next(iter(spec["mapping"].values()))["type"]
             for index in mapping.values() for field, spec in index["mappings"].items()}
    assert types == {
        "@timestamp": "date_nanos", "source.ip": "ip", "destination.port": "long",
        "event.severity": "long", "rule.id": "keyword", "threat.technique.id": "keyword",
        "network.protocol": "keyword", "ics.alert.severity": "keyword", "message": "text",
    }
    aliases = _get(f"{elasticsearch_url}/_alias/icswatch-alerts")
    assert aliases and all(name.startswith("icswatch-alerts-") for name in aliases)


def test_alerts_are_searchable_once_with_their_ecs_fields(stores: tuple[Store, Store]) -> None:
    es, _ = stores
    es.write_alerts(DOCUMENTS)  # a retry or a second replay
    es.flush()
    assert es.count_alerts(AlertQuery()) == len(DOCUMENTS)
    sample = DOCUMENTS[0]
    stored = es.get_alert(sample["event"]["id"])
    assert stored is not None
    assert stored["rule"]["id"] == sample["rule"]["id"]
    assert stored["event"]["kind"] == "alert"
    assert stored["threat"]["technique"]["id"] == sample["threat"]["technique"]["id"]
    assert stored["ics"]["alert"]["status"] == "open"
    assert es.get_alert("no-such-alert") is None


def test_sample_events_come_back_whole(stores: tuple[Store, Store]) -> None:
    """The index keeps sample events without the flow fields their alert
    repeats; a read gives them back exactly as the sensor made them."""
    es, _ = stores
    assert isinstance(es, ElasticsearchStore)
    with_samples = [d for d in DOCUMENTS if d["ics"]["alert"].get("events")]
    assert with_samples
    for sample in with_samples[:5]:
        stored = es.get_alert(sample["event"]["id"])
        assert stored is not None
        assert stored["ics"]["alert"]["events"] == sample["ics"]["alert"]["events"]
        raw = es.client.search(index=es.alerts_alias, query={"ids": {"values": [
            sample["event"]["id"]]}})["hits"]["hits"][0]["_source"]
        assert all("network" not in e for e in raw["ics"]["alert"]["events"])


QUERIES = [
    AlertQuery(),
    AlertQuery(severities=["high", "critical"]),
    AlertQuery(severities="medium"),
    AlertQuery(rule_ids=["ICSW-MODBUS-012", "ICSW-MODBUS-001"]),
    AlertQuery(techniques=["T0855"]),
    AlertQuery(organizations=["org-a"]),
    AlertQuery(scope=["org-a"]),
    AlertQuery(scope=["org-a", "org-b"], severities=["high", "critical"]),
    AlertQuery(scope=[]),
    AlertQuery(scope=["org-a"], organizations=["org-b"]),
    AlertQuery(assets=["127.0.0.66"]),
    AlertQuery(protocols=["modbus"], statuses=["open"]),
    AlertQuery(statuses=["acknowledged", "closed"]),
    AlertQuery(statuses=["false_positive"], severities=["high", "medium", "low"]),
    AlertQuery(assignees=["alice"]),
    AlertQuery(assignees=["alice", "bob"], statuses=["closed"]),
    AlertQuery(text="write"),
    AlertQuery(text="Modbus write flood"),
    AlertQuery(text="写操作"),
    AlertQuery(text="非授权主机"),
    AlertQuery(text="127.0.0.66"),
    AlertQuery(text="nothing-like-this"),
]


def _all_ids(store: Store, query: AlertQuery) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        page = store.search_alerts(AlertQuery(**{**_fields(query), "size": 7, "cursor": cursor}))
        ids.extend(doc["event"]["id"] for doc in page.alerts)
        if page.cursor is None:
            return ids
        cursor = page.cursor


def _fields(query: AlertQuery) -> dict[str, Any]:
    return {name: getattr(query, name) for name in query.__dataclass_fields__}


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: repr(
    {k: v for k, v in _fields(q).items() if v not in ((), None, 50, True)}))
def test_both_stores_give_the_same_answers(stores: tuple[Store, Store], query: AlertQuery) -> None:
    es, embedded = stores
    assert es.count_alerts(query) == embedded.count_alerts(query)
    assert _all_ids(es, query) == _all_ids(embedded, query)
    oldest = AlertQuery(**{**_fields(query), "newest_first": False})
    assert _all_ids(es, oldest) == _all_ids(embedded, oldest)
    for interval in (1.0, 60.0, 3600.0):
        assert es.histogram(query, interval) == embedded.histogram(query, interval)
    for field in sorted(TOP_FIELDS):
        assert es.top(query, field, 5) == embedded.top(query, field, 5), field
    sizes = {field: 3 for field in TOP_FIELDS}
    assert es.top_many(query, sizes) == embedded.top_many(query, sizes)
    span, embedded_span = es.time_span(query), embedded.time_span(query)
    if embedded_span is None:
        assert span is None
    else:  # Elasticsearch's min/max aggregations round to the millisecond
        assert span is not None
        assert all(abs(a - b) < 0.001 for a, b in zip(span, embedded_span, strict=True))


def test_scope_limits_what_a_reader_sees(stores: tuple[Store, Store]) -> None:
    for store in stores:
        assert store.count_alerts(AlertQuery(scope=[])) == 0
        assert store.search_alerts(AlertQuery(scope=[])).alerts == []
        own = store.count_alerts(AlertQuery(organizations=["org-a"]))
        assert 0 < own < store.count_alerts(AlertQuery())
        assert store.count_alerts(AlertQuery(scope=["org-a"])) == own
        assert store.count_alerts(AlertQuery(scope=["org-a"], organizations=["org-b"])) == 0
        assert store.top(AlertQuery(scope=["org-a"]), "organization.id") == [("org-a", own)]


def test_both_stores_return_the_same_triage(stores: tuple[Store, Store]) -> None:
    es, embedded = stores
    for index in {index for index, _ in TRIAGE} | {0}:
        alert_id = DOCUMENTS[index]["event"]["id"]
        from_es, from_sqlite = es.get_alert(alert_id), embedded.get_alert(alert_id)
        assert from_es is not None and from_sqlite is not None
        assert from_es["ics"]["alert"] == from_sqlite["ics"]["alert"]
        del from_es["event"]["ingested"], from_sqlite["event"]["ingested"]
        assert from_es == from_sqlite
    assert es.top(AlertQuery(), "ics.alert.assignee") == [("alice", 1), ("bob", 1)]


def test_time_window(stores: tuple[Store, Store]) -> None:
    es, embedded = stores
    stamps = sorted(DOCUMENTS, key=lambda d: d["@timestamp"])
    middle = stamps[len(stamps) // 2]["@timestamp"]
    from datetime import datetime

    start = datetime.fromisoformat(middle.replace("Z", "+00:00")).timestamp()
    for query in (AlertQuery(start=start), AlertQuery(end=start),
                  AlertQuery(start=start - 3600, end=start + 1)):
        assert es.count_alerts(query) == embedded.count_alerts(query) > 0
        assert _all_ids(es, query) == _all_ids(embedded, query)


def test_unreachable_cluster_is_one_clear_line() -> None:
    store = ElasticsearchStore("http://127.0.0.1:9", request_timeout=2)
    with pytest.raises(StoreError) as caught:
        store.install_templates()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("Elasticsearch at http://127.0.0.1:9 is unreachable")
