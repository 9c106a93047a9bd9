"""The embedded store: one SQLite file, for one machine with no services.

`icswatch replay` writes its alerts here by default and `icswatch serve`
reads them, so a replay shows in the console at once with nothing to install.
It answers the console's queries (`console.stores.base.Store`) with the same
numbers as the Elasticsearch store for the same documents.

The file
--------
`default_path()`: ``$ICSWATCH_DB`` if set, else
``$XDG_DATA_HOME/icswatch/icswatch.db`` (``~/.local/share/icswatch/icswatch.db``
when XDG_DATA_HOME is unset); the folder is created. The database runs in WAL
mode with ``synchronous=NORMAL``: readers in other threads or processes (the
web console) never block the writer (a replay) and see what it has flushed; a
power cut may lose the last commits, never the file. Table
``icswatch_schema`` records the schema version; a file of an older schema is
upgraded in place when opened, in one transaction (from schema 1, columns
and tables added: alerts stored before have no ``event.ingested``; from
schema 2, the alerts table is rebuilt without its documents, which move to
``alert_docs``: a minute or so per million alerts, once); a file from a newer
icswatch, a database of another program, or a file that is not a database
is refused with a one-line `StoreError`.

Alerts are keyed by ``event.id``: writing an alert again (a second replay, a
retry) updates its row in place, so the store never holds it twice. Triage
lives in columns of its own, set when the alert is first written (from the
document's ``ics.alert`` fields; status "open" unless given), changed by
`SqliteStore.set_triage`, kept across rewrites and laid over each document
read as ``ics.alert.status``, ``assignee``, ``resolution`` and ``updated``
(the last three only when set). So is the time the alert was first
written, returned as ``event.ingested``. Queries read indexed columns (time,
severity, rule, protocol, addresses, organization, status, assignee) and a
child table of technique ids; the document itself is stored as JSON,
encoded once, in table ``alert_docs`` under the alert's rowid, so that the
alert rows the queries visit stay small (a few hundred bytes, not ~3 KB)
and documents are read only for the alerts returned (a page's keys are
found and sorted first, then its documents read).

`SqliteStore.alerts_since` follows the rowid, which grows in commit order
(writers take the write lock for their whole transaction) and is kept by
a rewrite. Inventory documents (assets, communications, sensors) are rows
of table ``inventory`` keyed by (kind, id).

Time is the alert's ``@timestamp`` (when it was last seen, ``event.end``) as
epoch seconds with microseconds; ``AlertQuery.start``/``end`` and the
histogram use it. Pages are sorted on (``@timestamp``, ``event.id``) and the
cursor is the last key shown (keyset paging, as Elasticsearch's
``search_after`` on the same two fields): while alerts are being written,
paging never repeats an alert nor skips one that was there when it began.

Full-text search (``AlertQuery.text``)
--------------------------------------
Over ``rule.name``, ``message`` and ``ics.alert.title_zh``, with the
semantics of Elasticsearch's standard analyzer, word for word
(`search_terms`):

* the text is cut into *terms*: runs of letters, digits and ``_``, joined
  across ``.`` or an apostrophe between two of them, across ``,``/``;``
  between two digits (``10.0.0.20``, ``write_single_register``, ``don't``
  and ``1,000`` are one term each; ``ICSW-MODBUS-001`` is three), lower-cased;
* a CJK ideograph (or a hiragana character) is a token by itself, as the
  standard tokenizer makes it, so the term ``写操作`` is the three tokens
  写 操 作;
* an alert matches when **every** term of the query appears in at least one
  of the three fields, its tokens adjacent and in order (``写操作`` matches
  "非授权主机发起Modbus写操作" but not "写入…操作"); words are whole
  (``write`` does not match ``rewrite``), case does not matter;
* a text with no term (empty, punctuation only) filters nothing.

The Elasticsearch store gets the same answers with the ``standard`` analyzer
on the three fields and, for each term of `search_terms`, a ``must`` clause
``multi_match {query: term, type: phrase, fields: [rule.name, message,
ics.alert.title_zh]}``.

The index is an FTS5 table (``unicode61`` tokenizer over the tokens this
module has already cut, so SQLite and Python cannot disagree on word
boundaries — FTS5's own tokenizers do not split Chinese, and ``trigram``
matches inside words and cannot look up one- or two-character terms such as
写入). Where the sqlite3 module lacks FTS5, the same token text is searched
with ``instr()`` instead: the same answers, read by a scan.

Threads: one connection per store, shared by the threads of its process
under a lock; other processes open their own store on the same file.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import ipaddress
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from console.paths import data_home
from console.stores.base import (
    TOP_FIELDS,
    AlertQuery,
    Bucket,
    Page,
    StoreError,
    check_inventory,
    iso_time,
    triage_fields,
)

# 1: alerts, techniques, events. 2: triage columns (assignee, resolution,
# updated), ingested, the inventory table. 3: the documents out of the alert
# rows, into table alert_docs; index alerts_time_severity.
SCHEMA_VERSION: Final = 3
DEFAULT_STATUS: Final = "open"
MEMORY: Final = ":memory:"

# Columns the queries filter and aggregate on, by ECS name.
_COLUMNS: Final = {
    "rule.id": "a.rule_id",
    "source.ip": "a.source_ip",
    "destination.ip": "a.destination_ip",
    "network.protocol": "a.protocol",
    "ics.alert.severity": "a.severity",
    "organization.id": "a.organization",
    "ics.alert.status": "a.status",
    "ics.alert.assignee": "a.assignee",
}
_IP_FIELDS: Final = frozenset({"source.ip", "destination.ip"})

# The token text is already cut into words; FTS5 must keep them whole.
_FTS_TOKENIZER = "unicode61 remove_diacritics 0 tokenchars '._''\u2019,;'"

_INVENTORY_TABLE: Final = """CREATE TABLE inventory (
        kind TEXT NOT NULL,               -- assets, communications, sensors
        id TEXT NOT NULL,
        doc TEXT NOT NULL,                -- JSON
        PRIMARY KEY (kind, id)
    ) WITHOUT ROWID"""
# The alert rows hold only what queries filter, sort and count on (a few
# hundred bytes); the document (~3 KB) is in alert_docs under the same pk,
# read for the alerts a caller gets back and for no other.
_ALERTS_TABLE: Final = """CREATE TABLE {name} (
        pk INTEGER PRIMARY KEY,           -- stable rowid for the text index
        id TEXT NOT NULL UNIQUE,          -- event.id
        ts REAL NOT NULL,                 -- @timestamp, epoch seconds
        severity TEXT NOT NULL,           -- ics.alert.severity
        rule_id TEXT,
        protocol TEXT,
        source_ip TEXT,
        destination_ip TEXT,
        organization TEXT,
        status TEXT NOT NULL DEFAULT 'open',
        text_name TEXT NOT NULL,          -- search tokens, see search_terms()
        text_message TEXT NOT NULL,
        text_title TEXT NOT NULL,
        assignee TEXT,                    -- triage, kept across rewrites
        resolution TEXT,
        updated TEXT,                     -- ISO 8601 of the last triage
        ingested REAL                     -- when first written (epoch seconds)
    )"""
_ALERT_COLUMNS: Final = (
    "pk, id, ts, severity, rule_id, protocol, source_ip, destination_ip, organization, "
    "status, text_name, text_message, text_title, assignee, resolution, updated, ingested")
_ALERT_DOCS_TABLE: Final = """CREATE TABLE alert_docs (
        pk INTEGER PRIMARY KEY,           -- alerts.pk
        doc TEXT NOT NULL                 -- the ECS document as JSON
    )"""
_ALERT_INDEXES: Final = (
    "CREATE INDEX alerts_time ON alerts (ts, id)",
    # Covers the histogram (time range, count by severity).
    "CREATE INDEX alerts_time_severity ON alerts (ts, severity)",
    "CREATE INDEX alerts_severity ON alerts (severity, ts)",
    "CREATE INDEX alerts_rule ON alerts (rule_id, ts)",
    "CREATE INDEX alerts_protocol ON alerts (protocol, ts)",
    "CREATE INDEX alerts_source ON alerts (source_ip, ts)",
    "CREATE INDEX alerts_destination ON alerts (destination_ip, ts)",
    "CREATE INDEX alerts_organization ON alerts (organization, ts)",
    "CREATE INDEX alerts_status ON alerts (status, ts)",
    "CREATE INDEX alerts_assignee ON alerts (assignee, ts)",
)
_SCHEMA: Final = (
    _ALERTS_TABLE.format(name="alerts"),
    _ALERT_DOCS_TABLE,
    *_ALERT_INDEXES,
    """CREATE TABLE alert_techniques (
        technique TEXT NOT NULL,
        alert INTEGER NOT NULL,           -- alerts.pk
        PRIMARY KEY (technique, alert)
    ) WITHOUT ROWID""",
    "CREATE INDEX alert_techniques_alert ON alert_techniques (alert)",
    """CREATE TABLE events (
        pk INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        protocol TEXT,
        doc TEXT NOT NULL
    )""",
    "CREATE INDEX events_time ON events (ts)",
    "CREATE INDEX events_protocol ON events (protocol, ts)",
    _INVENTORY_TABLE,
)
# From schema 1 to 2: what _SCHEMA has since.
_MIGRATE_1: Final = (
    "ALTER TABLE alerts ADD COLUMN assignee TEXT",
    "ALTER TABLE alerts ADD COLUMN resolution TEXT",
    "ALTER TABLE alerts ADD COLUMN updated TEXT",
    "ALTER TABLE alerts ADD COLUMN ingested REAL",
    "CREATE INDEX alerts_assignee ON alerts (assignee, ts)",
    _INVENTORY_TABLE,
)
_FTS_TABLE: Final = f"""CREATE VIRTUAL TABLE alerts_text USING fts5(
        text_name, text_message, text_title,
        content='alerts', content_rowid='pk', tokenize="{_FTS_TOKENIZER}"
    )"""
_FTS_TRIGGERS: Final = (
    """CREATE TRIGGER alerts_text_insert AFTER INSERT ON alerts BEGIN
        INSERT INTO alerts_text (rowid, text_name, text_message, text_title)
        VALUES (new.pk, new.text_name, new.text_message, new.text_title);
    END""",
    """CREATE TRIGGER alerts_text_delete AFTER DELETE ON alerts BEGIN
        INSERT INTO alerts_text (alerts_text, rowid, text_name, text_message, text_title)
        VALUES ('delete', old.pk, old.text_name, old.text_message, old.text_title);
    END""",
    """CREATE TRIGGER alerts_text_update
    AFTER UPDATE OF text_name, text_message, text_title ON alerts BEGIN
        INSERT INTO alerts_text (alerts_text, rowid, text_name, text_message, text_title)
        VALUES ('delete', old.pk, old.text_name, old.text_message, old.text_title);
        INSERT INTO alerts_text (rowid, text_name, text_message, text_title)
        VALUES (new.pk, new.text_name, new.text_message, new.text_title);
    END""",
)
_FTS_SCHEMA: Final = (_FTS_TABLE, *_FTS_TRIGGERS)
# From schema 2 to 3: the alerts table rebuilt without its documents, which
# move to alert_docs under the same pk (so the text index, keyed by pk,
# stays valid; dropping the old table drops its indexes and triggers, made
# again here, and the triggers by `_check_schema` for an FTS5 file).
_MIGRATE_2: Final = (
    _ALERT_DOCS_TABLE,
    "INSERT INTO alert_docs (pk, doc) SELECT pk, doc FROM alerts ORDER BY pk",
    _ALERTS_TABLE.format(name="alerts_new"),
    f"INSERT INTO alerts_new ({_ALERT_COLUMNS}) SELECT {_ALERT_COLUMNS} FROM alerts ORDER BY pk",
    "DROP TABLE alerts",
    "ALTER TABLE alerts_new RENAME TO alerts",
    *_ALERT_INDEXES,
    # The planner's statistics went with the old table.
    "ANALYZE alerts",
)

# An unchanged document leaves its row alone (no text index churn); the
# document itself follows (`_UPSERT_DOC`), after every row of the batch.
_UPSERT_ALERT: Final = """
    INSERT INTO alerts (id, ts, severity, rule_id, protocol, source_ip, destination_ip,
                        organization, status, text_name, text_message, text_title,
                        assignee, resolution, updated, ingested)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?14, ?15, ?16, ?17)
    ON CONFLICT (id) DO UPDATE SET
        ts = excluded.ts, severity = excluded.severity, rule_id = excluded.rule_id,
        protocol = excluded.protocol, source_ip = excluded.source_ip,
        destination_ip = excluded.destination_ip, organization = excluded.organization,
        text_name = excluded.text_name, text_message = excluded.text_message,
        text_title = excluded.text_title
    WHERE (SELECT d.doc FROM alert_docs d WHERE d.pk = alerts.pk) IS NOT ?13
