"""The embedded SQLite store, with real alerts: every Modbus capture in
pcaps/modbus/ replayed through the sensor and the built-in rules, each
answer checked against what a plain Python scan of the same documents says."""

from __future__ import annotations

import copy
import ipaddress
import json
import math
import os
import re
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from console.stores.base import TOP_FIELDS, AlertQuery, Store, StoreError
from console.stores.sqlite import SCHEMA_VERSION, SqliteStore, default_path, search_terms
from detectors.alert import alert_document
from detectors.rules.engine import RuleEngine
from detectors.rules.loader import load_rules
from sensor.ecs import event_document
from sensor.event import IcsEvent
from sensor.runtime import Sensor

ROOT = Path(__file__).resolve().parents[3]
CAPTURES = sorted((ROOT / "pcaps" / "modbus").glob("*.pcapng"))
# Rules that only fire once the site names its Modbus masters.
MASTERS = {"modbus_masters": [ipaddress.ip_network("127.0.0.1/32")]}
ORGANIZATIONS = ("org-a", "org-b", None)

Doc = dict[str, Any]


def _replay(capture: Path, organization: str | None, groups: Any = None) -> tuple[
        list[Doc], list[Doc]]:
    engine = RuleEngine(load_rules(None, groups))
    alerts: list[Doc] = []
    events: list[Doc] = []

    def consume(event: IcsEvent) -> None:
        events.append(event_document(event))
        for alert in engine.process(event):
            alert.organization = organization
            alerts.append(alert_document(alert))

    Sensor(consume).replay([capture])
    return alerts, events


@pytest.fixture(scope="module")
def replayed() -> tuple[list[Doc], list[Doc]]:
    """(alert documents, event documents) of every capture, an organization
    per capture in turn (some alerts have none)."""
    alerts: dict[str, Doc] = {}
    events: list[Doc] = []
    for number, capture in enumerate(CAPTURES):
        organization = ORGANIZATIONS[number % len(ORGANIZATIONS)]
        for groups in (None, MASTERS):
            found, seen = _replay(capture, organization, groups)
            for doc in found:
                alerts.setdefault(doc["event"]["id"], doc)
            if groups is None:
                events.extend(seen)
    assert len(alerts) >= 25
    return list(alerts.values()), events


@pytest.fixture(scope="module")
def documents(replayed: tuple[list[Doc], list[Doc]]) -> list[Doc]:
    return replayed[0]


@pytest.fixture(params=["fts5", "scan"])
def store(request: pytest.FixtureRequest, tmp_path: Path, documents: list[Doc]) -> Iterator[
        SqliteStore]:
    """A store holding every document, with the FTS5 index and without it
    (the two must answer alike)."""
    opened = SqliteStore(tmp_path / "alerts.db", fulltext=request.param == "fts5")
    assert opened.fulltext is (request.param == "fts5")
    opened.write_alerts(documents)
    opened.flush()
    yield opened
    opened.close()


# -- a plain Python oracle ----------------------------------------------------------


def _ts(doc: Doc) -> float:
    return datetime.fromisoformat(doc["@timestamp"]).timestamp()


def _ids(docs: list[Doc]) -> set[str]:
    return {doc["event"]["id"] for doc in docs}


def _get(doc: Doc, name: str) -> Any:
    value: Any = doc
    for key in name.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _newest_first(docs: list[Doc]) -> list[str]:
    ordered = sorted(docs, key=lambda d: (_ts(d), d["event"]["id"]), reverse=True)
    return [doc["event"]["id"] for doc in ordered]


def _found(store: Store, query: AlertQuery) -> set[str]:
    page = store.search_alerts(AlertQuery(**{**_fields(query), "size": 1000}))
    assert page.total == len(page.alerts) == store.count_alerts(query)
    return {alert["event"]["id"] for alert in page.alerts}


def _fields(query: AlertQuery) -> dict[str, Any]:
    return {name: getattr(query, name) for name in AlertQuery.__slots__}


# -- writing ------------------------------------------------------------------------


def test_documents_come_back_as_written_with_their_status(
        store: SqliteStore, documents: list[Doc]) -> None:
    assert store.count_alerts(AlertQuery()) == len(documents)
    for doc in documents:
        stored = store.get_alert(doc["event"]["id"])
        assert stored is not None
        assert stored["ics"]["alert"].pop("status") == "open"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z",
                            stored["event"].pop("ingested"))
        assert stored == doc
    assert store.get_alert("no-such-id") is None


