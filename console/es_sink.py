"""Shipping alerts (and events) into Elasticsearch without ever losing an alert.

Every alert goes through the on-disk spool first; a drainer thread takes
the oldest spooled alerts in bulk batches to the cluster and acknowledges
them only once Elasticsearch has them. While the cluster is slow or down the
alerts wait on disk and the drainer retries with backoff; documents carry
their deterministic ``event.id`` as ``_id`` and go in with the bulk
``create`` action, so a batch delivered twice (a crash between indexing and
acknowledging, a second replay) still leaves one copy, and never resets the
triage of an alert stored before (its "version conflict" counts as
delivered). Each alert's ``event.ingested`` is the time the drainer sends
it, spliced into the spooled bytes (an alert that waited out an outage in
the spool is new to the console's live feed when it arrives).

Alerts a cluster refuses for good (a mapping conflict) cannot be retried:
they go to ``rejected.jsonl`` beside the spool with the reason, and one log
line says so. Events are high volume and best effort: they are bulk-indexed
from memory with a few retries, and counted when dropped.

The producer's side is cheap: alerts are buffered in memory and appended to
the spool in batches (one fsync per batch, at most ``linger`` seconds old),
so a crash of the sensor itself can lose at most the last ``linger``
seconds; an outage of the cluster loses nothing. A full spool makes the
producer wait (backpressure) rather than drop alerts.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import orjson

from console.spool import Spool, SpoolFull, TooLarge
from console.stores.base import StoreError, iso_time
from console.stores.elasticsearch import ElasticsearchStore, Rejected, prepared_alert

log = logging.getLogger("icswatch.elasticsearch")

MAX_BACKOFF: Final = 30.0


def _encode(envelope: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, keys in insertion order (the drainer relies on
    the envelope's ``"doc"`` coming last). orjson: six times the stdlib's
    speed on alert documents, which is what bounds the producer."""
    return orjson.dumps(envelope)

# How long `flush` waits for a cluster known to be down before leaving the
# alerts in the spool.
OUTAGE_GRACE: Final = 3.0
# A batch is split into parallel bulk requests only when each part gets at
# least this many documents.
MIN_PART: Final = 250
# What follows the index and id in a spooled envelope (compact JSON, keys
# in insertion order; index names and ids never hold quotes or commas).
ENVELOPE_DOC: Final = b',"doc":'
# A spooled alert document begins with its ``event.ingested``, this
# placeholder until the drainer sends it (`prepared_alert` puts it first).
INGESTED_PLACEHOLDER: Final = "1970-01-01T00:00:00.000000Z"
INGESTED_PREFIX: Final = b'{"event":{"ingested":"'
UNSTAMPED: Final = INGESTED_PREFIX + INGESTED_PLACEHOLDER.encode()


