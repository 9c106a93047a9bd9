"""The Elasticsearch store: alerts and events in one index per UTC day behind
the ``icswatch-alerts`` / ``icswatch-events`` aliases, installed from the
index templates in ``deploy/elasticsearch/``.

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from elasticsearch import ApiError, Elasticsearch, TransportError
from elasticsearch import ConnectionError as EsConnectionError

from console.stores.base import TOP_FIELDS, AlertQuery, Bucket, Page, StoreError
from console.stores.sqlite import search_terms

TEMPLATES_DIR: Final = Path(__file__).resolve().parents[2] / "deploy" / "elasticsearch"
TEXT_FIELDS: Final = ("rule.name", "message", "ics.alert.title_zh")
TOP_FIELD_PATHS: Final = {name: name for name in TOP_FIELDS}


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
    ) -> None:
        self.url = url
        self.prefix = prefix
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

    # -- set-up ------------------------------------------------------------

    def install_templates(self) -> None:
        """Install (or update) the index templates; idempotent."""
        for kind in ("alerts", "events"):
            body = json.loads((TEMPLATES_DIR / f"{kind}-template.json").read_text())
            body["index_patterns"] = [f"{self.prefix}-{kind}-*"]
            # Operators' own settings (an ILM policy, replicas) live in the
            # optional component template "<prefix>-<kind>@custom".
            custom = f"{self.prefix}-{kind}@custom"
            body["composed_of"] = [custom]
            body["ignore_missing_component_templates"] = [custom]
            body["template"]["aliases"] = {f"{self.prefix}-{kind}": {}}
            self._call(lambda b=body, k=kind: self.client.indices.put_index_template(
                name=f"{self.prefix}-{k}", **b))

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
        """Index ``documents`` (kind "alerts" or "events") by their
        ``event.id``; returns the documents refused for good. Transport
        failures and overload raise `StoreError` (the caller keeps the batch
        and retries)."""
        if not documents:
            return []
        lines: list[bytes] = []
        for document in documents:
            header: dict[str, Any] = {"_index": self.index_name(kind, document)}
            doc_id = document.get("event", {}).get("id")
            if doc_id:
                header["_id"] = doc_id
            lines.append(_dumps({"index": header}))
            lines.append(_dumps(document))
        failures = self.bulk_ndjson(lines)
        return [Rejected(documents[i], reason) for i, reason in failures]

    def bulk_ndjson(self, lines: Sequence[bytes]) -> list[tuple[int, str]]:
        """Send pre-encoded bulk lines (action, document, action, document…);
        returns (document number, reason) of documents refused for good."""
        body = b"\n".join(lines) + b"\n"
        response = self._call(lambda: self.client.bulk(
            body=body,  # type: ignore[arg-type]  # pre-encoded NDJSON passes through
            filter_path="errors,items.*.status,items.*.error"))
        if not response.get("errors"):
            return []
        rejected: list[tuple[int, str]] = []
        retry = 0
        for number, item in enumerate(response["items"]):
            result = item.get("index") or item.get("create") or {}
            status = result.get("status", 200)
            if status < 300:
                continue
            error = result.get("error", {})
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
        documents = [with_status(a) for a in alerts]
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
        ):
            if given:
                clauses.append({"terms": {field: _values(given)}})
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
        return Page([hit["_source"] for hit in hits], total, cursor)

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
        return dict(hits[0]["_source"]) if hits else None

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

    def top(self, query: AlertQuery, field: str, size: int = 10) -> list[tuple[str, int]]:
        if field not in TOP_FIELDS:
            raise ValueError(f"cannot aggregate on {field!r}; one of {sorted(TOP_FIELDS)}")
        if size <= 0:
            return []
        response = self._call(lambda: self._search(
            query=self._filter(query), size=0,
            aggs={"top": {"terms": {"field": TOP_FIELD_PATHS[field], "size": size,
                                    "order": [{"_count": "desc"}, {"_key": "asc"}]}}}))
        buckets = response.get("aggregations", {}).get("top", {}).get("buckets", [])
        return [(str(b["key"]), int(b["doc_count"])) for b in buckets]


def _values(given: Sequence[str] | str) -> list[str]:
    """A lone string is one value, not a sequence of letters."""
    return [given] if isinstance(given, str) else list(given)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def with_status(alert: dict[str, Any]) -> dict[str, Any]:
    """The alert with ``ics.alert.status`` ("open" unless triage set it).
    Only the touched dicts are copied."""
    ics = alert.get("ics", {}).get("alert", {})
    if "status" in ics:
        return alert
    document = dict(alert)
    document["ics"] = dict(document.get("ics", {}))
    document["ics"]["alert"] = {**ics, "status": "open"}
    return document


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