def test_rewriting_the_same_alerts_keeps_one_copy(
        store: SqliteStore, documents: list[Doc]) -> None:
    store.write_alerts(documents)
    store.write_alerts(documents[:3] + documents[:3])
    store.flush()
    assert store.count_alerts(AlertQuery()) == len(documents)
    assert store.top(AlertQuery(), "threat.technique.id", 100) == _top(
        documents, "threat.technique.id", 100)


def test_a_changed_alert_replaces_its_row_index_and_techniques(
        store: SqliteStore, documents: list[Doc]) -> None:
    doc = copy.deepcopy(documents[0])
    doc["message"] = "zeppelin overflight"
    doc["threat"]["technique"]["id"] = ["T9999"]
    store.write_alerts([doc])
    assert store.count_alerts(AlertQuery()) == len(documents)
    assert _found(store, AlertQuery(text="zeppelin")) == {doc["event"]["id"]}
    assert _found(store, AlertQuery(techniques=["T9999"])) == {doc["event"]["id"]}
    before = _found(store, AlertQuery(text=documents[0]["message"]))
    assert doc["event"]["id"] not in before


def test_triage_status_survives_a_rewrite(tmp_path: Path, documents: list[Doc]) -> None:
    with SqliteStore(tmp_path / "s.db") as store:
        closed = copy.deepcopy(documents[0])
        closed["ics"]["alert"]["status"] = "closed"
        store.write_alerts([closed, *documents[1:]])
        store.write_alerts(documents)  # a second replay: no status in the documents
        stored = store.get_alert(closed["event"]["id"])
        assert stored is not None and stored["ics"]["alert"]["status"] == "closed"
        assert _found(store, AlertQuery(statuses=["closed"])) == {closed["event"]["id"]}
        assert store.top(AlertQuery(), "ics.alert.status") == [
            ("open", len(documents) - 1), ("closed", 1)]


def test_a_document_without_id_is_refused(tmp_path: Path, documents: list[Doc]) -> None:
    doc = copy.deepcopy(documents[0])
    del doc["event"]["id"]
    with SqliteStore(tmp_path / "s.db") as store, pytest.raises(ValueError, match=r"event\.id"):
        store.write_alerts([doc])


def test_events_are_stored_when_asked(
        tmp_path: Path, replayed: tuple[list[Doc], list[Doc]]) -> None:
    events = replayed[1]
    with SqliteStore(tmp_path / "s.db") as store:
        store.write_events(events)
    with sqlite3.connect(tmp_path / "s.db") as reader:
        (count,) = reader.execute("SELECT count(*) FROM events").fetchone()
        (protocols,) = reader.execute("SELECT count(DISTINCT protocol) FROM events").fetchone()
        (first,) = reader.execute("SELECT doc FROM events ORDER BY pk LIMIT 1").fetchone()
    assert (count, protocols) == (len(events), 1)
    assert json.loads(first) == events[0]


# -- filters ------------------------------------------------------------------------


