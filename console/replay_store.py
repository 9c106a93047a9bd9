"""Where `icswatch replay` stores its alerts: the embedded SQLite store, or
Elasticsearch through the spool-backed bulk sink."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from console.errors import UsageError
from console.paths import data_home
from console.stores.base import AlertQuery, Store, StoreError
from console.times import iso
from detectors.alert import Alert, alert_document
from detectors.inventory import MERGERS, Inventory
from sensor.ecs import event_document
from sensor.event import IcsEvent
from sensor.runtime import Stats

if TYPE_CHECKING:
    from console.es_sink import ElasticsearchSink
    from console.stores.sqlite import SqliteStore


class ReplaySink(Protocol):
    def alert(self, alert: Alert) -> None: ...

    def event(self, event: IcsEvent) -> None: ...

    def tick(self) -> None: ...

    def close(self) -> None: ...

    def abandon(self) -> None: ...

    def summary(self) -> str: ...

    def inventory(self, kind: str, documents: list[dict[str, Any]]) -> None: ...


class SqliteSink:
    """Alerts (and, with --store-events, events) into the embedded store in
    batches. Each batch is committed, so `icswatch serve` shows the alerts
    while the replay runs; `close` writes the rest."""

    ALERT_BATCH = 500
    EVENT_BATCH = 5_000
    MAX_DELAY = 1.0  # seconds an alert may wait in the batch (see `tick`)

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.alerts: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.alerts_written = 0
        self.events_written = 0
        self.total = 0
        self.written_at = time.monotonic()

    def alert(self, alert: Alert) -> None:
        self.alerts.append(alert_document(alert))
        if len(self.alerts) >= self.ALERT_BATCH:
            self.write()

    def event(self, event: IcsEvent) -> None:
        self.events.append(event_document(event))
        if len(self.events) >= self.EVENT_BATCH:
            self.write()

    def tick(self) -> None:
        """Called now and then during a replay: no alert waits for long."""
        if self.alerts and time.monotonic() - self.written_at >= self.MAX_DELAY:
            self.write()

    def write(self) -> None:
        if self.alerts:
            self.store.write_alerts(self.alerts)
            self.alerts_written += len(self.alerts)
            self.alerts.clear()
        if self.events:
            self.store.write_events(self.events)
            self.events_written += len(self.events)
            self.events.clear()
        self.store.flush()
        self.written_at = time.monotonic()

    def inventory(self, kind: str, documents: list[dict[str, Any]]) -> None:
        """Assets, communications or sensors, added to what earlier runs
        stored; written before `close`."""
        self.store.write_inventory(kind, merged_inventory(self.store, kind, documents))

    def close(self) -> None:
        try:
            self.write()
            self.total = self.store.count_alerts(AlertQuery())
        finally:
            self.store.close()

    def abandon(self) -> None:
        """The replay stopped on an error: keep what can be kept, report
        nothing new (the first error is the one the user sees)."""
        with contextlib.suppress(StoreError):
            self.close()

    def summary(self) -> str:
        events = f" and {self.events_written} events" if self.events_written else ""
        return (f"  stored: {self.alerts_written} alerts{events} in {self.store.path} "
                f"({self.total} alerts in the store)\n")


class ElasticsearchReplaySink:
    """Alerts into Elasticsearch through the spool: nothing is lost if the
    cluster is down; what is not delivered when the replay ends stays in
    the spool and goes out with the next run."""

    def __init__(self, url: str, spool_dir: Path) -> None:
        # The Elasticsearch client is a heavy import: only when it is used.
        from console.es_sink import ElasticsearchSink
        from console.spool import Spool, SpoolError
        from console.stores.elasticsearch import ElasticsearchStore

        self.url = url
        store = ElasticsearchStore.from_environment(url)
        try:
            spool = Spool(spool_dir)
        except (SpoolError, OSError) as exc:
            raise UsageError(f"spool {spool_dir}: {exc}") from None
        self.sink: ElasticsearchSink = ElasticsearchSink(store, spool,
                                                         prepare=store.install_templates)
        self.delivered = True
        self.pending = 0
        self.inventory_error: str | None = None

    def alert(self, alert: Alert) -> None:
        self.sink.write_alert(alert_document(alert))

    def event(self, event: IcsEvent) -> None:
        self.sink.write_event(event_document(event))

    def tick(self) -> None:
        self.sink.tick()

    def inventory(self, kind: str, documents: list[dict[str, Any]]) -> None:
        """Straight to the cluster, not through the spool: these are
        snapshots the next run writes again in full, not records to keep.
        A cluster that is down costs this snapshot; the summary says so (the
        sink has already logged the outage)."""
        if self.inventory_error is not None:
            return
        store = self.sink.store
        try:
            store.write_inventory(kind, merged_inventory(store, kind, documents))
        except StoreError as exc:
            self.inventory_error = str(exc)

    def close(self) -> None:
        self.delivered = self.sink.close(timeout=60)
        self.pending = self.sink.spool.stats.records_pending

    def abandon(self) -> None:
        from console.spool import SpoolError

        with contextlib.suppress(StoreError, SpoolError, OSError):
            self.close()

    def summary(self) -> str:
        counters = self.sink.counters
        line = (f"  stored: {counters['alerts_spooled']} alerts to {self.url} "
                f"({counters['alerts_indexed']} indexed")
        if counters["alerts_rejected"]:
            line += f", {counters['alerts_rejected']} refused, see {self.sink.rejected_path}"
        if self.pending:
            line += (f"; {self.pending} wait in the spool {self.sink.spool.directory} "
                     "for the cluster")
        line += ")\n"
        if self.inventory_error is not None:
            line += (f"  assets, communication map and sensor record not stored: "
                     f"{self.inventory_error}\n")
        return line


def default_spool() -> Path:
    return data_home() / "spool"


def open_store(store: str | None, spool: str | None) -> ReplaySink | None:
    """The sink for --store: None for "none", Elasticsearch for a URL, else
    the embedded store (default: `default_path()`). An unusable store is bad
    usage: nothing has run yet."""
    if store is not None and store.lower() == "none":
        return None
    from console.stores.sqlite import SqliteStore, default_path

    if store is not None and store.startswith(("http://", "https://")):
        return ElasticsearchReplaySink(store, Path(spool) if spool else default_spool())
    path = Path(store) if store is not None else default_path()
    try:
        return SqliteSink(SqliteStore(path))
    except StoreError as exc:
        hint = "" if store is not None else " (--store none replays without storing)"
        raise UsageError(f"{exc}{hint}") from None


def merged_inventory(store: Store, kind: str,
                     documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """This run's documents folded into the stored ones of the same ids."""
    merge = MERGERS[kind]
    stored = {document["id"]: document for document in store.list_inventory(kind)}
    return [merge(stored.get(document["id"]), document) for document in documents]


def store_inventory(sink: ReplaySink, inventory: Inventory, sensor_name: str, stats: Stats,
                    alerts: int, captures: Sequence[str], kind: str = "replay") -> None:
    """After a replay: the communication map, the assets and this run as a
    sensor record (its statistics are the last run's)."""
    sink.inventory("communications", inventory.communications(iso))
    sink.inventory("assets", inventory.assets(iso))
    now = iso(time.time())
    sink.inventory("sensors", [{
        "id": sensor_name, "name": sensor_name, "kind": kind,
        "first_seen": now, "last_seen": now,
        "stats": {
            "packets": stats.packets, "bytes": stats.bytes, "events": stats.events,
            "alerts": alerts, "malformed": stats.malformed,
            "flows": stats.counters.get("flows", 0),
            "protocols": {name: sum(operations.values())
                          for name, operations in sorted(stats.operations.items())},
            "counters": {name: value for name, value in sorted(stats.counters.items())
                         if value},
        },
        "captures": [Path(path).name for path in captures],
    }])