class ElasticsearchSink:
    def __init__(
        self,
        store: ElasticsearchStore,
        spool: Spool,
        *,
        batch_size: int = 5000,
        batch_bytes: int = 16 * 1024 * 1024,
        linger: float = 0.5,
        events_batch: int = 5000,
        clock: Callable[[], float] = time.monotonic,
        prepare: Callable[[], None] | None = None,
        parallel: int = 2,
    ) -> None:
        self.store = store
        self.spool = spool
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self.linger = linger
        self.events_batch = events_batch
        self.clock = clock
        self.rejected_path = Path(spool.directory) / "rejected.jsonl"
        self._alerts: list[dict[str, Any]] = []
        self._events: list[dict[str, Any]] = []
        self._oldest = 0.0
        # Run by the drainer before its first bulk request (installing the
        # index templates), retried like a bulk request until it succeeds.
        self._prepare = prepare
        self.parallel = parallel
        self._pool = ThreadPoolExecutor(max_workers=max(1, parallel),
                                        thread_name_prefix="icswatch-es-bulk")
        self._wake = threading.Condition()
        self._stopping = False
        self._healthy = True
        self.counters: dict[str, int] = {
            "alerts_spooled": 0, "alerts_indexed": 0, "alerts_rejected": 0,
            "events_indexed": 0, "events_dropped": 0, "bulk_failures": 0,
            "backpressure_waits": 0,
        }
        self._drainer = threading.Thread(target=self._drain_loop, name="icswatch-es-drain",
                                         daemon=True)
        self._drainer.start()

    # -- producer side -----------------------------------------------------

    def write_alert(self, document: dict[str, Any]) -> None:
        """Buffer one alert document; it reaches the spool within ``linger``
        seconds or ``batch_size`` alerts. The spooled record is an envelope
        ``{"_index": …, "_id": …, "doc": …}`` so the drainer can build the
        bulk request from the spooled bytes without decoding them."""
        if not self._alerts:
            self._oldest = self.clock()
        document = prepared_alert(document, INGESTED_PLACEHOLDER)
        self._alerts.append({
            "_index": self.store.index_name("alerts", document),
            "_id": document["event"]["id"],
            "doc": document,
        })
        if len(self._alerts) >= self.batch_size or self.clock() - self._oldest >= self.linger:
            self._spool_alerts()

    def tick(self) -> None:
        """Called now and then by the producer: buffered alerts older than
        ``linger`` go to the spool even when no new alert arrives."""
        if self._alerts and self.clock() - self._oldest >= self.linger:
            self._spool_alerts()

    def write_event(self, document: dict[str, Any]) -> None:
        self._events.append(document)
        if len(self._events) >= self.events_batch:
            self._ship_events()

    def _spool_alerts(self) -> None:
        """Append the buffered alerts to the spool. The buffer is cleared only
        once the spool holds them: a full spool or a failing disk makes the
        producer wait and retry (backpressure), never drop."""
        batch = self._alerts
        while True:
            try:
                self.spool.append_payloads([_encode(envelope) for envelope in batch])
                break
            except TooLarge:
                batch = self._split_oversized(batch)
                if not batch:
                    break
            except (ValueError, TypeError) as exc:
                batch = self._drop_unencodable(batch, exc)
                if not batch:
                    break
            except (SpoolFull, OSError) as exc:
                self.counters["backpressure_waits"] += 1
                if self.counters["backpressure_waits"] == 1 or not isinstance(exc, SpoolFull):
                    log.warning("cannot spool alerts at %s (%s): waiting", self.spool.directory,
                                exc)
                with self._wake:
                    self._wake.notify_all()
                time.sleep(0.2)
        self._alerts = []
        self.counters["alerts_spooled"] += len(batch)
        with self._wake:
            self._wake.notify_all()

    def _split_oversized(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Spool the alerts one by one; one that can never fit is set aside."""
        for document in batch:
            try:
                self.spool.append_payloads([_encode(document)])
                self.counters["alerts_spooled"] += 1
            except TooLarge as exc:
                self._set_aside([Rejected(document["doc"], f"too large for the spool: {exc}")])
        return []

    def _drop_unencodable(
        self, batch: list[dict[str, Any]], exc: Exception
    ) -> list[dict[str, Any]]:
        good: list[dict[str, Any]] = []
        for document in batch:
            try:
                _encode(document)
                good.append(document)
            except (ValueError, TypeError) as error:
                self._set_aside([Rejected(document["doc"], f"not JSON: {error}")])
        if len(good) == len(batch):
            raise exc  # not an encoding problem after all: a bug
        return good

    def _ship_events(self) -> None:
        batch, self._events = self._events, []
        for attempt in range(3):
            try:
                rejected = self.store.bulk("events", batch)
                self.counters["events_indexed"] += len(batch) - len(rejected)
                self.counters["events_dropped"] += len(rejected)
                return
            except StoreError as exc:
                if attempt == 2:
                    self.counters["events_dropped"] += len(batch)
                    log.warning("%d events dropped: %s", len(batch), exc)
                    return
                time.sleep(0.2 * (attempt + 1))

    def flush(self, timeout: float = 30.0) -> bool:
        """Spool what is buffered and wait until the spool is drained (or
        ``timeout`` passes); True when everything reached Elasticsearch."""
        if self._alerts:
            self._spool_alerts()
        if self._events:
            self._ship_events()
        deadline = time.monotonic() + timeout
        pending = self.spool.stats.records_pending
        progress_at = time.monotonic()
        while time.monotonic() < deadline:
            now_pending = self.spool.stats.records_pending
            if now_pending == 0:
                return True
            if now_pending < pending:
                pending, progress_at = now_pending, time.monotonic()
            elif not self._healthy and time.monotonic() - progress_at > OUTAGE_GRACE:
                return False  # the cluster is down: the alerts wait on disk
            with self._wake:
                self._wake.notify_all()
                self._wake.wait(0.05)
        return self.spool.stats.records_pending == 0

    def close(self, timeout: float = 30.0) -> bool:
        """Flush, stop the drainer, close the spool; what is not delivered
        stays in the spool for next time."""
        delivered = self.flush(timeout)
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        self._drainer.join(timeout=10)
        self._pool.shutdown(wait=True)
        self.spool.close()
        return delivered

    # -- drainer side ------------------------------------------------------

    def _drain_loop(self) -> None:
        backoff = 0.5
        while True:
            with self._wake:
                if self._stopping:
                    return
            batch = self.spool.peek(self.batch_size, self.batch_bytes)
            if not batch.payloads:  # (not .records: that decodes every payload)
                with self._wake:
                    if self._stopping:
                        return
                    self._wake.wait(0.5)
                continue
            try:
                if self._prepare is not None:
                    self._prepare()
                    self._prepare = None
                lines: list[bytes] = []
                stamp = INGESTED_PREFIX + iso_time(time.time()).encode()
                for payload in batch.payloads:
                    split = payload.find(ENVELOPE_DOC)
                    start = split + len(ENVELOPE_DOC)
                    lines.append(b'{"create":' + payload[:split] + b"}}")
                    if payload.startswith(UNSTAMPED, start):
                        lines.append(stamp + payload[start + len(UNSTAMPED):-1])
                    else:  # spooled by an older icswatch
                        lines.append(payload[start:-1])
                failures = self._bulk(lines)
                rejected = [Rejected(batch.records[number]["doc"], reason)
                            for number, reason in failures]
            except StoreError as exc:
                self.counters["bulk_failures"] += 1
                if self._healthy:
                    log.warning("%s; %d alerts kept in the spool, retrying", exc,
                                self.spool.stats.records_pending)
                    self._healthy = False
                with self._wake:
                    if self._stopping:
                        return
                    self._wake.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if rejected:
                self._set_aside(rejected)
            self.spool.ack(batch)
            self.counters["alerts_indexed"] += len(batch) - len(rejected)
            if not self._healthy:
                log.warning("Elasticsearch at %s is back; draining the spool", self.store.url)
                self._healthy = True
            backoff = 0.5
            with self._wake:
                self._wake.notify_all()

    def _bulk(self, lines: list[bytes]) -> list[tuple[int, str]]:
        """Send one spooled batch as ``parallel`` bulk requests at once (the
        cluster indexes them on several threads while this process waits);
        the batch is acknowledged only when every part succeeded, and a
        retried part is harmless: ids are deterministic."""
        documents = len(lines) // 2
        if self.parallel < 2 or documents < 2 * MIN_PART:
            return self.store.bulk_ndjson(lines)
        per_part = -(-documents // self.parallel)
        starts = range(0, documents, per_part)
        parts = [lines[2 * start:2 * (start + per_part)] for start in starts]
        results = list(self._pool.map(self.store.bulk_ndjson, parts))
        return [(start + number, reason)
                for start, failures in zip(starts, results, strict=True)
                for number, reason in failures]

    def _set_aside(self, rejected: list[Rejected]) -> None:
        with self.rejected_path.open("a", encoding="utf-8") as out:
            for item in rejected:
                document = item.document
                event = document.get("event")
                if isinstance(event, dict) and event.get("ingested") == INGESTED_PLACEHOLDER:
                    document = {**document, "event": {
                        k: v for k, v in event.items() if k != "ingested"}}
                out.write(json.dumps({"reason": item.reason, "document": document},
                                     separators=(",", ":"), ensure_ascii=False,
                                     default=repr) + "\n")
            out.flush()
            os.fsync(out.fileno())
        self.counters["alerts_rejected"] += len(rejected)
        log.error("%d alerts refused by Elasticsearch (%s); kept in %s", len(rejected),
                  rejected[0].reason, self.rejected_path)
