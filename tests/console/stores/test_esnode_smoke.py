"""The Elasticsearch test node answers, stores, searches, aggregates and keeps
its data across a restart (plain urllib: no client library needed)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.esnode import ElasticsearchNode, http

INDEX = "icswatch-smoke-000001"
ALERTS = [
    ("a1", "2024-05-01T10:05:00Z", "modbus-write-coil", "10.0.0.5"),
    ("a2", "2024-05-01T10:40:00Z", "modbus-write-coil", "10.0.0.6"),
    ("a3", "2024-05-01T11:15:00Z", "s7-stop-cpu", "10.0.0.5"),
]


def search(url: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = http("POST", f"{url}/{INDEX}/_search", body)
    assert reply.status == 200, reply.body
    result: dict[str, Any] = reply.body
    return result


def test_node_is_819_and_healthy(elasticsearch_node: ElasticsearchNode) -> None:
    assert elasticsearch_node.version().startswith("8.19")
    health = http("GET", f"{elasticsearch_node.url}/_cluster/health")
    assert health.status == 200
    assert health.body["status"] in ("green", "yellow")
    # The Python client refuses answers without this header.
    assert health.headers["x-elastic-product"] == "Elasticsearch"


def test_index_search_aggregate_and_survive_a_restart(
    elasticsearch_node: ElasticsearchNode, elasticsearch_url: str
) -> None:
    url = elasticsearch_url
    created = http(
        "PUT",
        f"{url}/{INDEX}",
        {
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {
                "properties": {
                    "@timestamp": {"type": "date"},
                    "rule": {"properties": {"id": {"type": "keyword"}}},
                    "source": {"properties": {"ip": {"type": "ip"}}},
                }
            },
        },
    )
    assert created.status == 200, created.body
    lines: list[dict[str, Any]] = []
    for doc_id, timestamp, rule, ip in ALERTS:
        lines.append({"index": {"_index": INDEX, "_id": doc_id}})
        lines.append({"@timestamp": timestamp, "rule": {"id": rule}, "source": {"ip": ip}})
    bulk = http("POST", f"{url}/_bulk", lines, ndjson=True)
    assert bulk.status == 200 and bulk.body["errors"] is False, bulk.body
    assert http("POST", f"{url}/{INDEX}/_refresh").status == 200

    found = search(url, {"query": {"term": {"rule.id": "s7-stop-cpu"}}})
    assert [hit["_id"] for hit in found["hits"]["hits"]] == ["a3"]
    assert found["hits"]["hits"][0]["_source"]["source"]["ip"] == "10.0.0.5"

    aggregated = search(
        url,
        {
            "size": 0,
            "aggs": {
                "rules": {"terms": {"field": "rule.id"}},
                "hours": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1h"}},
            },
        },
    )["aggregations"]
    rules = {b["key"]: b["doc_count"] for b in aggregated["rules"]["buckets"]}
    assert rules == {"modbus-write-coil": 2, "s7-stop-cpu": 1}
    hours = [b["doc_count"] for b in aggregated["hours"]["buckets"]]
    assert hours == [2, 1]

    elasticsearch_node.stop()
    with pytest.raises(OSError):  # connection refused: it is really down
        http("GET", f"{url}/_cluster/health", timeout=5)
    elasticsearch_node.restart()
    assert elasticsearch_node.url == url

    got = http("GET", f"{url}/{INDEX}/_doc/a1")
    assert got.status == 200 and got.body["_source"]["rule"]["id"] == "modbus-write-coil"
    assert search(url, {"query": {"match_all": {}}})["hits"]["total"]["value"] == 3


def test_templates_and_aliases(elasticsearch_url: str) -> None:
    url = elasticsearch_url
    template = {
        "index_patterns": ["icswatch-smoke-t-*"],
        "template": {
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {"properties": {"rule": {"properties": {"id": {"type": "keyword"}}}}},
            "aliases": {"icswatch-smoke-t": {}},
        },
    }
    assert http("PUT", f"{url}/_index_template/icswatch-smoke-t", template).status == 200
    indexed = http("PUT", f"{url}/icswatch-smoke-t-1/_doc/x?refresh=true", {"rule": {"id": "r1"}})
    assert indexed.status == 201, indexed.body
    mapping = http("GET", f"{url}/icswatch-smoke-t-1/_mapping").body
    assert mapping["icswatch-smoke-t-1"]["mappings"]["properties"]["rule"]["properties"]["id"] == {
        "type": "keyword"
    }
    count = http("GET", f"{url}/icswatch-smoke-t/_count").body
    assert count["count"] == 1