def _time_queries(documents: list[Doc]) -> list[tuple[AlertQuery, Callable[[Doc], bool]]]:
    times = sorted(_ts(doc) for doc in documents)
    middle = times[len(times) // 2]
    return [
        (AlertQuery(start=middle), lambda d: _ts(d) >= middle),
        (AlertQuery(end=middle), lambda d: _ts(d) < middle),
        (AlertQuery(start=times[1], end=times[-2]), lambda d: times[1] <= _ts(d) < times[-2]),
    ]


FILTERS: list[tuple[str, AlertQuery, Callable[[Doc], bool]]] = [
    ("severities", AlertQuery(severities=["high", "critical"]),
     lambda d: d["ics"]["alert"]["severity"] in ("high", "critical")),
    ("one-severity-as-string", AlertQuery(severities="low"),
     lambda d: d["ics"]["alert"]["severity"] == "low"),
    ("protocols", AlertQuery(protocols=["modbus"]), lambda d: True),
    ("other-protocol", AlertQuery(protocols=["dnp3"]), lambda d: False),
    ("rule-ids", AlertQuery(rule_ids=["ICSW-MODBUS-012", "ICSW-MODBUS-001"]),
     lambda d: d["rule"]["id"] in ("ICSW-MODBUS-012", "ICSW-MODBUS-001")),
    ("techniques", AlertQuery(techniques=["T0888", "T0836"]),
     lambda d: bool({"T0888", "T0836"} & set(d["threat"]["technique"]["id"]))),
    ("assets", AlertQuery(assets=["127.0.0.66"]),
     lambda d: "127.0.0.66" in (d["source"]["ip"], d["destination"]["ip"])),
    ("organizations", AlertQuery(organizations=["org-a"]),
     lambda d: _get(d, "organization.id") == "org-a"),
    ("statuses", AlertQuery(statuses=["open"]), lambda d: True),
    ("no-status", AlertQuery(statuses=["closed"]), lambda d: False),
    ("all-together", AlertQuery(severities=["medium"], techniques=["T0888"],
                                organizations=["org-a", "org-b"], assets=["127.0.0.1"]),
     lambda d: d["ics"]["alert"]["severity"] == "medium"
     and "T0888" in d["threat"]["technique"]["id"]
     and _get(d, "organization.id") in ("org-a", "org-b")),
]


@pytest.mark.parametrize(("query", "predicate"), [f[1:] for f in FILTERS],
                         ids=[f[0] for f in FILTERS])
def test_each_filter_matches_a_scan(store: SqliteStore, documents: list[Doc],
                                    query: AlertQuery, predicate: Callable[[Doc], bool]) -> None:
    expected = _ids([doc for doc in documents if predicate(doc)])
    assert _found(store, query) == expected


def test_time_filters_start_inclusive_end_exclusive(
        store: SqliteStore, documents: list[Doc]) -> None:
    for query, predicate in _time_queries(documents):
        expected = _ids([doc for doc in documents if predicate(doc)])
        assert 0 < len(expected) < len(documents)
        assert _found(store, query) == expected
    one = _ts(documents[0])
    assert documents[0]["event"]["id"] in _found(store, AlertQuery(start=one, end=one + 1e-6))
    assert _found(store, AlertQuery(start=one, end=one)) == set()


# -- full text ----------------------------------------------------------------------


def _words(doc: Doc) -> str:
    return f"{doc['rule']['name']}\n{doc['message']}"


TEXTS: list[tuple[str, Callable[[Doc], bool]]] = [
    ("write", lambda d: re.search(r"\bwrite\b", _words(d), re.I) is not None),
    ("WRITE", lambda d: re.search(r"\bwrite\b", _words(d), re.I) is not None),
    ("Modbus Broadcast", lambda d: re.search(r"\bbroadcast\b", _words(d), re.I) is not None
     and re.search(r"\bmodbus\b", _words(d), re.I) is not None),
    ("127.0.0.66", lambda d: re.search(r"\b127\.0\.0\.66\b", _words(d)) is not None),
    ("bad_protocol_id", lambda d: "bad_protocol_id" in d["message"]),
    ("写操作", lambda d: "写操作" in d["ics"]["alert"]["title_zh"]),
    ("写入", lambda d: "写入" in d["ics"]["alert"]["title_zh"]),
    ("Modbus 写操作", lambda d: "写操作" in d["ics"]["alert"]["title_zh"]),
    ("诊断 diagnostics", lambda d: "诊断" in d["ics"]["alert"]["title_zh"]
     and re.search(r"\bdiagnostics\b", _words(d), re.I) is not None),
]


@pytest.mark.parametrize(("text", "predicate"), TEXTS, ids=[t for t, _ in TEXTS])
def test_full_text_in_english_and_chinese(store: SqliteStore, documents: list[Doc], text: str,
                                          predicate: Callable[[Doc], bool]) -> None:
    expected = _ids([doc for doc in documents if predicate(doc)])
    assert expected, f"no real alert has {text!r}: the test proves nothing"
    assert _found(store, AlertQuery(text=text)) == expected


@pytest.mark.parametrize("text", ["rewrite", "writ", "操写", "ICSW-MODBUS-999", "zzz"])
def test_full_text_matches_whole_words_in_order(store: SqliteStore, text: str) -> None:
    assert _found(store, AlertQuery(text=text)) == set()


@pytest.mark.parametrize("text", ["", "   ", "!!", "—"])
def test_a_text_without_words_filters_nothing(store: SqliteStore, documents: list[Doc],
                                              text: str) -> None:
    assert store.count_alerts(AlertQuery(text=text)) == len(documents)


def test_full_text_with_other_filters(store: SqliteStore, documents: list[Doc]) -> None:
    expected = _ids([d for d in documents if "写" in d["ics"]["alert"]["title_zh"]
                     and d["ics"]["alert"]["severity"] == "high"])
    assert _found(store, AlertQuery(text="写", severities=["high"])) == expected


@pytest.mark.parametrize(("text", "terms"), [
    ("10.0.0.20 wrote", [("10.0.0.20",), ("wrote",)]),
    ("write_single_register.", [("write_single_register",)]),
    ("ICSW-MODBUS-001", [("icsw",), ("modbus",), ("001",)]),
    ("don't 1,000 a,b", [("don't",), ("1,000",), ("a",), ("b",)]),
    ("非授权主机发起Modbus写操作", [(*"非授权主机发起", "modbus", *"写操作")]),
    ("\uff08设备停止响应\uff09", [tuple("设备停止响应")]),  # full-width ( )
    ("", []),
])
def test_search_terms(text: str, terms: list[tuple[str, ...]]) -> None:
    assert search_terms(text) == terms


# -- pages --------------------------------------------------------------------------


@pytest.mark.parametrize("newest_first", [True, False])
def test_pages_visit_every_alert_once_in_order(
        store: SqliteStore, documents: list[Doc], newest_first: bool) -> None:
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = store.search_alerts(AlertQuery(size=4, cursor=cursor, newest_first=newest_first))
        assert page.total == len(documents)
        assert len(page.alerts) <= 4
        seen.extend(alert["event"]["id"] for alert in page.alerts)
        pages += 1
        cursor = page.cursor
        if cursor is None:
            break
    expected = _newest_first(documents)
    assert seen == (expected if newest_first else expected[::-1])
    assert pages == math.ceil(len(documents) / 4)


def test_pages_with_a_filter_and_ties_in_time(tmp_path: Path, documents: list[Doc]) -> None:
    """Alerts of one instant are ordered by id; a page boundary inside them loses none."""
    twins = []
    for number in range(7):
        twin = copy.deepcopy(documents[0])
        twin["event"]["id"] = f"twin-{number}"
        twins.append(twin)
    with SqliteStore(tmp_path / "s.db") as store:
        store.write_alerts(documents + twins)
        query = AlertQuery(rule_ids=[documents[0]["rule"]["id"]], size=3)
        seen: list[str] = []
        while True:
            page = store.search_alerts(query)
            seen.extend(alert["event"]["id"] for alert in page.alerts)
            if page.cursor is None:
                break
            query = AlertQuery(rule_ids=query.rule_ids, size=3, cursor=page.cursor)
        matching = [d for d in documents + twins if d["rule"]["id"] == documents[0]["rule"]["id"]]
        assert seen == _newest_first(matching)


def test_pages_are_stable_while_alerts_arrive(tmp_path: Path, documents: list[Doc]) -> None:
    ordered = sorted(documents, key=lambda d: (_ts(d), d["event"]["id"]))
    with SqliteStore(tmp_path / "s.db") as store:
        store.write_alerts(ordered[2:-2])
        first = store.search_alerts(AlertQuery(size=5))
        store.write_alerts(ordered[:2] + ordered[-2:])  # older and newer than everything
        rest: list[str] = []
        cursor = first.cursor
        while cursor is not None:
            page = store.search_alerts(AlertQuery(size=5, cursor=cursor))
            rest.extend(alert["event"]["id"] for alert in page.alerts)
            cursor = page.cursor
        shown = [alert["event"]["id"] for alert in first.alerts]
        assert not set(shown) & set(rest)
        newest = _newest_first(documents)
        assert rest == [i for i in newest if i not in shown and i not in _ids(ordered[-2:])]


def test_bad_cursors(store: SqliteStore) -> None:
    cursor = store.search_alerts(AlertQuery(size=2)).cursor
    assert cursor is not None
    with pytest.raises(ValueError, match="sort order"):
        store.search_alerts(AlertQuery(size=2, cursor=cursor, newest_first=False))
    for bad in ("nonsense", "", "e30", cursor[:-3]):
        with pytest.raises(ValueError):
            store.search_alerts(AlertQuery(cursor=bad))


def test_page_size_zero_counts_only(store: SqliteStore, documents: list[Doc]) -> None:
    page = store.search_alerts(AlertQuery(size=0))
    assert (page.alerts, page.total, page.cursor) == ([], len(documents), None)


# -- histogram and top-N ------------------------------------------------------------


@pytest.mark.parametrize("interval", [1.0, 60.0, 3600.0, 86400.0])
def test_histogram_matches_a_scan(store: SqliteStore, documents: list[Doc],
                                  interval: float) -> None:
    expected: dict[float, Counter[str]] = {}
    for doc in documents:
        start = math.floor(_ts(doc) / interval) * interval
        expected.setdefault(start, Counter())[doc["ics"]["alert"]["severity"]] += 1
    buckets = store.histogram(AlertQuery(), interval)
    assert [b.start for b in buckets] == sorted(expected)
    assert {b.start: b.counts for b in buckets} == {s: dict(c) for s, c in expected.items()}
    assert sum(b.total for b in buckets) == store.count_alerts(AlertQuery())
    assert all(b.start % interval == 0 and b.total > 0 for b in buckets)


def test_histogram_with_a_filter(store: SqliteStore) -> None:
    query = AlertQuery(severities=["medium"], techniques=["T0888"])
    buckets = store.histogram(query, 60)
    assert sum(b.total for b in buckets) == store.count_alerts(query) > 0
    assert {severity for b in buckets for severity in b.counts} == {"medium"}
    with pytest.raises(ValueError):
        store.histogram(query, 0)


def test_histogram_buckets_floor_before_the_epoch(tmp_path: Path, documents: list[Doc]) -> None:
    """Buckets start at multiples of the interval on both sides of 1970."""
    docs = []
    for number, timestamp in enumerate(["1969-12-31T23:59:30.000000Z", "1970-01-01T00:00:00Z",
                                        "1970-01-01T00:00:59.999999Z"]):
        doc = copy.deepcopy(documents[0])
        doc["event"]["id"] = f"old-{number}"
        doc["@timestamp"] = timestamp
        docs.append(doc)
    with SqliteStore(tmp_path / "s.db") as store:
        store.write_alerts(docs)
        severity = documents[0]["ics"]["alert"]["severity"]
        assert [(b.start, b.counts) for b in store.histogram(AlertQuery(), 60)] == [
            (-60.0, {severity: 1}), (0.0, {severity: 2})]


def _top(documents: list[Doc], field: str, size: int) -> list[tuple[str, int]]:
    counts: Counter[str] = Counter()
    for doc in documents:
        value = _get(doc, field) if field != "ics.alert.status" else "open"
        for one in value if isinstance(value, list) else [value]:
            if one is not None:
                counts[one] += 1
    def order(item: tuple[str, int]) -> tuple[int, Any]:
        value, count = item
        if field.endswith(".ip"):
            return -count, ipaddress.ip_address(value).packed.rjust(16, b"\0")
        return -count, value
    return sorted(counts.items(), key=order)[:size]


@pytest.mark.parametrize("field", sorted(TOP_FIELDS))
@pytest.mark.parametrize("size", [1, 3, 100])
def test_top_matches_a_terms_aggregation(store: SqliteStore, documents: list[Doc], field: str,
                                         size: int) -> None:
    assert store.top(AlertQuery(), field, size) == _top(documents, field, size)


def test_top_with_a_filter(store: SqliteStore, documents: list[Doc]) -> None:
    high = [d for d in documents if d["ics"]["alert"]["severity"] == "high"]
    assert store.top(AlertQuery(severities=["high"]), "threat.technique.id") == _top(
        high, "threat.technique.id", 10)


def test_top_ties_go_by_value_and_addresses_by_address(
        tmp_path: Path, documents: list[Doc]) -> None:
    docs = []
    for number, address in enumerate(["10.0.0.10", "10.0.0.9", "::1", "10.0.0.9", "10.0.0.10"]):
        doc = copy.deepcopy(documents[0])
        doc["event"]["id"] = f"a{number}"
        doc["source"]["ip"] = address
        doc["rule"]["id"] = address  # a keyword: plain string order
        docs.append(doc)
    with SqliteStore(tmp_path / "s.db") as store:
        store.write_alerts(docs)
        assert store.top(AlertQuery(), "source.ip") == [
            ("10.0.0.9", 2), ("10.0.0.10", 2), ("::1", 1)]
        assert store.top(AlertQuery(), "rule.id") == [
            ("10.0.0.10", 2), ("10.0.0.9", 2), ("::1", 1)]
        assert store.top(AlertQuery(), "source.ip", 0) == []
        with pytest.raises(ValueError, match="cannot aggregate"):
            store.top(AlertQuery(), "message")


# -- the file -----------------------------------------------------------------------


def test_reopened_store_keeps_its_alerts(tmp_path: Path, documents: list[Doc]) -> None:
    path = tmp_path / "s.db"
    store = SqliteStore(path)
    store.write_alerts(documents)
    store.close()
    store.close()  # twice is harmless
    with pytest.raises(StoreError, match="after close"):
        store.count_alerts(AlertQuery())
    with SqliteStore(path) as again:
        assert again.count_alerts(AlertQuery()) == len(documents)
        assert again.count_alerts(AlertQuery(text="写操作")) > 0
        assert again.get_alert(documents[-1]["event"]["id"]) is not None
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert raw.execute("SELECT version FROM icswatch_schema").fetchone() == (SCHEMA_VERSION,)


def test_another_connection_sees_flushed_alerts(tmp_path: Path, documents: list[Doc]) -> None:
    path = tmp_path / "s.db"
    with SqliteStore(path) as writer, SqliteStore(path) as reader:
        writer.write_alerts(documents[:10])
        assert writer.count_alerts(AlertQuery()) == 10  # its own writes, before flush
        assert reader.count_alerts(AlertQuery()) == 0  # WAL: not blocked, not visible yet
        writer.flush()
        assert reader.count_alerts(AlertQuery()) == 10
        writer.write_alerts(documents[10:])
        writer.flush()
        assert reader.count_alerts(AlertQuery(text="写操作")) == writer.count_alerts(
            AlertQuery(text="写操作"))
        assert reader.count_alerts(AlertQuery()) == len(documents)


def test_threads_share_one_store(tmp_path: Path, documents: list[Doc]) -> None:
    errors: list[BaseException] = []
    done = threading.Event()
    with SqliteStore(tmp_path / "s.db") as store:
        def read() -> None:
            try:
                while not done.is_set():
                    store.search_alerts(AlertQuery(size=5, text="modbus"))
                    store.top(AlertQuery(), "rule.id")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        reader = threading.Thread(target=read)
        reader.start()
        for round_ in range(20):
            batch = copy.deepcopy(documents)
            for doc in batch:
                doc["event"]["id"] += f"-{round_}"
            store.write_alerts(batch)
            store.flush()
        done.set()
        reader.join()
        assert errors == []
        assert store.count_alerts(AlertQuery()) == 20 * len(documents)


def test_memory_store(documents: list[Doc]) -> None:
    with SqliteStore(":memory:") as store:
        store.write_alerts(documents)
        assert store.count_alerts(AlertQuery(text="写操作")) > 0


def _one_line(error: pytest.ExceptionInfo[StoreError], path: Path) -> str:
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    return message


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    with pytest.raises(StoreError) as error:
        SqliteStore(path)
    assert "not an icswatch store" in _one_line(error, path)


def test_a_corrupt_store(tmp_path: Path, documents: list[Doc]) -> None:
    path = tmp_path / "s.db"
    with SqliteStore(path) as store:
        store.write_alerts(documents)
    content = bytearray(path.read_bytes())
    content[100:4096] = b"\xa5" * (4096 - 100)  # the schema page
    path.write_bytes(bytes(content))
    with pytest.raises(StoreError) as error:
        SqliteStore(path)
    assert "corrupt" in _one_line(error, path)


def test_another_programs_database(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE recipes (name TEXT)")
    with pytest.raises(StoreError) as error:
        SqliteStore(path)
    assert "not an icswatch store" in _one_line(error, path)


def test_a_store_from_a_newer_icswatch(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE icswatch_schema SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError) as error:
        SqliteStore(path)
    assert "newer icswatch" in _one_line(error, path)


def test_unusable_paths(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as error:
        SqliteStore(tmp_path)
    assert "is a folder" in _one_line(error, tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError) as error:
        SqliteStore(blocker / "s.db")
    assert "cannot create its folder" in _one_line(error, blocker / "s.db")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_store(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    path.chmod(0o444)
    with pytest.raises(StoreError) as error:
        SqliteStore(path)
    _one_line(error, path)


def test_the_folder_is_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "s.db"
    SqliteStore(path).close()
    assert path.is_file()


def test_default_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ICSWATCH_DB", str(tmp_path / "x.db"))
    assert default_path() == tmp_path / "x.db"
    monkeypatch.delenv("ICSWATCH_DB")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_path() == tmp_path / "data" / "icswatch" / "icswatch.db"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_path() == tmp_path / "home" / ".local" / "share" / "icswatch" / "icswatch.db"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_path() == tmp_path / "home" / ".local" / "share" / "icswatch" / "icswatch.db"


def test_the_store_follows_the_contract() -> None:
    """`SqliteStore` is a `Store` (mypy checks the signatures here)."""

    def accepts(store: Store) -> Store:
        return store

    with SqliteStore(":memory:") as store:
        assert accepts(store) is store
