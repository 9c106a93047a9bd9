"""The console's own SQLite database: users, sessions and the triage audit
trail. Alerts live in the alert store (embedded or Elasticsearch); this file
holds what belongs to one console instance, whichever store it reads."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

SCHEMA_VERSION: Final = 2
_SCHEMA: Final = (
    """CREATE TABLE users (
        username TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        display_name TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created REAL NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,     -- sha256 of the token; the token is never stored
        username TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
        created REAL NOT NULL,
        expires REAL NOT NULL
    )""",
    "CREATE INDEX sessions_user ON sessions (username)",
    """CREATE TABLE audit (
        pk INTEGER PRIMARY KEY,
        alert_id TEXT NOT NULL,
        at REAL NOT NULL,
        username TEXT NOT NULL,
        action TEXT NOT NULL,
        status TEXT,
        assignee TEXT,
        comment TEXT,
        reason TEXT
    )""",
    "CREATE INDEX audit_alert ON audit (alert_id, pk)",
)

# Version 2: tiers. Users belong to an organisation (NULL: this console's
# own); the organisations this console knows, the links its children log in
# with, notices and their log, and small named values (forwarding cursors).
_SCHEMA_V2: Final = (
    "ALTER TABLE users ADD COLUMN org TEXT",
    """CREATE TABLE organizations (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('enterprise', 'province', 'national')),
        name TEXT NOT NULL,
        parent TEXT,                     -- the province of an enterprise
        industry TEXT,
        city TEXT,
        key_enterprise INTEGER NOT NULL DEFAULT 0,
        grade TEXT CHECK (grade IN ('high', 'medium', 'low')),
        updated REAL NOT NULL
    )""",
    "CREATE INDEX organizations_parent ON organizations (parent)",
    """CREATE TABLE links (
        org TEXT PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
        token_hash TEXT NOT NULL UNIQUE, -- sha256 of the child's token
        created REAL NOT NULL,
        last_seen REAL
    )""",
    """CREATE TABLE notices (
        id TEXT PRIMARY KEY,
        issuer TEXT NOT NULL,            -- organisation that issued it
        target TEXT NOT NULL,            -- enterprise that must act
        alert_id TEXT,
        asset TEXT,
        title TEXT NOT NULL,
        required_action TEXT NOT NULL,
        deadline REAL NOT NULL,
        status TEXT NOT NULL,
        created REAL NOT NULL,
        updated REAL NOT NULL
    )""",
    "CREATE INDEX notices_target ON notices (target, status)",
    """CREATE TABLE notice_log (
        seq INTEGER PRIMARY KEY,         -- order of arrival at this console
        uid TEXT NOT NULL UNIQUE,        -- the step's own id, the same at every tier
        notice TEXT NOT NULL,
        at REAL NOT NULL,
        org TEXT NOT NULL,               -- organisation of the user who took the step
        username TEXT NOT NULL,
        action TEXT NOT NULL,
        status TEXT NOT NULL,            -- the notice's status after the step
        body TEXT NOT NULL,              -- JSON: text, evidence, the notice itself on issue
        came_from TEXT                   -- child or parent it arrived from; NULL: taken here
    )""",
    "CREATE INDEX notice_log_notice ON notice_log (notice, seq)",
    "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


class StateError(Exception):
    """The console database cannot be opened or used; one line for the operator."""


class ConsoleState:
    """One connection shared by the server's threads behind a lock (the
    console writes little: logins and triage actions)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(
                path, timeout=10, isolation_level=None, check_same_thread=False)
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute("PRAGMA foreign_keys=ON")
            self._prepare()
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"console database {path}: {exc}") from None
        self._lock = threading.Lock()

    def _prepare(self) -> None:
        version = self._connection.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StateError(
                f"console database {self.path} has schema {version}, this icswatch "
                f"knows {SCHEMA_VERSION}")
        with self._transaction_unlocked():
            if version == 0:
                for statement in _SCHEMA:
                    self._connection.execute(statement)
            for statement in _SCHEMA_V2:
                self._connection.execute(statement)
            self._connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def setting(self, key: str) -> str | None:
        rows = self.rows("SELECT value FROM settings WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_setting(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                       "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    @contextmanager
    def _transaction_unlocked(self) -> Iterator[sqlite3.Connection]:
        self._connection.execute("BEGIN IMMEDIATE")
        try:
            yield self._connection
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise
        self._connection.execute("COMMIT")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                with self._transaction_unlocked() as connection:
                    yield connection
            except sqlite3.Error as exc:
                raise StateError(f"console database {self.path}: {exc}") from None

    def rows(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._connection.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise StateError(f"console database {self.path}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._connection.close()
