"""Forwarding to the tier above: store-and-forward through a durable spool.

One thread in the console process does four things in turn:

1. collects what goes up into the spool: this console's organisations when
   they changed, every alert stored since its cursor (those of at least
   ``min_severity``), inventory now and then, and notice steps taken here
   or below on notices issued above;
2. sends the spool's oldest batch to the parent's ``/api/tier/ingest`` and
   acknowledges it only on the parent's 200: an outage leaves everything in
   the spool, and a batch sent twice is stored once (alerts and steps carry
   their own ids);
3. pulls notice steps for this tier and below from the parent;
4. sleeps ``interval`` when there was nothing to do.

Cursors (the store's alert marker, the notice log sequence, the parent's
notice cursor) are kept in the console database and advanced only after the
spool holds what they cover, so a crash repeats work and never skips it.
A batch the parent refuses for good (403/422: a record it will never take)
is set aside in ``refused.jsonl`` beside the spool, with the reason, and
logged; it does not block what follows.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Final

from console.notices import NoticeBook, NoticeError, NoticeForbidden
from console.paths import data_home
from console.spool import Spool, SpoolFull
from console.state import ConsoleState
from console.stores.base import INVENTORY_KINDS, SEVERITY_ORDER, Store
from console.tiers import Organizations, TierConfig, UplinkConfig

log = logging.getLogger("icswatch.uplink")
BATCH_RECORDS: Final = 500
BATCH_BYTES: Final = 4 * 1024 * 1024
MAX_BACKOFF: Final = 30.0
TIMEOUT: Final = 30.0


class UplinkRefused(Exception):
    """The parent refused a batch for good (HTTP 403/422)."""


class UplinkDown(Exception):
    """The parent cannot take the batch now (unreachable, 5xx, 401, 429)."""


def ssl_context(config: UplinkConfig) -> ssl.SSLContext | None:
    if not config.url.startswith("https:"):
        return None
    context = ssl.create_default_context(cafile=str(config.ca) if config.ca else None)
    if config.client_cert is not None and config.client_key is not None:
        context.load_cert_chain(str(config.client_cert), str(config.client_key))
    return context


class Forwarder:
    """The uplink of one console (see the module docstring)."""

    def __init__(self, tier: TierConfig, store: Store, state: ConsoleState,
                 orgs: Organizations, notices: NoticeBook) -> None:
        assert tier.uplink is not None
        self.tier = tier
        self.config: UplinkConfig = tier.uplink
        self.store = store
        self.state = state
        self.orgs = orgs
        self.notices = notices
        directory = self.config.spool or data_home() / f"uplink-{tier.org_id}"
        self.spool = Spool(directory)
        self.refused_path = Path(directory) / "refused.jsonl"
        self._context = ssl_context(self.config)
        self._min_rank = SEVERITY_ORDER.index(self.config.min_severity)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_inventory = 0.0
        self._orgs_digest = ""
        self._healthy = True
        self.counters: dict[str, Any] = {
            "alerts_spooled": 0, "records_sent": 0, "batches_sent": 0, "records_refused": 0,
            "notice_steps_pulled": 0, "failures": 0, "last_error": None, "last_delivery": None,
        }

    # -- running ---------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="icswatch-uplink", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.spool.close()

    def status(self) -> dict[str, Any]:
        stats = self.spool.stats
        return {**self.counters, "pending": stats.records_pending,
                "healthy": self._healthy}

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                busy = self.step()
                backoff = 0.5
            except UplinkDown as exc:
                self.counters["failures"] += 1
                self.counters["last_error"] = str(exc)
                if self._healthy:
                    log.warning("uplink %s: %s; records wait in the spool (%d pending)",
                                self.config.url, exc, self.spool.stats.records_pending)
                    self._healthy = False
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            except Exception:  # the thread must outlive a bug in one round
                log.exception("uplink round failed; retrying")
                self._stop.wait(self.config.interval)
                continue
            if not busy:
                self._stop.wait(self.config.interval)

    def step(self) -> bool:
        """One round; True when anything was collected, sent or pulled."""
        collected = self.collect()
        sent = self.drain()
        pulled = self.pull_notices()
        return collected or sent or pulled

    # -- collecting ------------------------------------------------------------

    def _append(self, records: list[dict[str, Any]]) -> None:
        """Spool ``records``; a full spool (the parent away too long) stops
        the round before its cursor moves, so nothing is dropped."""
        try:
            self.spool.append(records)
        except SpoolFull as exc:
            raise UplinkDown(str(exc)) from None

    def collect(self) -> bool:
        return any([self._collect_orgs(), self._collect_alerts(),
                    self._collect_inventory(), self._collect_steps()])

    def _org_records(self) -> list[dict[str, Any]]:
        own = self.orgs.get(self.orgs.own)
        assert own is not None
        found = [own]
        if own.kind == "province":
            found += [o for o in self.orgs.all() if o.kind == "enterprise" and o.parent == own.id]
        return [{"type": "organization", "doc": {k: v for k, v in org.as_dict().items()
                                                  if k != "weight"}} for org in found]

    def _collect_orgs(self) -> bool:
        records = self._org_records()
        digest = json.dumps(records, sort_keys=True)
        if digest == self._orgs_digest:
            return False
        self._append(records)
        self._orgs_digest = digest
        return True

    def _stamped(self, document: dict[str, Any]) -> dict[str, Any]:
        """A document of this enterprise carries its organisation (the
        origin the parent checks); one from below already does."""
        if self.tier.tier == "enterprise" and not document.get("organization"):
            return {**document, "organization": {"id": self.tier.org_id,
                                                 "name": self.tier.name}}
        return document

    def _collect_alerts(self) -> bool:
        marker = self.state.setting("uplink.alerts_marker") or self.store.first_marker()
        alerts, after = self.store.alerts_since(marker, BATCH_RECORDS)
        if after == marker:
            return False
        records = []
        for alert in alerts:
            severity = alert.get("ics", {}).get("alert", {}).get("severity")
            rank = SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else 0
            if rank >= self._min_rank:
                records.append({"type": "alert", "doc": self._stamped(alert)})
        if records:
            self._append(records)
            self.counters["alerts_spooled"] += len(records)
        self.state.set_setting("uplink.alerts_marker", after)
        return True

    def _collect_inventory(self) -> bool:
        now = time.monotonic()
        due = not self._last_inventory or \
            now - self._last_inventory >= self.config.inventory_interval
        if not self.config.inventory or not due:
            return False
        self._last_inventory = now
        records = [{"type": kind, "doc": self._stamped(doc)}
                   for kind in INVENTORY_KINDS for doc in self.store.list_inventory(kind)]
        for start in range(0, len(records), BATCH_RECORDS):
            self._append(records[start:start + BATCH_RECORDS])
        return bool(records)

    def _collect_steps(self) -> bool:
        after = int(self.state.setting("uplink.notice_seq") or 0)
        steps, last = self.notices.steps_to_forward(after)
        if last == after:
            return False
        if steps:
            self._append([{"type": "notice_step", "doc": step} for step in steps])
        self.state.set_setting("uplink.notice_seq", str(last))
        return True

    # -- talking to the parent ---------------------------------------------------

    def _request(self, method: str, path: str, body: bytes | None = None) -> Any:
        request = urllib.request.Request(
            self.config.url + path, data=body, method=method,
            headers={"Authorization": f"Bearer {self.config.token}",
                     "Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT,
                                        context=self._context) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = _detail(exc)
            if exc.code in (403, 422):
                raise UplinkRefused(f"HTTP {exc.code}: {detail}") from None
            if exc.code == 401:
                raise UplinkDown(f"the tier above refused this console's link token "
                                 f"(HTTP 401: {detail})") from None
            raise UplinkDown(f"HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UplinkDown(f"cannot reach {self.config.url}: {reason}") from None

    def drain(self) -> bool:
        """Send spooled batches until the spool is empty; True when any went."""
        sent = False
        while True:
            batch = self.spool.peek(BATCH_RECORDS, BATCH_BYTES)
            if not batch.payloads:
                return sent
            body = b'{"records":[' + b",".join(batch.payloads) + b"]}"
            try:
                self._request("POST", "/api/tier/ingest", body)
            except UplinkRefused as exc:
                self._set_aside(batch.records, str(exc))
            self.spool.ack(batch)
            sent = True
            self.counters["records_sent"] += len(batch)
            self.counters["batches_sent"] += 1
            self.counters["last_delivery"] = time.time()
            if not self._healthy:
                log.warning("uplink %s is back; spool drained", self.config.url)
                self._healthy = True

    def _set_aside(self, records: list[dict[str, Any]], reason: str) -> None:
        self.counters["records_refused"] += len(records)
        log.error("uplink %s refused %d records for good (%s); kept in %s", self.config.url,
                  len(records), reason, self.refused_path)
        with self.refused_path.open("a", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps({"reason": reason, "record": record}) + "\n")

    def pull_notices(self) -> bool:
        cursor = int(self.state.setting("uplink.notice_pull") or 0)
        answer = self._request("GET", f"/api/tier/notices?after={cursor}")
        steps = answer.get("steps") or []
        parent = str(answer.get("from") or "parent")
        applied = 0
        for step in steps:
            try:
                applied += self.notices.apply(step, came_from=parent, from_parent=True)
            except (NoticeError, NoticeForbidden) as exc:
                log.error("notice step %s from %s not applied: %s", step.get("uid"), parent, exc)
        new_cursor = int(answer.get("cursor") or cursor)
        if new_cursor != cursor:
            self.state.set_setting("uplink.notice_pull", str(new_cursor))
        self.counters["notice_steps_pulled"] += applied
        return bool(steps)


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read()).get("detail", exc.reason))
    except (ValueError, OSError, AttributeError):
        return str(exc.reason)
