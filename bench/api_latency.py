"""Console API latency (p50/p95/max) of the alert list and the dashboard
statistics with 10^6 generated alerts in the store; target p95 < 200 ms on
Elasticsearch.

    python bench/api_latency.py --store sqlite [--alerts 1000000] [--keep DIR]
    python bench/api_latency.py --store elasticsearch --start-node [--keep DIR]
    python bench/api_latency.py --store both --start-node --keep /tmp/apilat
    python bench/api_latency.py --store elasticsearch --url http://127.0.0.1:9200

For each store it
  1. fills the store with N alerts (``--alerts``, default 10^6) through
     the store's own ``write_alerts``: the embedded store a file
     ``alerts-N.db`` in ``--keep DIR`` (or a temporary folder), Elasticsearch
     the ``icswatch-alerts-*`` daily indices (the console reads that prefix)
     of ``--url`` or of a test node ``--start-node`` starts
     (tests/support/esnode.py; its files in ``DIR/elasticsearch-N`` with
     ``--keep``), batches sent in parallel (bulk requests), then a refresh.
     A store that already holds N alerts is used as it is, so a rerun with
     ``--keep`` skips the fill. A ``--url`` cluster holding another number
     of alerts is refused unless ``--refill`` (which deletes
     ``icswatch-alerts-*``);
  2. runs the console as users do, ``icswatch serve --store PATH|URL`` in a
     child process on a free port, with a viewer created by ``icswatch user
     add`` in a throwaway console database, and logs in (bearer token);
  3. warms up, then times R requests (``--requests``, default 200) of each
     kind on one keep-alive connection, the kinds taking turns: the default
     alert list, a filtered list (severity=critical&protocol=modbus), a full
     text search (q=a word of the rule names), page 6 of the default list
     (the cursor followed 5 pages), the overview, the histogram of the last
     7 days of data and the top rules. A kind slower than ``--budget``
     seconds in all stops after at least ``--min-requests`` requests;
  4. prints p50/p95/max in ms per kind and store, and whether every
     Elasticsearch p95 is under 200 ms. ``--breakdown`` also times, in this
     process, each store call the overview and the alert list make.

The alerts are real documents (the built-in rules on pcaps/modbus captures,
tests/support/alerts.py), each a copy of one template picked at random with
its own id, an @timestamp spread evenly over the 30 days before the fill
(jitter within a slot, in time order as sensors write), source.ip one of 40
hosts (Zipf-weighted), destination.ip one of 12 PLCs and a triage status
(mostly open). Rule, severity, protocol, texts and sample events are the
template's own. The dicts are shallow copies sharing the unchanged parts.

Elasticsearch caches the results of size-0 searches (all statistics) per
shard until the index changes; the overview asked again over unchanged data
is then served from that cache, as a dashboard reloaded over the daily
indices of past days is. ``--clear-cache`` clears the request cache before
each timed request (untimed) to see the cost of computing them.

Runtime on a 2-core machine at 10^6 alerts: embedded store fill ~4 min
(single writer, ~4.5 GiB file), Elasticsearch fill 2-4 min (~0.7 GiB of
indices, 512 MiB heap), then the requests: ~5 min for the embedded store
(its slow kinds stop at --budget), ~1 min for Elasticsearch (~2 min with
--clear-cache); ~15 min for ``--store both`` the first time, ~7 min with
``--keep`` afterwards. ``--alerts 20000`` takes under a minute. Run by
hand; figures depend on the machine and are never a CI pass/fail test.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import math
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from console.stores.base import AlertQuery, Store, StoreError, iso_time  # noqa: E402
from console.times import parse_time  # noqa: E402
from tests.support.alerts import replay_alerts  # noqa: E402

Doc = dict[str, Any]
DAY = 86400.0
DAYS = 30
TARGET_MS = 200.0
PREFIX = "icswatch"  # what `icswatch serve --store URL` reads
ID_TAG = "apilat"
USER, PASSWORD = "bench", "bench-password-1234"
SOURCES = [f"10.20.{1 + n // 20}.{11 + n % 20}" for n in range(40)]
DESTINATIONS = [f"10.10.1.{21 + n}" for n in range(12)]
# Share of triage statuses (new alerts are open; analysts closed some).
STATUSES = (("open", 70), ("acknowledged", 12), ("closed", 13), ("false_positive", 5))


# -- generated alerts ---------------------------------------------------------------


def real_alerts() -> list[Doc]:
    return replay_alerts(sorted((ROOT / "pcaps" / "modbus").glob("*.pcapng")))


class Alerts:
    """``count`` alerts made from ``templates``: `batch` builds any slice of
    them, the same one every time (a random generator seeded per slice), so
    batches may be built in parallel and a refill writes the same ids."""

    def __init__(self, templates: list[Doc], count: int, end: float, seed: int = 1) -> None:
        self.templates = templates
        self.count = count
        self.seed = seed
        self.first = end - DAYS * DAY
        self.slot = DAYS * DAY / count
        self.durations = [
            max(0.0, parse_time(t["event"]["end"]) - parse_time(t["event"]["start"]))
            if t["event"].get("start") and t["event"].get("end") else 0.0
            for t in templates
        ]
        self.source_weights = list(_cumulative([1 / (k + 1) for k in range(len(SOURCES))]))
        self.status_weights = list(_cumulative([w for _, w in STATUSES]))

    def batch(self, start: int, stop: int) -> list[Doc]:
        rng = random.Random(self.seed * 1_000_003 + start)
        choices, pick = rng.choices, rng.randrange
        sources = choices(SOURCES, cum_weights=self.source_weights, k=stop - start)
        statuses = choices([s for s, _ in STATUSES], cum_weights=self.status_weights,
                           k=stop - start)
        documents = []
        for n in range(start, stop):
            which = pick(len(self.templates))
            template = self.templates[which]
            moment = self.first + (n + rng.random()) * self.slot
            stamp = iso_time(moment)
            ics = template["ics"]
            document = dict(template)
            document["@timestamp"] = stamp
            document["event"] = {
                **template["event"], "id": hashlib.sha1(f"{ID_TAG}-{n}".encode()).hexdigest()[:20],
                "start": iso_time(moment - self.durations[which]), "end": stamp}
            document["source"] = {**template.get("source", {}), "ip": sources[n - start]}
            document["destination"] = {**template.get("destination", {}),
                                       "ip": DESTINATIONS[pick(len(DESTINATIONS))]}
            document["ics"] = {**ics, "alert": {**ics["alert"], "status": statuses[n - start]}}
            documents.append(document)
        return documents


def _cumulative(weights: list[float]) -> Iterator[float]:
    total = 0.0
    for weight in weights:
        total += weight
        yield total


def search_word(templates: list[Doc]) -> str:
    """The word of the rule names found in the most rule names but not in
    all of them (``modbus`` would match every alert)."""
    names = {t["rule"]["name"] for t in templates}
    words = Counter(w for name in names for w in set(re.findall(r"[a-z]+", name.lower()))
                    if len(w) > 3)
    common = [(n, w) for w, n in words.items() if n < len(names)]
    return max(common)[1] if common else "write"


def _progress(done: int, total: int, started: float, every: int) -> None:
    if done % every == 0 or done == total:
        elapsed = time.perf_counter() - started
        print(f"  {done:>9,} / {total:,} alerts, {elapsed:6.1f} s, "
              f"{done / max(elapsed, 1e-9):8,.0f} alerts/s", flush=True)


# -- filling the stores -------------------------------------------------------------


def fill_sqlite(path: Path, alerts: Alerts, batch: int) -> None:
    from console.stores.sqlite import SqliteStore

    store = SqliteStore(path)
    try:
        started = time.perf_counter()
        every = max(batch, alerts.count // 10 // batch * batch)
        for offset in range(0, alerts.count, batch):
            stop = min(alerts.count, offset + batch)
            store.write_alerts(alerts.batch(offset, stop))
            if (offset // batch) % 25 == 24:
                store.flush()
            _progress(stop, alerts.count, started, every)
        store.flush()
        elapsed = time.perf_counter() - started
    finally:
        store.close()
    print(f"embedded store filled: {alerts.count:,} alerts in {elapsed:.1f} s "
          f"({alerts.count / elapsed:,.0f} alerts/s), file {_size(path)}")


def fill_elasticsearch(url: str, alerts: Alerts, batch: int, workers: int) -> None:
    from console.stores.elasticsearch import ElasticsearchStore

    store = ElasticsearchStore(url, prefix=PREFIX, request_timeout=300)
    store.install_templates()

    def send(offset: int) -> int:
        # The store's own write path, so the documents are stored as the
        # sensor's sink stores them (event.ingested, status, create).
        documents = alerts.batch(offset, min(alerts.count, offset + batch))
        for attempt in range(8):
            try:
                store.write_alerts(documents)
                break
            except StoreError as exc:
                if "overloaded" not in str(exc) or attempt == 7:
                    raise
                time.sleep(0.5 * 2 ** attempt)
        return len(documents)

    started = time.perf_counter()
    every = max(batch, alerts.count // 10 // batch * batch)
    done = 0
    try:
        with ThreadPoolExecutor(workers) as pool:
            for sent in pool.map(send, range(0, alerts.count, batch)):
                done += sent
                _progress(done, alerts.count, started, every)
        bulk_seconds = time.perf_counter() - started
        store.flush()
        elapsed = time.perf_counter() - started
        indexed = store.count_alerts(AlertQuery())
        stats = store.client.indices.stats(index=f"{PREFIX}-alerts-*", metric="store,segments")
        total = stats["_all"]["primaries"]
        print(f"Elasticsearch filled: {alerts.count:,} alerts in {elapsed:.1f} s "
              f"({alerts.count / elapsed:,.0f} alerts/s; bulk {bulk_seconds:.1f} s + refresh "
              f"{elapsed - bulk_seconds:.1f} s; {workers} parallel bulk requests of {batch}); "
              f"{indexed:,} indexed in {len(stats['indices'])} indices, "
              f"{total['store']['size_in_bytes'] / 2**30:.2f} GiB, "
              f"{total['segments']['count']} segments")
    finally:
        store.close()


def _size(path: Path) -> str:
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())
    return f"{size / 2**30:.2f} GiB"


def sqlite_location(args: argparse.Namespace, folder: Path, alerts: Alerts) -> str:
    from console.stores.sqlite import SqliteStore

    path = folder / f"alerts-{alerts.count}.db"
    if path.exists():
        with SqliteStore(path) as store:
            held = store.count_alerts(AlertQuery())
        if held == alerts.count and not args.refill:
            print(f"embedded store {path} already holds {held:,} alerts: used as it is")
            return str(path)
        print(f"embedded store {path} holds {held:,} alerts: made again")
        for stale in path.parent.glob(path.name + "*"):
            stale.unlink()
    print(f"filling the embedded store {path} with {alerts.count:,} alerts")
    fill_sqlite(path, alerts, args.batch)
    return str(path)


def elasticsearch_location(args: argparse.Namespace, url: str, alerts: Alerts,
                           own_node: bool) -> str:
    from console.stores.elasticsearch import ElasticsearchStore

    store = ElasticsearchStore(url, prefix=PREFIX, request_timeout=120)
    try:
        held = store.count_alerts(AlertQuery())
        if held == alerts.count and not args.refill:
            print(f"Elasticsearch {url} already holds {held:,} alerts in {PREFIX}-alerts-*: "
                  "used as they are")
            return url
        if held:
            if not (own_node or args.refill):
                raise SystemExit(
                    f"Elasticsearch {url} holds {held:,} alerts in {PREFIX}-alerts-*, not "
                    f"{alerts.count:,}: give --refill to delete those indices and fill them")
            print(f"deleting {PREFIX}-alerts-* ({held:,} alerts)")
            store.client.indices.delete(index=f"{PREFIX}-alerts-*", ignore_unavailable=True,
                                        expand_wildcards="all")
    finally:
        store.close()
    print(f"filling Elasticsearch {url} with {alerts.count:,} alerts")
    fill_elasticsearch(url, alerts, args.batch, args.workers)
    return url


# -- the console server and a client ------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


ICSWATCH = [sys.executable, "-c", "import sys; from console.cli import main; sys.exit(main())"]


@contextmanager
def console_server(location: str) -> Iterator[tuple[int, str]]:
    """``icswatch serve --store location`` on a free port, a viewer logged
    in: (port, token)."""
    folder = Path(tempfile.mkdtemp(prefix="icswatch-apilat-"))
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    state = folder / "console.db"
    subprocess.run([*ICSWATCH, "user", "add", USER, "--role", "viewer", "--password-stdin",
                    "--state", str(state)], input=PASSWORD + "\n", text=True, check=True,
                   capture_output=True, cwd=ROOT, env=environment)
    port = _free_port()
    log = folder / "serve.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [*ICSWATCH, "serve", "--store", location, "--state", str(state), "--site-rules",
             str(folder / "rules"), "--port", str(port)],
            stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
            env=environment)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise SystemExit(f"icswatch serve exited ({process.returncode}):\n"
                                 f"{log.read_text(errors='replace')[-3000:]}")
            try:
                client = Client(port)
                status, body, _ = client.request(
                    "POST", "/api/auth/login", {"username": USER, "password": PASSWORD})
                client.close()
            except OSError:
                status, body = 0, b""
            if status == 200:
                break
            if status not in (0, 502, 503) or time.monotonic() > deadline:
                raise SystemExit(f"login failed: HTTP {status} {body[:300]!r}")
            time.sleep(0.25)
        yield port, orjson.loads(body)["token"]
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


class Client:
    """One keep-alive HTTP/1.1 connection to the console."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.port = port
        self.headers = {"Accept": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes, float]:
        """Status, body and seconds from sending the request to the last
        byte of the answer."""
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            try:
                started = time.perf_counter()
                self.connection.request(method, path, body=data, headers=headers)
                reply = self.connection.getresponse()
                content = reply.read()
                return reply.status, content, time.perf_counter() - started
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.connection.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def get_json(self, path: str) -> Any:
        status, content, _ = self.request("GET", path)
        if status != 200:
            raise SystemExit(f"GET {path}: HTTP {status} {content[:500]!r}")
        return orjson.loads(content)

    def close(self) -> None:
        self.connection.close()


