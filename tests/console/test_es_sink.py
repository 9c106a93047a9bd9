"""No alert lost: the spool-backed Elasticsearch sink against a real node
that goes away and comes back, an address nobody listens on, and a
document the cluster refuses."""

from __future__ import annotations

import copy
import json
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from console.es_sink import ElasticsearchSink
from console.spool import Spool
from console.stores.base import AlertQuery, StoreError
from console.stores.elasticsearch import ElasticsearchStore
from tests.support.alerts import numbered, replay_alerts
from tests.support.esnode import ElasticsearchNode, ensure_distribution

ROOT = Path(__file__).resolve().parents[2]
Doc = dict[str, Any]


TEMPLATES = replay_alerts(sorted((ROOT / "pcaps" / "modbus").glob("attack-*.pcapng")))


def _alerts(start: int, count: int) -> list[Doc]:
    """Real alert documents with ids and times of their own."""
    return numbered(TEMPLATES, start, count, "sink")


def _indexed_ids(store: ElasticsearchStore) -> list[str]:
    store.flush()
    ids: list[str] = []
    cursor = None
    while True:
        page = store.search_alerts(AlertQuery(size=1000, cursor=cursor, newest_first=False))
        ids.extend(doc["event"]["id"] for doc in page.alerts)
        if page.cursor is None:
            return ids
        cursor = page.cursor


def test_replayed_alerts_are_indexed_once(elasticsearch_url: str, tmp_path: Path) -> None:
    store = ElasticsearchStore(elasticsearch_url)
    store.install_templates()
    sink = ElasticsearchSink(store, Spool(tmp_path / "spool"), linger=0.05)
    alerts = _alerts(0, 3000)
    for document in alerts + alerts:  # the same capture replayed twice
        sink.write_alert(document)
    assert sink.close(timeout=120)
    ids = _indexed_ids(store)
    assert sorted(ids) == sorted(d["event"]["id"] for d in alerts)
    assert sink.counters["alerts_spooled"] == 6000


def test_node_outage_loses_nothing_and_duplicates_nothing(
    elasticsearch_url: str, elasticsearch_node: ElasticsearchNode, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = ElasticsearchStore(elasticsearch_url, request_timeout=5)
    store.install_templates()
    sink = ElasticsearchSink(store, Spool(tmp_path / "spool"), linger=0.05, batch_size=500)
    before, during, after = _alerts(0, 2000), _alerts(2000, 3000), _alerts(5000, 1000)
    for document in before:
        sink.write_alert(document)
    assert sink.flush(timeout=60)
    caplog.set_level(logging.WARNING, logger="icswatch.elasticsearch")
    elasticsearch_node.stop()
    try:
        for document in during:
            sink.write_alert(document)
        assert not sink.flush(timeout=3)  # the node is down: alerts wait on disk
        assert sink.spool.stats.records_pending == len(during)
        outage_lines = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(outage_lines) == 1, outage_lines  # one line, not one per retry
    finally:
        elasticsearch_node.start()
    for document in after:
        sink.write_alert(document)
    assert sink.close(timeout=180)
    assert any("is back" in r.getMessage() for r in caplog.records)
    ids = _indexed_ids(ElasticsearchStore(elasticsearch_url))
    expected = [d["event"]["id"] for d in before + during + after]
    assert len(ids) == len(expected) == len(set(ids))
    assert sorted(ids) == sorted(expected)


def test_unreachable_cluster_keeps_alerts_in_the_spool(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="icswatch.elasticsearch")
    store = ElasticsearchStore("http://127.0.0.1:9", request_timeout=1)
    sink = ElasticsearchSink(store, Spool(tmp_path / "spool"), linger=0.01)
    alerts = _alerts(0, 250)
    for document in alerts:
        sink.write_alert(document)
    assert not sink.close(timeout=2)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "Elasticsearch at http://127.0.0.1:9 is unreachable" in lines[0]
    assert "\n" not in lines[0]
    spool = Spool(tmp_path / "spool")  # what a restarted sensor finds
    assert spool.stats.records_pending == 250
    kept = spool.peek(1000, 1 << 30).records
    assert [r["doc"]["event"]["id"] for r in kept] == [d["event"]["id"] for d in alerts]
    spool.close()


@pytest.mark.parametrize("good_count", [20, 1500], ids=["one request", "parallel parts"])
def test_refused_alert_is_set_aside_with_its_reason(
    elasticsearch_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, good_count: int
) -> None:
    caplog.set_level(logging.ERROR, logger="icswatch.elasticsearch")
    store = ElasticsearchStore(elasticsearch_url)
    store.install_templates()
    sink = ElasticsearchSink(store, Spool(tmp_path / "spool"), linger=10, batch_size=5000)
    good = _alerts(0, good_count)
    bad = copy.deepcopy(good[5])
    bad["event"]["id"] = "conflicting-alert"
    bad["event"]["severity"] = "very high"  # mapped as long: a mapping conflict
    # The refused alert sits in the second part when the batch is split.
    middle = good_count * 3 // 4
    for document in [*good[:middle], bad, *good[middle:]]:
        sink.write_alert(document)
    assert sink.close(timeout=60)
    assert sorted(_indexed_ids(store)) == sorted(d["event"]["id"] for d in good)
    [line] = [r.getMessage() for r in caplog.records]
    assert "1 alerts refused by Elasticsearch" in line and "rejected.jsonl" in line
    [kept] = [json.loads(x) for x in (tmp_path / "spool" / "rejected.jsonl").read_text(
        encoding="utf-8").splitlines()]
    assert kept["document"]["event"]["id"] == "conflicting-alert"
    assert "HTTP 400" in kept["reason"] and "event.severity" in kept["reason"]
    assert sink.counters["alerts_rejected"] == 1


@pytest.fixture(scope="module")
def secured_node() -> Iterator[ElasticsearchNode]:
    """A second node with security switched on: nobody's credentials work."""
    node = ElasticsearchNode(ensure_distribution(), Path(tempfile.mkdtemp(prefix="es-secure-")),
                             settings={"xpack.security.enabled": True})
    node.start()
    yield node
    node.stop()


def test_wrong_credentials_are_one_line_and_the_spool_keeps_the_alerts(
    elasticsearch_node: ElasticsearchNode, secured_node: ElasticsearchNode, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = ElasticsearchStore(secured_node.url, username="icswatch", password="not-the-password")
    with pytest.raises(StoreError) as caught:
        store.install_templates()
    assert str(caught.value) == (f"Elasticsearch at {secured_node.url} refused the credentials "
                                 "(HTTP 401)")
    caplog.set_level(logging.WARNING, logger="icswatch.elasticsearch")
    sink = ElasticsearchSink(store, Spool(tmp_path / "spool"), linger=0.01,
                             prepare=store.install_templates)
    for document in _alerts(0, 40):
        sink.write_alert(document)
    assert not sink.close(timeout=5)
    [line] = [r.getMessage() for r in caplog.records]
    assert "refused the credentials (HTTP 401)" in line and "kept in the spool" in line
    spool = Spool(tmp_path / "spool")
    assert spool.stats.records_pending == 40
    spool.close()