"""
_UPSERT_DOC: Final = """
    INSERT INTO alert_docs (pk, doc) SELECT pk, ? FROM alerts WHERE id = ?
    ON CONFLICT (pk) DO UPDATE SET doc = excluded.doc WHERE alert_docs.doc IS NOT excluded.doc
"""
# What a document read is made of (`SqliteStore._document`), over ``alerts a``
# and ``alert_docs d``.
_DOCUMENT: Final = "a.status, a.assignee, a.resolution, a.updated, a.ingested, d.doc"
_TRIAGE_COLUMNS: Final = {name: name for name in ("status", "assignee", "resolution", "updated")}
_DELETE_TECHNIQUES: Final = (
    "DELETE FROM alert_techniques WHERE alert = (SELECT pk FROM alerts WHERE id = ?)"
)
_INSERT_TECHNIQUE: Final = (
    "INSERT OR IGNORE INTO alert_techniques (technique, alert) "
    "SELECT ?, pk FROM alerts WHERE id = ?"
)

# -- the text of full-text search ---------------------------------------------------

# Han ideographs (with extensions and compatibility forms) and hiragana: one
# token per character, as Elasticsearch's standard tokenizer cuts them.
_CJK = "\u3040-\u309f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_TERM = re.compile(r"\w+(?:(?:[.'\u2019]|(?<=\d)[,;](?=\d))\w+)*")
_TOKEN = re.compile(f"[{_CJK}]|[^{_CJK}]+")
_JOINERS = ".'\u2019,;"
_CJK_CHAR = re.compile(f"[{_CJK}]")


def search_terms(text: str) -> list[tuple[str, ...]]:
    """The terms of a search text, each as its tokens (module docstring:
    every term must appear, its tokens adjacent and in order)."""
    terms: list[tuple[str, ...]] = []
    for match in _TERM.finditer(text.lower()):
        term = match.group()
        tokens = tuple(
            stripped for piece in _TOKEN.findall(term) if (stripped := piece.strip(_JOINERS))
        )
        if tokens:
            terms.append(tokens)
    return terms


def _token_text(text: str) -> str:
    """A field's tokens, space-separated and padded with a space each side,
    so ``" a b "`` in it is exactly the phrase *a b* (the ``instr()`` search).
    The same tokens as `search_terms`; text without CJK is cut in one pass."""
    terms = _TERM.findall(text.lower())
    if not terms:
        return " "
    joined = " ".join(terms)
    if _CJK_CHAR.search(joined):
        joined = " ".join(token for term in search_terms(joined) for token in term)
    return f" {joined} "


# Rule names and Chinese titles repeat from alert to alert.
_title_token_text = functools.lru_cache(maxsize=4096)(_token_text)


# -- helpers ------------------------------------------------------------------------


def default_path() -> Path:
    """``$ICSWATCH_DB``, else ``$XDG_DATA_HOME/icswatch/icswatch.db``, else
    ``~/.local/share/icswatch/icswatch.db`` (the XDG base-directory rules:
    an empty or relative XDG_DATA_HOME is ignored)."""
    explicit = os.environ.get("ICSWATCH_DB")
    return Path(explicit).expanduser() if explicit else data_home() / "icswatch.db"


@functools.cache
def fts5_available() -> bool:
    """Whether this Python's sqlite3 has FTS5 (and the options used here)."""
    try:
        with sqlite3.connect(MEMORY) as probe:
            probe.execute(f"CREATE VIRTUAL TABLE t USING fts5(x, tokenize=\"{_FTS_TOKENIZER}\")")
    except sqlite3.Error:
        return False
    return True