# -- measuring ----------------------------------------------------------------------


@dataclass
class Kind:
    name: str
    path: str
    check: Callable[[Any], bool]
    seconds: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.seconds)
        return {"n": len(ordered), "p50": _rank(ordered, 0.50) * 1000,
                "p95": _rank(ordered, 0.95) * 1000, "max": ordered[-1] * 1000,
                "kib": statistics.mean(self.sizes) / 1024}


def _rank(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _query(**params: Any) -> str:
    return urllib.parse.urlencode(params, doseq=True)


def plan(client: Client, word: str) -> list[Kind]:
    """The request kinds; the histogram window and the deep page's cursor
    come from the stored data."""
    first = client.get_json("/api/alerts?size=1")
    if not first["alerts"]:
        raise SystemExit("the console shows no alert")
    newest = parse_time(first["alerts"][0]["@timestamp"])
    cursor = None
    for _ in range(5):
        page = client.get_json("/api/alerts" + (f"?{_query(cursor=cursor)}" if cursor else ""))
        cursor = page["cursor"]
        if cursor is None:
            raise SystemExit("fewer than 6 pages of alerts")

    def listing(body: Any) -> bool:
        return isinstance(body.get("alerts"), list) and isinstance(body.get("total"), int)

    return [
        Kind("alerts: default list", "/api/alerts", listing),
        Kind("alerts: severity=critical&protocol=modbus",
             "/api/alerts?" + _query(severity="critical", protocol="modbus"), listing),
        Kind(f"alerts: q={word}", "/api/alerts?" + _query(q=word), listing),
        Kind("alerts: page 6 (cursor)", "/api/alerts?" + _query(cursor=cursor), listing),
        Kind("stats: overview", "/api/stats/overview",
             lambda b: isinstance(b.get("total"), int) and "histogram" in b),
        Kind("stats: histogram last 7 days", "/api/stats/histogram?" + _query(
            start=iso_time(newest - 7 * DAY), end=iso_time(newest + 0.001)),
             lambda b: isinstance(b.get("buckets"), list) and bool(b["buckets"])),
        Kind("stats: top rules", "/api/stats/top?" + _query(field="rule.id", size=10),
             lambda b: isinstance(b.get("buckets"), list) and bool(b["buckets"])),
    ]


def measure(client: Client, kinds: list[Kind], args: argparse.Namespace,
            before: Callable[[], None] | None) -> None:
    """Warm up, then time the kinds in turn until each has ``--requests``
    answers or has spent ``--budget`` seconds (after ``--min-requests``)."""

    def one(kind: Kind) -> tuple[float, int]:
        if before is not None:
            before()
        status, content, seconds = client.request("GET", kind.path)
        body = orjson.loads(content) if content else None
        if status != 200 or not isinstance(body, dict) or not kind.check(body):
            raise SystemExit(f"GET {kind.path}: HTTP {status}, not the answer the contract "
                             f"describes: {content[:500]!r}")
        return seconds, len(content)

    for kind in kinds:
        for _ in range(args.warmup):
            one(kind)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    for _ in range(args.requests):
        active = [k for k in kinds if len(k.seconds) < args.min_requests
                  or sum(k.seconds) < args.budget]
        if not active:
            break
        for kind in active:
            seconds, size = one(kind)
            kind.seconds.append(seconds)
            kind.sizes.append(size)
    load_after = os.getloadavg()[0]
    print(f"measured {sum(len(k.seconds) for k in kinds)} requests in "
          f"{time.perf_counter() - started:.1f} s; load average {load_before:.1f} before, "
          f"{load_after:.1f} after ({os.cpu_count()} CPUs)")
    if max(load_before, load_after) > (os.cpu_count() or 1) + 1:  # + this benchmark
        print("  warning: other processes compete for the CPUs; the figures are inflated")


def print_table(title: str, kinds: list[Kind]) -> None:
    width = max(len(k.name) for k in kinds)
    print(f"\n{title}")
    print(f"  {'request':<{width}}  {'n':>4}  {'p50 ms':>8}  {'p95 ms':>8}  {'max ms':>8}"
          f"  {'KiB':>7}")
    for kind in kinds:
        s = kind.summary()
        print(f"  {kind.name:<{width}}  {s['n']:>4}  {s['p50']:>8.1f}  {s['p95']:>8.1f}"
              f"  {s['max']:>8.1f}  {s['kib']:>7.1f}")


def breakdown(store: Store, word: str, newest: float,
              before: Callable[[], None] | None) -> None:
    """Each store call of the overview and of the alert lists, timed here
    (median of 3), to see which query dominates (``before`` each, untimed)."""
    everything = AlertQuery()
    calls: list[tuple[str, Callable[[], Any]]] = [
        ("search_alerts default (count + page of 50)", lambda: store.search_alerts(everything)),
        ("count_alerts default", lambda: store.count_alerts(everything)),
        ("search_alerts critical+modbus", lambda: store.search_alerts(
            AlertQuery(severities=["critical"], protocols=["modbus"]))),
        (f"search_alerts q={word}", lambda: store.search_alerts(AlertQuery(text=word))),
        ("overview: top ics.alert.severity", lambda: store.top(
            everything, "ics.alert.severity", 4)),
        ("overview: top threat.technique.id", lambda: store.top(
            everything, "threat.technique.id", 10)),
        ("overview: newest critical/high (size 10)", lambda: store.search_alerts(
            AlertQuery(severities=["critical", "high"], size=10))),
        ("overview: top ics.alert.status", lambda: store.top(everything, "ics.alert.status")),
        ("overview: span, oldest (size 1 asc)", lambda: store.search_alerts(
            AlertQuery(size=1, newest_first=False))),
        ("overview: span, newest (size 1)", lambda: store.search_alerts(AlertQuery(size=1))),
        ("overview: histogram 12 h buckets", lambda: store.histogram(everything, 43200)),
        ("overview: top rule.id", lambda: store.top(everything, "rule.id")),
        ("overview: top destination.ip", lambda: store.top(everything, "destination.ip")),
        ("overview: top network.protocol", lambda: store.top(everything, "network.protocol")),
        ("histogram last 7 days (3 h buckets)", lambda: store.histogram(
            replace(everything, start=newest - 7 * DAY, end=newest + 0.001), 10800)),
    ]
    print("\n  store calls, in this process (median of 3):")
    for name, call in calls:
        times = []
        for _ in range(3):
            if before is not None:
                before()
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
        print(f"    {name:<46} {statistics.median(times) * 1000:9.1f} ms")


def run_store(name: str, location: str, args: argparse.Namespace, word: str,
              before: Callable[[], None] | None, open_store: Callable[[], Store]) -> list[Kind]:
    print(f"\n== {name}: icswatch serve --store {location}")
    with console_server(location) as (port, token):
        client = Client(port, token)
        try:
            kinds = plan(client, word)
            measure(client, kinds, args, before)
            newest = parse_time(client.get_json("/api/alerts?size=1")["alerts"][0]["@timestamp"])
        finally:
            client.close()
    print_table(f"{name}, {args.alerts:,} alerts" + (
        " (request cache cleared before each request)" if before else ""), kinds)
    if args.breakdown:
        store = open_store()
        try:
            breakdown(store, word, newest, before)
        finally:
            store.close()
    return kinds


def clear_request_cache(url: str) -> Callable[[], None]:
    from tests.support.esnode import http

    def clear() -> None:
        http("POST", f"{url}/{PREFIX}-alerts-*/_cache/clear?request=true")

    return clear


def print_comparison(results: dict[str, list[Kind]]) -> None:
    names = list(results)
    kinds = [k.name for k in next(iter(results.values()))]
    width = max(len(n) for n in kinds)
    print(f"\nAPI latency, ms ({', '.join(f'{n}: p50/p95/max' for n in names)})")
    print(f"  {'request':<{width}}" + "".join(f"  {n:>24}" for n in names))
    for number, kind in enumerate(kinds):
        cells = []
        for name in names:
            s = results[name][number].summary()
            cells.append(f"{s['p50']:>7.1f} {s['p95']:>7.1f} {s['max']:>8.1f}")
        print(f"  {kind:<{width}}" + "".join(f"  {c:>24}" for c in cells))
    for name, found in results.items():
        if name.startswith("elasticsearch"):
            slow = [k.name for k in found if k.summary()["p95"] >= TARGET_MS]
            verdict = "yes" if not slow else "no: " + ", ".join(slow)
            print(f"{name}: every p95 < {TARGET_MS:.0f} ms? {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=("sqlite", "elasticsearch", "both"),
                        default="sqlite")
    parser.add_argument("--alerts", type=int, default=1_000_000)
    parser.add_argument("--url", help="Elasticsearch URL (the console reads icswatch-alerts-*)")
    parser.add_argument("--start-node", action="store_true",
                        help="start an Elasticsearch test node (tests/support/esnode.py)")
    parser.add_argument("--heap", default=None, help="the test node's JVM heap (default 512m)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep the filled stores here; reruns use them (default: a "
                             "temporary folder, deleted)")
    parser.add_argument("--refill", action="store_true",
                        help="fill again even when the store holds N alerts; on a --url "
                             "cluster, delete icswatch-alerts-* first")
    parser.add_argument("--requests", type=int, default=200, help="per kind (default 200)")
    parser.add_argument("--min-requests", type=int, default=20,
                        help="per kind, before --budget may stop it (default 20)")
    parser.add_argument("--budget", type=float, default=60.0,
                        help="seconds of requests per kind and store (default 60)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests per kind")
    parser.add_argument("--batch", type=int, default=2000, help="alerts per write or bulk")
    parser.add_argument("--workers", type=int, default=3, help="parallel bulk requests")
    parser.add_argument("--q", help="the full-text word (default: from the rule names)")
    parser.add_argument("--clear-cache", action="store_true",
                        help="clear Elasticsearch's request cache before each timed request")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time each store call of the overview and the lists")
    args = parser.parse_args()
    if args.alerts < 6 * 50:
        parser.error("--alerts: at least 300 (the deep page is page 6 of 50)")
    stores = ("sqlite", "elasticsearch") if args.store == "both" else (args.store,)
    if "elasticsearch" in stores and not (args.url or args.start_node):
        parser.error("Elasticsearch needs --url or --start-node")

    templates = real_alerts()
    word = args.q or search_word(templates)
    end = math.floor(time.time() / 3600) * 3600
    alerts = Alerts(templates, args.alerts, end)
    print(f"{len(templates)} template alerts from pcaps/modbus "
          f"(~{statistics.mean(len(orjson.dumps(t)) for t in templates):,.0f} bytes each); "
          f"{args.alerts:,} alerts over {DAYS} days; full-text word {word!r}")
    results: dict[str, list[Kind]] = {}
    with ExitStack() as cleanup:
        if args.keep is not None:
            folder = args.keep.resolve()
            folder.mkdir(parents=True, exist_ok=True)
        else:
            folder = Path(tempfile.mkdtemp(prefix="icswatch-apilat-"))
            cleanup.callback(shutil.rmtree, folder, ignore_errors=True)
        if "sqlite" in stores:
            from console.stores.sqlite import SqliteStore

            location = sqlite_location(args, folder, alerts)
            results["sqlite"] = run_store("embedded store (SQLite)", location, args, word,
                                          None, lambda: SqliteStore(location))
        if "elasticsearch" in stores:
            from console.stores.elasticsearch import ElasticsearchStore

            url = args.url
            if args.start_node:
                from tests.support.esnode import ElasticsearchNode, ensure_distribution

                base = folder / f"elasticsearch-{args.alerts}"
                if args.keep is None:
                    os.chmod(folder, 0o755)  # the node's user must reach its files
                node = ElasticsearchNode(ensure_distribution(), base,
                                         **({"heap": args.heap} if args.heap else {}))
                node.start()
                cleanup.callback(node.stop)
                url = node.url
                print(f"Elasticsearch test node at {url} (heap {node.heap}, files {base})")
            location = elasticsearch_location(args, url, alerts, own_node=args.start_node)
            results["elasticsearch"] = run_store(
                "Elasticsearch", location, args, word,
                clear_request_cache(url) if args.clear_cache else None,
                lambda: ElasticsearchStore(url, prefix=PREFIX, request_timeout=120))
    print_comparison(results)


if __name__ == "__main__":
    main()
