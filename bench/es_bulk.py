"""Sustained alerts/s into one Elasticsearch node through the bulk sink
(spool on disk, drainer thread, bulk batches), and the raw bulk rate.

    python bench/es_bulk.py --url http://127.0.0.1:9200 [--alerts 200000]
    python bench/es_bulk.py --start-node          # starts a test node itself

Alert documents are real ones (the built-in rules on pcaps/modbus captures)
copied with new ids and timestamps, so their size and shape are those the
sensor produces. Run by hand; figures depend on the machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from console.es_sink import ElasticsearchSink  # noqa: E402
from console.spool import Spool  # noqa: E402
from console.stores.base import AlertQuery  # noqa: E402
from console.stores.elasticsearch import ElasticsearchStore  # noqa: E402
from tests.support.alerts import numbered, replay_alerts  # noqa: E402


def real_alerts() -> list[dict[str, Any]]:
    return replay_alerts(sorted((ROOT / "pcaps" / "modbus").glob("*.pcapng")))


def variants(templates: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    return numbered(templates, 0, count, "bench", first_ts=time.time() - 86400, step=0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url")
    parser.add_argument("--start-node", action="store_true")
    parser.add_argument("--alerts", type=int, default=200_000)
    parser.add_argument("--heap", default="2g",
                        help="JVM heap of the --start-node node (default %(default)s; the "
                             "tests' 512m node flushes its indexing buffer five times as often)")
    args = parser.parse_args()
    node = None
    if args.start_node:
        from tests.support.esnode import ElasticsearchNode, ensure_distribution

        node = ElasticsearchNode(ensure_distribution(), Path(tempfile.mkdtemp()), heap=args.heap)
        node.start()
        args.url = node.url
    if not args.url:
        raise SystemExit("give --url or --start-node")
    try:
        documents = variants(real_alerts(), args.alerts)
        size = sum(len(str(d)) for d in documents[:1000]) / 1000
        print(f"{len(documents)} alert documents (~{size:.0f} chars each) -> {args.url}")
        # A fresh JVM indexes at half speed until its JIT has warmed up:
        # warm it with a throwaway run first, as a long-running cluster is.
        warm = ElasticsearchStore(args.url, prefix="benchwarm")
        warm.install_templates()
        started = time.perf_counter()
        for offset in range(0, min(len(documents), 60_000), 2000):
            warm.bulk("alerts", documents[offset:offset + 2000])
        print(f"warm-up: {min(len(documents), 60_000)} alerts in "
              f"{time.perf_counter() - started:.1f} s")
        store = ElasticsearchStore(args.url, prefix="benchsink")
        store.install_templates()
        with tempfile.TemporaryDirectory() as spool_dir:
            sink = ElasticsearchSink(store, Spool(Path(spool_dir)))
            started = time.perf_counter()
            for document in documents:
                sink.write_alert(document)
            produced = time.perf_counter() - started
            delivered = sink.close(timeout=600)
            elapsed = time.perf_counter() - started
        store.flush()
        indexed = store.count_alerts(AlertQuery())
        print(f"sink: produced in {produced:.2f} s, all delivered={delivered} in {elapsed:.2f} s"
              f" -> {len(documents) / elapsed:,.0f} alerts/s sustained; indexed {indexed}")
        raw = ElasticsearchStore(args.url, prefix="benchraw")
        raw.install_templates()
        started = time.perf_counter()
        for offset in range(0, len(documents), 2000):
            raw.bulk("alerts", documents[offset:offset + 2000])
        elapsed = time.perf_counter() - started
        print(f"raw bulk (no spool): {len(documents) / elapsed:,.0f} alerts/s")
        for prefix in ("benchwarm", "benchsink", "benchraw"):
            store.client.indices.delete(index=f"{prefix}-*", ignore_unavailable=True)
            store.client.indices.delete_index_template(name=f"{prefix}-alerts")
            store.client.indices.delete_index_template(name=f"{prefix}-events")
    finally:
        if node is not None:
            node.stop()


if __name__ == "__main__":
    main()
