"""One node of three goes down mid-stream: with replicas the cluster keeps
taking alerts, the sink rides over the failed requests through its spool,
and every alert ends up indexed exactly once."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from console.es_sink import ElasticsearchSink
from console.spool import Spool
from console.stores.base import AlertQuery
from console.stores.elasticsearch import ElasticsearchStore
from tests.support.alerts import numbered, replay_alerts
from tests.support.esnode import (
    ElasticsearchNode,
    ensure_distribution,
    free_port,
    http,
)

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ROOT / "pcaps" / "modbus" / "attack-function-scan.pcapng"


@pytest.fixture(scope="module")
def cluster(elasticsearch_node: ElasticsearchNode) -> Iterator[list[ElasticsearchNode]]:
    """Three master-eligible data nodes from the same test build."""
    home = ensure_distribution()
    transports = [free_port() for _ in range(3)]
    names = [f"trio-{number}" for number in range(3)]
    nodes = []
    for number in range(3):
        node = ElasticsearchNode(home, Path(tempfile.mkdtemp(prefix="es-trio-")), heap="384m",
                                 settings={
            "cluster.name": "icswatch-trio",
            "node.name": names[number],
            "discovery.type": None,
            "discovery.seed_hosts": [f"127.0.0.1:{port}" for port in transports],
            "cluster.initial_master_nodes": names,
        })
        node.transport_port = transports[number]
        nodes.append(node)
    for node in nodes:
        node.launch()
    deadline = time.monotonic() + 180
    for node in nodes:
        node.wait_until_started(deadline)
    health = http("GET", f"{nodes[0].url}/_cluster/health?wait_for_nodes=3&timeout=60s")
    assert health.body["number_of_nodes"] == 3, health.body
    yield nodes
    for node in nodes:
        node.stop()


TEMPLATES = replay_alerts([CAPTURE])


def _alerts(start: int, count: int) -> list[dict[str, Any]]:
    return numbered(TEMPLATES, start, count, "trio")


def test_one_node_of_three_down(cluster: list[ElasticsearchNode], tmp_path: Path) -> None:
    urls = ",".join(node.url for node in cluster)
    store = ElasticsearchStore(urls, request_timeout=10)
    # Replicas through the operator-owned component template the icswatch
    # templates are composed of.
    reply = http("PUT", f"{cluster[0].url}/_component_template/icswatch-alerts@custom",
                 {"template": {"settings": {"number_of_replicas": 1}}})
    assert reply.status == 200, reply.body
    store.install_templates()
    sink = ElasticsearchSink(store, Spool(tmp_path / "spool"), linger=0.05, batch_size=500)
    before, during, after = _alerts(0, 2000), _alerts(2000, 3000), _alerts(5000, 1000)
    for document in before:
        sink.write_alert(document)
    assert sink.flush(timeout=120)
    # Every shard must have its replica started before a node goes, or the
    # shards whose only copy was on it stay red until it returns (the
    # alerts would then wait in the spool until the restart, as they should,
    # but that is not what this test is about).
    green = http("GET", f"{cluster[0].url}/_cluster/health/icswatch-alerts-*"
                        "?wait_for_status=green&timeout=120s")
    assert green.body.get("status") == "green", green.body
    cluster[1].stop()
    try:
        for document in during:
            sink.write_alert(document)
        # Two nodes of three carry on once the cluster has promoted the
        # replicas of the lost node's shards; meanwhile alerts wait on disk.
        deadline = time.monotonic() + 120
        delivered = sink.flush(timeout=5)
        while not delivered and time.monotonic() < deadline:
            delivered = sink.flush(timeout=5)
        health = http("GET", f"{cluster[0].url}/_cluster/health").body
        assert sink.spool.stats.records_pending == 0, (sink.counters, health)
    finally:
        cluster[1].start(timeout=180)
    for document in after:
        sink.write_alert(document)
    assert sink.close(timeout=180)
    store.flush()
    expected = {d["event"]["id"] for d in before + during + after}
    assert store.count_alerts(AlertQuery()) == len(expected)
    ids: list[str] = []
    cursor = None
    while True:
        page = store.search_alerts(AlertQuery(size=1000, cursor=cursor))
        ids.extend(doc["event"]["id"] for doc in page.alerts)
        if page.cursor is None:
            break
        cursor = page.cursor
    assert len(ids) == len(set(ids)) == len(expected) and set(ids) == expected
    settings = http("GET", f"{cluster[0].url}/icswatch-alerts-*/_settings/index.number_of_replicas")
    assert {s["settings"]["index"]["number_of_replicas"] for s in settings.body.values()} == {"1"}
