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

SCHEMA_VERSION: Final = 1
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
        if version != 0:
            raise StateError(
                f"console database {self.path} has schema {version}, this icswatch "
                f"knows {SCHEMA_VERSION}")
        with self._transaction_unlocked():
            for statement in _SCHEMA:
                self._connection.execute(statement)
            self._connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

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
