"""The Elasticsearch store: alerts and events in one index per UTC day behind
the ``icswatch-alerts`` / ``icswatch-events`` aliases, and one index per kind
of inventory document (``icswatch-assets``, ``icswatch-communications``,
``icswatch-sensors``), installed from the index templates in
``deploy/elasticsearch/``.

Alerts are written with the bulk ``create`` action under their ``event.id``:
the first write of an alert wins, and writing it again (a retried bulk, a
second replay) is answered "version conflict", which counts as stored, so
a re-write never resets triage nor ``event.ingested``. Triage
(`ElasticsearchStore.set_triage`) is a partial-document update of the one
daily index that holds the alert, refreshed at once.

The live feed (`ElasticsearchStore.alerts_since`) follows ``event.ingested``,
stamped by the writer just before its bulk request, then ``event.id``, with
``search_after``. A document becomes searchable only after its bulk request
and the next refresh, so alerts stamped within the last ``live_delay``
seconds are left for the next call: otherwise a marker could pass a
document still in flight (parallel bulk requests, several sensors) and skip
it for good. The delay must exceed the writers' bulk time plus the refresh
interval plus any lag of a writer's clock behind the console's.

Only core server features are used (index templates, aliases, bulk, search
with aggregations), so the same code runs on a production cluster and on
Elastic's test build that the test suite starts. Data streams and ILM are
production options whose files ship in ``deploy/elasticsearch/``.

Queries mirror `console.stores.sqlite.SqliteStore` exactly: the console gets
the same numbers from either store (tests compare them).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from elasticsearch import ApiError, Elasticsearch, NotFoundError, TransportError
from elasticsearch import ConnectionError as EsConnectionError

from console.stores import samples
from console.stores.base import (
    INVENTORY_KINDS,
    TOP_FIELDS,
    AlertQuery,
    Bucket,
    Page,
    StoreError,
    check_inventory,
    iso_time,
    triage_fields,
)
from console.stores.sqlite import search_terms

TEMPLATES_DIR: Final = Path(__file__).resolve().parents[2] / "deploy" / "elasticsearch"
TEXT_FIELDS: Final = ("rule.name", "message", "ics.alert.title_zh")
TOP_FIELD_PATHS: Final = {name: name for name in TOP_FIELDS}
# Kinds of document in one index per UTC day behind an alias.
DAILY_KINDS: Final = ("alerts", "events")
# Alert fields added to the template since its first version: put into the
# mapping of daily indices that already exist (`install_templates`).
ADDED_ALERT_FIELDS: Final = ("event.ingested", "ics.alert.assignee", "ics.alert.resolution",
                             "ics.alert.updated")
# Seconds an alert's ``event.ingested`` must be old before the live feed
# returns it (module docstring).
LIVE_DELAY: Final = 3.0
_SINCE_SORT: Final = [
    {"event.ingested": {"order": "asc", "unmapped_type": "date_nanos"}},
    {"event.id": {"order": "asc", "unmapped_type": "keyword"}},
]
# What a bulk ``create`` of a document already stored is answered (HTTP 409).
_CONFLICT: Final = "version_conflict_engine_exception"


class Rejected:
    """A document the cluster refused for good (mapping conflict, bad
    value): retrying cannot help, so it is set aside with the reason."""

    __slots__ = ("document", "reason")

    def __init__(self, document: dict[str, Any], reason: str) -> None:
        self.document = document
        self.reason = reason


def _day(document: dict[str, Any]) -> str:
    """``YYYY.MM.DD`` of the document's @timestamp (UTC, ISO 8601)."""
    stamp = str(document.get("@timestamp", ""))
    return f"{stamp[0:4]}.{stamp[5:7]}.{stamp[8:10]}" if len(stamp) >= 10 else "undated"


def _iso(epoch: float) -> str:
    return f"{int(epoch * 1000)}"


# The client's transport logs a warning on every failed attempt; the store
# and the sink report an outage once, in their own words.
logging.getLogger("elastic_transport").setLevel(logging.ERROR)