_second_cache: dict[str, int] = {}


def _epoch(timestamp: str) -> float:
    """Epoch seconds of an ISO 8601 time, rounded once from whole
    microseconds (the same float as ``datetime.timestamp()``; digits past
    the microsecond are dropped). ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, what
    `sensor.ecs.iso_timestamp` writes, is read without `datetime` but for
    the first time of each second."""
    try:
        if len(timestamp) > 20 and timestamp[19] == "." and timestamp[-1] == "Z":
            fraction = timestamp[20:-1]
            if fraction.isdigit():
                prefix = timestamp[:19]
                second = _second_cache.get(prefix)
                if second is None:
                    if len(_second_cache) > 4096:
                        _second_cache.clear()
                    moment = datetime.fromisoformat(prefix + "+00:00")
                    second = _second_cache[prefix] = int(moment.timestamp())
                micros = int(fraction[:6].ljust(6, "0"))
                return (second * 1_000_000 + micros) / 1_000_000
        moment = datetime.fromisoformat(timestamp)
    except ValueError:
        raise ValueError(f"@timestamp {timestamp!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ValueError(f"@timestamp {timestamp!r} has no time zone")
    return moment.timestamp()


@functools.lru_cache(maxsize=65_536)
def _ip_key(value: str) -> bytes:
    """How Elasticsearch orders ``ip`` values: IPv6 bytes, IPv4 mapped into
    ::ffff:0:0/96; anything not an address after every address."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return b"\xff" * 17 + value.encode()
    if address.version == 4:
        return b"\0" * 10 + b"\xff\xff" + address.packed
    return address.packed


def _ip_collation(left: str, right: str) -> int:
    a, b = _ip_key(left), _ip_key(right)
    return (a > b) - (a < b)


def _values(values: Sequence[str] | str) -> list[str]:
    """A filter's values; a lone string (``severities="high"``) is one value."""
    return [values] if isinstance(values, str) else list(values)


def _encode_cursor(ts: float, alert_id: str, newest_first: bool) -> str:
    raw = json.dumps([ts, alert_id, newest_first], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _encode_marker(pk: int) -> str:
    return base64.urlsafe_b64encode(json.dumps(["since", pk]).encode()).decode().rstrip("=")


def _decode_marker(marker: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(marker + "=" * (-len(marker) % 4))
        tag, pk = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise ValueError("not a marker this store returned") from None
    if tag != "since" or not isinstance(pk, int) or isinstance(pk, bool):
        raise ValueError("not a marker this store returned")
    return pk


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _decode_cursor(cursor: str, newest_first: bool) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, alert_id, direction = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise ValueError("not a cursor this store returned") from None
    if not isinstance(ts, int | float) or not isinstance(alert_id, str):
        raise ValueError("not a cursor this store returned")
    if direction != newest_first:
        raise ValueError("not a cursor for this query (its sort order differs)")
    return float(ts), alert_id


def _nested(doc: dict[str, Any], *keys: str) -> Any:
    value: Any = doc
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


class SqliteStore:
    """`console.stores.base.Store` on one SQLite file (or ``":memory:"``).

    Writes go into a transaction that `flush` commits (`close` flushes);
    until then only this store object sees them. Each `write_alerts` call is
    a few ``executemany`` statements, so batch the alerts (hundreds at a
    time) rather than writing them one by one. ``fulltext=False`` builds a
    new file without the FTS5 index (searches scan); an existing file keeps
    the choice it was created with.
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, timeout: float = 5.0,
        fulltext: bool | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else default_path()
        self._lock = threading.RLock()
        self._closed = False
        self._connection = self._connect(timeout)
        try:
            self.fulltext = self._prepare(fts5_available() if fulltext is None else fulltext)
        except BaseException:
            self._connection.close()
            raise

    # -- opening --------------------------------------------------------------------

    def _connect(self, timeout: float) -> sqlite3.Connection:
        path = self.path
        if str(path) != MEMORY:
            if path.is_dir():
                raise StoreError(f"store {path}: is a folder, not a file")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"store {path}: cannot create its folder: {exc.strerror or exc}") from None
            if not os.access(path.parent, os.W_OK | os.X_OK):
                raise StoreError(f"store {path}: its folder is not writable")
            if path.exists() and not os.access(path, os.R_OK | os.W_OK):
                raise StoreError(f"store {path}: not readable and writable by this user")
        try:
            connection = sqlite3.connect(
                path, timeout=timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"store {path}: cannot open: {exc}") from None
        connection.create_collation("ip", _ip_collation)
        return connection

    def _prepare(self, fulltext: bool) -> bool:
        """Set the pragmas, create or check the schema, and prove the file
        writable (a read-only file opens and fails at the first write)."""
        connection = self._connection
        try:
            connection.execute("PRAGMA journal_mode = WAL").fetchone()
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute("BEGIN IMMEDIATE")
            try:
                fulltext, created = self._check_schema(fulltext)
                connection.execute("UPDATE icswatch_schema SET version = version")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT" if created else "ROLLBACK")
        except sqlite3.DatabaseError as exc:
            raise self._error(exc, opening=True) from None
        return fulltext

    def _check_schema(self, fulltext: bool) -> tuple[bool, bool]:
        """The full-text mode of the file, and whether it was created (or
        upgraded) now, to be committed."""
        connection = self._connection
        tables = {name for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            if fulltext and not fts5_available():
                fulltext = False
            for statement in _SCHEMA + (_FTS_SCHEMA if fulltext else ()):
                connection.execute(statement)
            connection.execute(
                "CREATE TABLE icswatch_schema (version INTEGER NOT NULL, fulltext TEXT NOT NULL)")
            connection.execute("INSERT INTO icswatch_schema VALUES (?, ?)",
                               (SCHEMA_VERSION, "fts5" if fulltext else "scan"))
            return fulltext, True
        if "icswatch_schema" not in tables:
            raise StoreError(f"store {self.path}: an SQLite database, but not an icswatch store")
        row = connection.execute("SELECT version, fulltext FROM icswatch_schema").fetchone()
        if row is None:
            raise StoreError(f"store {self.path}: its schema version is missing")
        version, mode = row
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store {self.path}: written by a newer icswatch (schema {version}; this "
                f"version reads up to {SCHEMA_VERSION}): upgrade icswatch or use another file")
        if mode == "fts5" and not fts5_available():
            raise StoreError(f"store {self.path}: needs SQLite's FTS5, which this Python's "
                             "sqlite3 module lacks")
        if version < SCHEMA_VERSION:
            # Older files are upgraded in place, in this transaction.
            if version <= 1:
                for statement in _MIGRATE_1:
                    connection.execute(statement)
            # Schema 2 (or 1) kept the documents in the alert rows.
            if any(column == "doc" for (_, column, *_) in
                   connection.execute("PRAGMA table_info(alerts)")):
                for statement in _MIGRATE_2 + (_FTS_TRIGGERS if mode == "fts5" else ()):
                    connection.execute(statement)
            connection.execute("UPDATE icswatch_schema SET version = ?", (SCHEMA_VERSION,))
            return mode == "fts5", True
        return mode == "fts5", False

    def _error(self, exc: sqlite3.Error, opening: bool = False) -> StoreError:
        message = str(exc)
        if isinstance(exc, sqlite3.DatabaseError) and (
                "not a database" in message or "malformed" in message):
            return StoreError(f"store {self.path}: not an icswatch store (not an SQLite "
                              f"database, or corrupt: {message})")
        if "locked" in message or "busy" in message:
            return StoreError(f"store {self.path}: busy: another process holds it ({message})")
        if "readonly" in message:
            return StoreError(f"store {self.path}: read-only ({message})")
        if isinstance(exc, sqlite3.ProgrammingError) and self._closed:
            return StoreError(f"store {self.path}: used after close")
        verb = "cannot open" if opening else "failed"
        return StoreError(f"store {self.path}: {verb}: {message}")

    # -- writing --------------------------------------------------------------------

    def write_alerts(self, alerts: Sequence[dict[str, Any]]) -> None:
        """Store alert documents, idempotent by ``event.id`` (the last of
        several with one id wins; a stored alert keeps its triage and the
        time it was first written)."""
        rows: dict[str, tuple[Any, ...]] = {}
        ingested = time.time()
        techniques: dict[str, list[str]] = {}
        encode = json.JSONEncoder(
            separators=(",", ":"), ensure_ascii=False, check_circular=False).encode
        for doc in alerts:
            event = doc.get("event") or {}
            alert_id = event.get("id")
            if not isinstance(alert_id, str) or not alert_id:
                raise ValueError("an alert document needs its event.id")
            ics_alert = _nested(doc, "ics", "alert") or {}
            severity = ics_alert.get("severity")
            if not isinstance(severity, str):
                raise ValueError(f"alert {alert_id}: no ics.alert.severity")
            rule = doc.get("rule") or {}
            source = doc.get("source") or {}
            destination = doc.get("destination") or {}
            organization = doc.get("organization") or {}
            network = doc.get("network") or {}
            timestamp = doc.get("@timestamp")
            if not isinstance(timestamp, str):
                raise ValueError(f"alert {alert_id}: no @timestamp")
            rows[alert_id] = (
                alert_id,
                _epoch(timestamp),
                severity,
                rule.get("id"),
                network.get("protocol"),
                source.get("ip"),
                destination.get("ip"),
                organization.get("id"),
                ics_alert.get("status") or DEFAULT_STATUS,
                _title_token_text(rule.get("name") or ""),
                _token_text(doc.get("message") or ""),
                _title_token_text(ics_alert.get("title_zh") or ""),
                encode(doc),  # ?13: compared, and written by _UPSERT_DOC
                _text_or_none(ics_alert.get("assignee")),
                _text_or_none(ics_alert.get("resolution")),
                _text_or_none(ics_alert.get("updated")),
                ingested,
            )
            ids = _nested(doc, "threat", "technique", "id") or []
            techniques[alert_id] = [ids] if isinstance(ids, str) else ids
        if not rows:
            return
        with self._lock:
            try:
                self._begin()
                execute = self._connection.executemany
                execute(_UPSERT_ALERT, rows.values())
                execute(_UPSERT_DOC, ((row[12], row[0]) for row in rows.values()))
                execute(_DELETE_TECHNIQUES, ((alert_id,) for alert_id in rows))
                execute(_INSERT_TECHNIQUE, (
                    (technique, alert_id)
                    for alert_id, ids in techniques.items() for technique in ids))
            except sqlite3.Error as exc:
                raise self._failed(exc) from None

    def write_events(self, events: Sequence[dict[str, Any]]) -> None:
        """Append event documents (they have no id: a second replay appends
        them again)."""
        encode = json.JSONEncoder(
            separators=(",", ":"), ensure_ascii=False, check_circular=False).encode
        rows = [
            (_epoch(doc["@timestamp"]), _nested(doc, "network", "protocol"), encode(doc))
            for doc in events
        ]
        if not rows:
            return
        with self._lock:
            try:
                self._begin()
                self._connection.executemany(
                    "INSERT INTO events (ts, protocol, doc) VALUES (?, ?, ?)", rows)
            except sqlite3.Error as exc:
                raise self._failed(exc) from None

    def _begin(self) -> None:
        if not self._connection.in_transaction:
            self._connection.execute("BEGIN IMMEDIATE")

    def _failed(self, exc: sqlite3.Error) -> StoreError:
        """Roll back what was not flushed: a failed write leaves no half batch."""
        with contextlib.suppress(sqlite3.Error):
            if self._connection.in_transaction:
                self._connection.execute("ROLLBACK")
        return self._error(exc)

    def flush(self) -> None:
        """Commit: other connections and processes see everything written."""
        with self._lock:
            try:
                if self._connection.in_transaction:
                    self._connection.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._failed(exc) from None

    def close(self) -> None:
        """Flush and close; closing again does nothing."""
        with self._lock:
            if self._closed:
                return
            try:
                self.flush()
                # Keep the planner's statistics fresh (cheap when nothing
                # changed): without them a filter on a common value scans
                # the table instead of the time index.
                with contextlib.suppress(sqlite3.Error):
                    self._connection.execute("PRAGMA optimize")
            finally:
                self._closed = True
                self._connection.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reading --------------------------------------------------------------------

    def _filters(self, query: AlertQuery) -> tuple[str, list[Any]]:
        """The WHERE clause (over ``alerts a``) and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        if query.start is not None:
            clauses.append("a.ts >= ?")
            params.append(float(query.start))
        if query.end is not None:
            clauses.append("a.ts < ?")
            params.append(float(query.end))

        def any_of(expression: str, given: Sequence[str] | str) -> None:
            values = _values(given)
            if values:
                clauses.append(f"{expression} IN ({','.join('?' * len(values))})")
                params.extend(values)

        any_of("a.severity", query.severities)
        any_of("a.protocol", query.protocols)
        any_of("a.rule_id", query.rule_ids)
        any_of("a.organization", query.organizations)
        if query.scope is not None:
            # What the reader may see at all: an empty scope matches nothing.
            scope = list(query.scope)
            clauses.append(f"a.organization IN ({','.join('?' * len(scope))})" if scope
                           else "0")
            params.extend(scope)
        any_of("a.status", query.statuses)
        any_of("a.assignee", query.assignees)
        techniques = _values(query.techniques)
        if techniques:
            clauses.append(
                "a.pk IN (SELECT alert FROM alert_techniques WHERE technique IN "
                f"({','.join('?' * len(techniques))}))")
            params.extend(techniques)
        assets = _values(query.assets)
        if assets:
            marks = ",".join("?" * len(assets))
            clauses.append(f"(a.source_ip IN ({marks}) OR a.destination_ip IN ({marks}))")
            params.extend(assets * 2)
        terms = search_terms(query.text) if query.text else []
        if terms and self.fulltext:
            clauses.append("a.pk IN (SELECT rowid FROM alerts_text WHERE alerts_text MATCH ?)")
            params.append(" AND ".join(f'"{" ".join(tokens)}"' for tokens in terms))
        for tokens in terms if not self.fulltext else ():
            clauses.append("(instr(a.text_name, ?) OR instr(a.text_message, ?) "
                           "OR instr(a.text_title, ?))")
            params.extend([f" {' '.join(tokens)} "] * 3)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def _read(self, sql: str, params: Iterable[Any]) -> list[Any]:
        with self._lock:
            try:
                return self._connection.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc) from None

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        """Several reads that see one state of the file (a read transaction,
        unless this store's own write transaction is open)."""
        with self._lock:
            own = not self._connection.in_transaction
            try:
                if own:
                    self._connection.execute("BEGIN")
                yield
            except sqlite3.Error as exc:
                raise self._error(exc) from None
            finally:
                if own and self._connection.in_transaction:
                    self._connection.execute("COMMIT")

    @staticmethod
    def _document(status: str, assignee: str | None, resolution: str | None,
                  updated: str | None, ingested: float | None, doc: str) -> dict[str, Any]:
        """The stored document with its triage and ingest time laid over it
        (the columns of `_DOCUMENT`)."""
        document: dict[str, Any] = json.loads(doc)
        alert = document.setdefault("ics", {}).setdefault("alert", {})
        alert["status"] = status
        for name, value in (("assignee", assignee), ("resolution", resolution),
                            ("updated", updated)):
            if value is None:
                alert.pop(name, None)
            else:
                alert[name] = value
        if ingested is not None:
            document.setdefault("event", {})["ingested"] = iso_time(ingested)
        return document

    def get_alert(self, alert_id: str) -> dict[str, Any] | None:
        rows = self._read(f"SELECT {_DOCUMENT} FROM alerts a JOIN alert_docs d ON d.pk = a.pk "
                          "WHERE a.id = ?", (alert_id,))
        return self._document(*rows[0]) if rows else None

    def set_triage(
        self, alert_id: str, *, status: str | None = None, assignee: str | None = None,
        resolution: str | None = None, updated: float,
    ) -> dict[str, Any] | None:
        """Set the alert's triage columns and commit (with whatever this
        store wrote before); the updated document, None for an unknown id.
        ValueError for a status not in `console.stores.base.STATUSES`."""
        fields = triage_fields(status, assignee, resolution, updated)
        # The names are triage_fields' own, never the caller's.
        assignments = ", ".join(f"{_TRIAGE_COLUMNS[name]} = ?" for name in fields)
        with self._lock:
            try:
                self._begin()
                changed = self._connection.execute(
                    f"UPDATE alerts SET {assignments} WHERE id = ?",
                    (*fields.values(), alert_id)).rowcount
                self._connection.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._failed(exc) from None
            return self.get_alert(alert_id) if changed else None

    def first_marker(self) -> str:
        return _encode_marker(0)

    def alerts_since(
        self, marker: str | None, size: int = 100
    ) -> tuple[list[dict[str, Any]], str]:
        """Alerts first committed after ``marker``, in rowid order (the
        order of first commit); see `console.stores.base.Store`."""
        if marker is None:
            rows = self._read("SELECT coalesce(max(pk), 0) FROM alerts", ())
            return [], _encode_marker(int(rows[0][0]))
        after = _decode_marker(marker)
        if size <= 0:
            return [], marker
        rows = self._read(
            f"SELECT a.pk, {_DOCUMENT} FROM alerts a JOIN alert_docs d ON d.pk = a.pk "
            "WHERE a.pk > ? ORDER BY a.pk LIMIT ?",
            (after, size))
        if not rows:
            return [], marker
        return [self._document(*row[1:]) for row in rows], _encode_marker(int(rows[-1][0]))

    # -- inventory ------------------------------------------------------------------

    def write_inventory(self, kind: str, documents: Sequence[dict[str, Any]]) -> None:
        """Upsert documents by (kind, id), whole, and commit (with whatever
        this store wrote before)."""
        check_inventory(kind, documents)
        encode = json.JSONEncoder(
            separators=(",", ":"), ensure_ascii=False, check_circular=False).encode
        rows = [(kind, document["id"], encode(document)) for document in documents]
        if not rows:
            return
        with self._lock:
            try:
                self._begin()
                self._connection.executemany(
                    "INSERT INTO inventory (kind, id, doc) VALUES (?, ?, ?) "
                    "ON CONFLICT (kind, id) DO UPDATE SET doc = excluded.doc", rows)
                self._connection.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._failed(exc) from None

    def list_inventory(self, kind: str, size: int = 10_000) -> list[dict[str, Any]]:
        """Up to ``size`` documents of ``kind`` by id (byte order of the
        UTF-8 ids, as Elasticsearch sorts a keyword)."""
        check_inventory(kind)
        rows = self._read("SELECT doc FROM inventory WHERE kind = ? ORDER BY id LIMIT ?",
                          (kind, max(size, 0)))
        return [json.loads(doc) for (doc,) in rows]

    def get_inventory(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        check_inventory(kind)
        rows = self._read("SELECT doc FROM inventory WHERE kind = ? AND id = ?", (kind, doc_id))
        document: dict[str, Any] | None = json.loads(rows[0][0]) if rows else None
        return document

    def count_alerts(self, query: AlertQuery) -> int:
        where, params = self._filters(query)
        count: int = self._read(f"SELECT count(*) FROM alerts a{where}", params)[0][0]
        return count

    def search_alerts(self, query: AlertQuery) -> Page:
        """A page sorted on (``@timestamp``, ``event.id``), both descending
        when ``newest_first``. Raises ValueError for a cursor this store did
        not return for the same sort order, or a negative size."""
        if query.size < 0:
            raise ValueError("page size must not be negative")
        where, params = self._filters(query)
        order = "DESC" if query.newest_first else "ASC"
        keyset = ""
        if query.cursor is not None:
            ts, alert_id = _decode_cursor(query.cursor, query.newest_first)
            after = "<" if query.newest_first else ">"
            keyset = f"{' AND' if where else ' WHERE'} (a.ts, a.id) {after} (?, ?)"
            params_page = [*params, ts, alert_id, query.size + 1]
        else:
            params_page = [*params, query.size + 1]
        with self._snapshot():  # the total and the page agree
            total = self.count_alerts(query)
            # The page's keys first (only the small alert rows are read,
            # and sorted when no index gives the order), then the documents
            # of those rows alone.
            rows = self._read(
                f"SELECT p.ts, p.id, {_DOCUMENT} FROM ("
                f"  SELECT a.pk, a.ts, a.id FROM alerts a{where}{keyset}"
                f"  ORDER BY a.ts {order}, a.id {order} LIMIT ?"
                ") p JOIN alerts a ON a.pk = p.pk JOIN alert_docs d ON d.pk = p.pk "
                f"ORDER BY p.ts {order}, p.id {order}", params_page)
        cursor = None
        if len(rows) > query.size > 0:
            rows = rows[:query.size]
            cursor = _encode_cursor(rows[-1][0], rows[-1][1], query.newest_first)
        elif query.size == 0:
            rows = []
        return Page([self._document(*row[2:]) for row in rows], total, cursor)

    def histogram(self, query: AlertQuery, interval: float) -> list[Bucket]:
        """Alert counts by severity per ``interval`` seconds (at least a
        microsecond), buckets starting at multiples of the interval since
        the epoch, computed on whole microseconds (no float rounding at the
        edges), empty buckets omitted, oldest first. ``query.cursor`` and
        ``size`` are ignored."""
        step = round(interval * 1_000_000)
        if step < 1:
            raise ValueError("the histogram interval must be at least a microsecond")
        where, params = self._filters(query)
        rows = self._read(
            "SELECT (us - (us < 0) * (? - 1)) / ? AS bucket, severity, count(*) FROM ("
            f"  SELECT CAST(round(a.ts * 1000000) AS INTEGER) AS us, a.severity AS severity"
            f"  FROM alerts a{where}"
            ") GROUP BY bucket, severity ORDER BY bucket, severity",
            [step, step, *params])
        buckets: list[Bucket] = []
        for bucket, severity, count in rows:
            start = bucket * step / 1_000_000
            if not buckets or buckets[-1].start != start:
                buckets.append(Bucket(start))
            buckets[-1].counts[severity] = count
        return buckets

    def time_span(self, query: AlertQuery) -> tuple[float, float] | None:
        """The first and last ``@timestamp`` among matching alerts (epoch
        seconds), None when none match."""
        where, params = self._filters(query)
        first, last = self._read(f"SELECT min(a.ts), max(a.ts) FROM alerts a{where}", params)[0]
        return None if first is None else (float(first), float(last))

    def top_many(self, query: AlertQuery,
                 sizes: Mapping[str, int]) -> dict[str, list[tuple[str, int]]]:
        """`top` for each field in turn (one query each: SQLite has no
        round trip to save)."""
        return {field: self.top(query, field, size) for field, size in sizes.items()}

    def top(self, query: AlertQuery, field: str, size: int = 10) -> list[tuple[str, int]]:
        """Elasticsearch's terms aggregation: the ``size`` most frequent
        values, by count descending then value ascending (addresses in
        address order, as for ES ``ip`` fields); an alert counts once per
        technique for ``threat.technique.id``; alerts without the field are
        not counted."""
        if field not in TOP_FIELDS:
            raise ValueError(f"cannot aggregate on {field!r}; one of {sorted(TOP_FIELDS)}")
        if size <= 0:
            return []
        where, params = self._filters(query)
        if field == "threat.technique.id":
            value = "t.technique"
            # Unfiltered, the technique table alone answers (one row per
            # alert and technique): no visit to the large alert rows.
            source = (f"alert_techniques t JOIN alerts a ON a.pk = t.alert{where}" if where
                      else "alert_techniques t")
        else:
            value = _COLUMNS[field]
            source = f"alerts a{where}{' AND' if where else ' WHERE'} {value} IS NOT NULL"
        collate = " COLLATE ip" if field in _IP_FIELDS else ""
        rows = self._read(
            f"SELECT {value} AS value, count(*) AS n FROM {source} "
            f"GROUP BY value ORDER BY n DESC, value{collate} ASC LIMIT ?",
            [*params, size])
        return [(str(value), int(count)) for value, count in rows]