class ElasticsearchStore:
    """Alerts and events in Elasticsearch. Connection problems raise
    `StoreError` with one line naming the cluster and the cause."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "icswatch",
        username: str | None = None,
        password: str | None = None,
        api_key: str | None = None,
        ca_certs: str | None = None,
        verify_certs: bool = True,
        request_timeout: float = 10.0,
        client: Elasticsearch | None = None,
        live_delay: float = LIVE_DELAY,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.live_delay = live_delay
        # Inventory kinds whose template this object has installed.
        self._inventory_ready: set[str] = set()
        self.alerts_alias = f"{prefix}-alerts"
        self.events_alias = f"{prefix}-events"
        auth: dict[str, Any] = {}
        if username is not None:
            auth["basic_auth"] = (username, password or "")
        if api_key is not None:
            auth["api_key"] = api_key
        if url.startswith("https"):
            auth["verify_certs"] = verify_certs
            if ca_certs is not None:
                auth["ca_certs"] = ca_certs
        # Several nodes may be given, comma-separated: requests go round the
        # live ones and a dead node is skipped for a while.
        hosts = [host.strip() for host in url.split(",") if host.strip()]
        self.client = client or Elasticsearch(
            hosts, request_timeout=request_timeout, max_retries=len(hosts) - 1,
            retry_on_timeout=False, **auth
        )

    @classmethod
    def from_environment(cls, url: str) -> ElasticsearchStore:
        """The store for ``url`` with the credentials the operator gives in
        the environment, never on the command line: ICSWATCH_ES_USERNAME and
        _PASSWORD, or ICSWATCH_ES_API_KEY, and a CA file in
        ICSWATCH_ES_CA_CERTS."""
        return cls(url, username=os.environ.get("ICSWATCH_ES_USERNAME"),
                   password=os.environ.get("ICSWATCH_ES_PASSWORD"),
                   api_key=os.environ.get("ICSWATCH_ES_API_KEY"),
                   ca_certs=os.environ.get("ICSWATCH_ES_CA_CERTS"))

    # -- set-up ------------------------------------------------------------

    def install_templates(self) -> None:
        """Install (or update) the index templates; idempotent. Daily alert
        indices that already exist get the fields added to the template
        since they were created (alerts written before are not reindexed:
        they have no ``event.ingested``, and their triage fields become
        searchable when triage next updates them)."""
        for kind in (*DAILY_KINDS, *INVENTORY_KINDS):
            self._install_template(kind)
        properties = _template("alerts")["template"]["mappings"]["properties"]
        added: dict[str, Any] = {}
        for path in ADDED_ALERT_FIELDS:
            *parents, name = path.split(".")
            source, target = properties, added
            for parent in parents:
                source = source[parent]["properties"]
                target = target.setdefault(parent, {}).setdefault("properties", {})
            target[name] = source[name]
        self._call(lambda: self.client.indices.put_mapping(
            index=f"{self.prefix}-alerts-*", properties=added, allow_no_indices=True,
            ignore_unavailable=True))

    def _install_template(self, kind: str) -> None:
        """The template of ``kind``, named ``<prefix>-<kind>``: daily indices
        ``<prefix>-<kind>-*`` behind the alias ``<prefix>-<kind>``, or for
        inventory the one index ``<prefix>-<kind>``."""
        body = _template(kind)
        name = f"{self.prefix}-{kind}"
        if kind in DAILY_KINDS:
            body["index_patterns"] = [f"{name}-*"]
            body["template"]["aliases"] = {name: {}}
        else:
            body["index_patterns"] = [name]
        # Operators' own settings (an ILM policy, replicas) live in the
        # optional component template "<prefix>-<kind>@custom".
        custom = f"{name}@custom"
        body["composed_of"] = [custom]
        body["ignore_missing_component_templates"] = [custom]
        self._call(lambda: self.client.indices.put_index_template(name=name, **body))

    def _call(self, action: Any) -> Any:
        try:
            return action()
        except EsConnectionError as exc:
            raise StoreError(f"Elasticsearch at {self.url} is unreachable: "
                             f"{_first_line(exc)}") from None
        except ApiError as exc:
            if exc.meta.status in (401, 403):
                raise StoreError(f"Elasticsearch at {self.url} refused the credentials "
                                 f"(HTTP {exc.meta.status})") from None
            raise StoreError(f"Elasticsearch at {self.url}: HTTP {exc.meta.status} "
                             f"{_first_line(exc)}") from None
        except TransportError as exc:
            raise StoreError(f"Elasticsearch at {self.url}: {_first_line(exc)}") from None

    # -- writing -----------------------------------------------------------

    def index_name(self, kind: str, document: dict[str, Any]) -> str:
        return f"{self.prefix}-{kind}-{_day(document)}"

    def bulk(self, kind: str, documents: Sequence[dict[str, Any]]) -> list[Rejected]:
        """Write ``documents`` (kind "alerts" or "events") by their
        ``event.id``, alerts with ``create`` (an alert already stored is
        left as it is); returns the documents refused for good. Transport
        failures and overload raise `StoreError` (the caller keeps the batch
        and retries)."""
        if not documents:
            return []
        action = "create" if kind == "alerts" else "index"
        lines: list[bytes] = []
        for document in documents:
            header: dict[str, Any] = {"_index": self.index_name(kind, document)}
            doc_id = document.get("event", {}).get("id")
            if doc_id:
                header["_id"] = doc_id
            lines.append(_dumps({action: header}))
            lines.append(_dumps(document))
        failures = self.bulk_ndjson(lines)
        return [Rejected(documents[i], reason) for i, reason in failures]

    def bulk_ndjson(
        self, lines: Sequence[bytes], *, refresh: bool = False
    ) -> list[tuple[int, str]]:
        """Send pre-encoded bulk lines (action, document, action, document…);
        returns (document number, reason) of documents refused for good. A
        ``create`` of a document already there counts as written."""
        body = b"\n".join(lines) + b"\n"
        response = self._call(lambda: self.client.bulk(
            body=body,  # type: ignore[arg-type]  # pre-encoded NDJSON passes through
            filter_path="errors,items.*.status,items.*.error",
            refresh=refresh))
        if not response.get("errors"):
            return []
        rejected: list[tuple[int, str]] = []
        retry = 0
        for number, item in enumerate(response["items"]):
            created = item.get("create")
            result = created or item.get("index") or {}
            status = result.get("status", 200)
            if status < 300:
                continue
            error = result.get("error", {})
            if created and status == 409 and error.get("type") == _CONFLICT:
                continue  # stored before: a retry, a second replay
            reason = f"{error.get('type', 'error')}: {error.get('reason', '')}".strip()
            if status == 429 or status >= 500:
                retry += 1
            else:
                rejected.append((number, f"HTTP {status} {reason}"))
        if retry:
            raise StoreError(f"Elasticsearch at {self.url} is overloaded: "
                             f"{retry} documents not indexed (HTTP 429/5xx)")
        return rejected

    def write_alerts(self, alerts: Sequence[dict[str, Any]]) -> None:
        """Store alerts not stored yet (an alert already stored keeps its
        document, triage and ``event.ingested``)."""
        ingested = iso_time(time.time())
        documents = [prepared_alert(a, ingested) for a in alerts]
        rejected = self.bulk("alerts", documents)
        if rejected:
            raise StoreError(f"{len(rejected)} alerts refused by Elasticsearch: "
                             f"{rejected[0].reason}")

    def write_events(self, events: Sequence[dict[str, Any]]) -> None:
        rejected = self.bulk("events", events)
        if rejected:
            raise StoreError(f"{len(rejected)} events refused by Elasticsearch: "
                             f"{rejected[0].reason}")

    def flush(self) -> None:
        self._call(lambda: self.client.indices.refresh(
            index=f"{self.prefix}-*", ignore_unavailable=True, allow_no_indices=True))

    def close(self) -> None:
        self.client.close()

    # -- queries -----------------------------------------------------------

    def _filter(self, query: AlertQuery) -> dict[str, Any]:
        clauses: list[dict[str, Any]] = []
        if query.start is not None or query.end is not None:
            bounds: dict[str, Any] = {"format": "epoch_millis"}
            if query.start is not None:
                bounds["gte"] = _iso(query.start)
            if query.end is not None:
                bounds["lt"] = _iso(query.end)
            clauses.append({"range": {"@timestamp": bounds}})
        for field, given in (
            ("ics.alert.severity", query.severities),
            ("network.protocol", query.protocols),
            ("rule.id", query.rule_ids),
            ("threat.technique.id", query.techniques),
            ("organization.id", query.organizations),
            ("ics.alert.status", query.statuses),
            ("ics.alert.assignee", query.assignees),
        ):
            if given:
                clauses.append({"terms": {field: _values(given)}})
        if query.scope is not None:
            # What the reader may see at all (their organisations): an empty
            # scope matches nothing, unlike an empty filter.
            clauses.append({"terms": {"organization.id": list(query.scope)}})
        if query.assets:
            assets = _values(query.assets)
            clauses.append({"bool": {"minimum_should_match": 1, "should": [
                {"terms": {"source.ip": assets}},
                {"terms": {"destination.ip": assets}},
            ]}})
        body: dict[str, Any] = {"bool": {"filter": clauses}}
        if query.text:
            # The terms are cut client-side, as the embedded store cuts them,
            # so both stores agree: every term must appear as a phrase in one
            # of the text fields.
            must = [
                {"multi_match": {"query": " ".join(tokens), "fields": list(TEXT_FIELDS),
                                 "type": "phrase"}}
                for tokens in search_terms(query.text)
            ]
            if must:
                body["bool"]["must"] = must
        return body

    def _search(self, **kwargs: Any) -> Any:
        try:
            return self.client.search(index=self.alerts_alias, ignore_unavailable=True,
                                      allow_no_indices=True, **kwargs)
        except ApiError as exc:
            if exc.meta.status == 404:
                return {"hits": {"hits": [], "total": {"value": 0}}, "aggregations": {}}
            raise

    def search_alerts(self, query: AlertQuery) -> Page:
        """One page, ordered by @timestamp then event.id; one hit more than
        the page is fetched to know whether another page follows."""
        order = "desc" if query.newest_first else "asc"
        kwargs: dict[str, Any] = {
            "query": self._filter(query),
            "sort": [{"@timestamp": order}, {"event.id": order}],
            "size": query.size + 1 if query.size > 0 else 0,
            "track_total_hits": True,
        }
        if query.cursor:
            kwargs["search_after"] = _decode_cursor(query.cursor, order)
        response = self._call(lambda: self._search(**kwargs))
        hits = response["hits"]["hits"]
        total = int(response["hits"]["total"]["value"])
        cursor = None
        if len(hits) > query.size > 0:
            hits = hits[:query.size]
            cursor = _encode_cursor(hits[-1]["sort"], order)
        return Page([_stored(hit["_source"]) for hit in hits], total, cursor)

    def count_alerts(self, query: AlertQuery) -> int:
        try:
            response = self._call(lambda: self.client.count(
                index=self.alerts_alias, query=self._filter(query), ignore_unavailable=True,
                allow_no_indices=True))
        except StoreError as exc:
            if "404" in str(exc):
                return 0
            raise
        return int(response["count"])

    def get_alert(self, alert_id: str) -> dict[str, Any] | None:
        response = self._call(lambda: self._search(query={"ids": {"values": [alert_id]}},
                                                   size=1))
        hits = response["hits"]["hits"]
        return _stored(hits[0]["_source"]) if hits else None

    def set_triage(
        self, alert_id: str, *, status: str | None = None, assignee: str | None = None,
        resolution: str | None = None, updated: float,
    ) -> dict[str, Any] | None:
        """A partial-document update of the alert in its daily index (found
        by a search: the alias spans many), refreshed before it returns."""
        fields = triage_fields(status, assignee, resolution, updated)
        response = self._call(lambda: self._search(
            query={"ids": {"values": [alert_id]}}, size=1, source=False))
        hits = response["hits"]["hits"]
        if not hits:
            return None
        index = hits[0]["_index"]

        def update() -> Any:
            try:
                return self.client.update(
                    index=index, id=alert_id, doc={"ics": {"alert": fields}}, refresh=True,
                    source=True, retry_on_conflict=3)
            except NotFoundError:
                return None  # deleted meanwhile

        result = self._call(update)
        if result is None:
            return None
        source = (result.get("get") or {}).get("_source")
        return _stored(source) if source is not None else self.get_alert(alert_id)

    def first_marker(self) -> str:
        return _encode_marker([0, ""])

    def alerts_since(
        self, marker: str | None, size: int = 100
    ) -> tuple[list[dict[str, Any]], str]:
        """Alerts by (``event.ingested``, ``event.id``) after ``marker``,
        up to ``live_delay`` seconds ago (module docstring). The marker of
        now is that moment; alerts without ``event.ingested`` (stored by an
        older icswatch) are never in the feed."""
        cutoff = iso_time(time.time() - self.live_delay)
        if marker is None:
            return [], _encode_marker([_nanos(cutoff), ""])
        after = _decode_marker(marker)
        if size <= 0:
            return [], marker
        response = self._call(lambda: self._search(
            query={"range": {"event.ingested": {"lte": cutoff}}}, sort=_SINCE_SORT,
            search_after=after, size=size, track_total_hits=False))
        hits = response["hits"]["hits"]
        if not hits:
            return [], marker
        return [_stored(hit["_source"]) for hit in hits], _encode_marker(hits[-1]["sort"])

    # -- inventory ---------------------------------------------------------

    def inventory_index(self, kind: str) -> str:
        check_inventory(kind)
        return f"{self.prefix}-{kind}"

    def write_inventory(self, kind: str, documents: Sequence[dict[str, Any]]) -> None:
        """Index the documents by ``id`` (whole-document replace) and
        refresh. The kind's index template is installed first, once per
        store object, so the index never gets a guessed mapping."""
        check_inventory(kind, documents)
        if not documents:
            return
        if kind not in self._inventory_ready:
            self._install_template(kind)
            self._inventory_ready.add(kind)
        index = self.inventory_index(kind)
        lines: list[bytes] = []
        for document in documents:
            lines.append(_dumps({"index": {"_index": index, "_id": document["id"]}}))
            lines.append(_dumps(document))
        rejected = self.bulk_ndjson(lines, refresh=True)
        if rejected:
            raise StoreError(f"{len(rejected)} {kind} refused by Elasticsearch: "
                             f"{rejected[0][1]}")

    def list_inventory(self, kind: str, size: int = 10_000) -> list[dict[str, Any]]:
        """By ``id``, in pages of at most 1000 (``search_after``)."""
        index = self.inventory_index(kind)
        documents: list[dict[str, Any]] = []
        after: list[Any] | None = None
        while len(documents) < size:
            page = min(size - len(documents), 1000)
            kwargs: dict[str, Any] = {
                "index": index, "size": page, "track_total_hits": False,
                "sort": [{"id": {"order": "asc", "unmapped_type": "keyword"}}],
                "ignore_unavailable": True, "allow_no_indices": True,
            }
            if after is not None:
                kwargs["search_after"] = after
            response = self._call(lambda k=kwargs: self.client.search(**k))
            hits = response["hits"]["hits"]
            documents.extend(hit["_source"] for hit in hits)
            if len(hits) < page:
                break
            after = hits[-1]["sort"]
        return documents

    def get_inventory(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        index = self.inventory_index(kind)
        if not doc_id:
            return None

        def get() -> Any:
            try:
                return self.client.get(index=index, id=doc_id)
            except NotFoundError:
                return None  # no such document, or no index yet

        response = self._call(get)
        return dict(response["_source"]) if response is not None else None

    def histogram(self, query: AlertQuery, interval: float) -> list[Bucket]:
        millis = round(interval * 1000)
        if millis < 1:
            raise ValueError("the histogram interval must be at least a millisecond here")
        response = self._call(lambda: self._search(
            query=self._filter(query), size=0,
            aggs={"over_time": {
                "date_histogram": {"field": "@timestamp", "fixed_interval": f"{millis}ms",
                                   "min_doc_count": 1},
                "aggs": {"severity": {"terms": {"field": "ics.alert.severity", "size": 10}}},
            }}))
        buckets = response.get("aggregations", {}).get("over_time", {}).get("buckets", [])
        return [
            Bucket(bucket["key"] / 1000.0,
                   {b["key"]: b["doc_count"] for b in bucket["severity"]["buckets"]})
            for bucket in buckets
        ]

    def time_span(self, query: AlertQuery) -> tuple[float, float] | None:
        response = self._call(lambda: self._search(
            query=self._filter(query), size=0, track_total_hits=False,
            aggs={"first": {"min": {"field": "@timestamp"}},
                  "last": {"max": {"field": "@timestamp"}}}))
        aggregations = response.get("aggregations", {})
        first = aggregations.get("first", {}).get("value")
        last = aggregations.get("last", {}).get("value")
        return None if first is None or last is None else (first / 1000.0, last / 1000.0)

    def top(self, query: AlertQuery, field: str, size: int = 10) -> list[tuple[str, int]]:
        return self.top_many(query, {field: size})[field]

    def top_many(self, query: AlertQuery,
                 sizes: Mapping[str, int]) -> dict[str, list[tuple[str, int]]]:
        """Several top-N lists from one search: one pass over the matches."""
        for field in sizes:
            if field not in TOP_FIELDS:
                raise ValueError(f"cannot aggregate on {field!r}; one of {sorted(TOP_FIELDS)}")
        wanted = {field: size for field, size in sizes.items() if size > 0}
        if not wanted:
            return {field: [] for field in sizes}
        names = {field: f"top{number}" for number, field in enumerate(wanted)}
        response = self._call(lambda: self._search(
            query=self._filter(query), size=0, track_total_hits=False,
            aggs={names[field]: {"terms": {"field": TOP_FIELD_PATHS[field], "size": size,
                                           "order": [{"_count": "desc"}, {"_key": "asc"}]}}
                  for field, size in wanted.items()}))
        aggregations = response.get("aggregations", {})
        return {field: [(str(b["key"]), int(b["doc_count"]))
                        for b in aggregations.get(names[field], {}).get("buckets", [])]
                if field in names else [] for field in sizes}


def _values(given: Sequence[str] | str) -> list[str]:
    """A lone string is one value, not a sequence of letters."""
    return [given] if isinstance(given, str) else list(given)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def prepared_alert(alert: dict[str, Any], ingested: str) -> dict[str, Any]:
    """The alert as stored: ``event.ingested`` set, as the first key of
    ``event``, itself the first key (the sink splices the delivery time into
    the encoded document there), and ``ics.alert.status`` "open" unless
    given; sample events leave out the flow fields the alert already says
    (`samples.compact`). Only the touched dicts are copied."""
    stamped: dict[str, Any] = {"ingested": ingested}
    event = alert.get("event")
    if isinstance(event, dict):
        stamped.update(event)  # an "ingested" in it keeps its first place...
        stamped["ingested"] = ingested  # ...and takes this value
    document: dict[str, Any] = {"event": stamped}
    document.update(alert)
    document["event"] = stamped
    ics = alert.get("ics", {}).get("alert", {})
    if "status" not in ics:
        document["ics"] = dict(document.get("ics", {}))
        document["ics"]["alert"] = {**ics, "status": "open"}
    return samples.compact(document)


def _stored(source: dict[str, Any]) -> dict[str, Any]:
    """A stored alert as the store returns it: a triage field cleared by a
    partial update (null) is left out, as it is when never set, and sample
    events are whole again."""
    alert = source.get("ics", {}).get("alert")
    if isinstance(alert, dict) and (
            alert.get("assignee", "") is None or alert.get("resolution", "") is None):
        source = {**source, "ics": {**source["ics"], "alert": {
            key: value for key, value in alert.items()
            if value is not None or key not in ("assignee", "resolution")}}}
    return samples.expand(source)


def _template(kind: str) -> dict[str, Any]:
    """The shipped index template of ``kind`` (deploy/elasticsearch/)."""
    path = TEMPLATES_DIR / f"{kind}-template.json"
    body: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return body


def _nanos(iso: str) -> int:
    """Nanoseconds since the epoch of an `iso_time` string (the sort value
    of a ``date_nanos`` field)."""
    seconds = datetime.fromisoformat(iso[:19] + "+00:00").timestamp()
    return int(seconds) * 1_000_000_000 + int(iso[20:26]) * 1000


def _encode_marker(sort: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(["since", sort]).encode()).decode()


def _decode_marker(marker: str) -> list[Any]:
    try:
        tag, values = json.loads(base64.urlsafe_b64decode(marker.encode()))
    except (ValueError, TypeError):
        raise ValueError("not a marker this store returned") from None
    if (tag != "since" or not isinstance(values, list) or len(values) != 2
            or not isinstance(values[0], int) or not isinstance(values[1], str)):
        raise ValueError("not a marker this store returned")
    return values


def _encode_cursor(sort: list[Any], order: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([order, sort]).encode()).decode()


def _decode_cursor(cursor: str, order: str) -> list[Any]:
    try:
        given_order, values = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError):
        raise ValueError("not a cursor this store returned") from None
    if not isinstance(values, list) or given_order != order:
        raise ValueError("not a cursor for this query (its sort order differs)")
    return values


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
