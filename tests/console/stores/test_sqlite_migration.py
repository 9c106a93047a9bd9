"""A schema-2 file (documents inline in the alert rows, as icswatch wrote
them before schema 3) is upgraded in place when opened: every alert is
found afterwards, with its document, its triage and its ingest time, and
every query answers as on a file made new."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from console.stores.base import AlertQuery
from console.stores.sqlite import SCHEMA_VERSION, SqliteStore, fts5_available
from tests.support.alerts import numbered, replay_alerts

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = replay_alerts(sorted((ROOT / "pcaps" / "modbus").glob("attack-*.pcapng")))
Doc = dict[str, Any]
WHEN = 1_700_000_000.25

# Schema 2, word for word as the store created it.
_TOKENIZER = "unicode61 remove_diacritics 0 tokenchars '._''\u2019,;'"
SCHEMA_2 = (
    """CREATE TABLE alerts (
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
        doc TEXT NOT NULL,                -- the ECS document as JSON
        assignee TEXT,                    -- triage, kept across rewrites
        resolution TEXT,
        updated TEXT,                     -- ISO 8601 of the last triage
        ingested REAL                     -- when first written (epoch seconds)
    )""",
    "CREATE INDEX alerts_time ON alerts (ts, id)",
    "CREATE INDEX alerts_severity ON alerts (severity, ts)",
    "CREATE INDEX alerts_rule ON alerts (rule_id, ts)",
    "CREATE INDEX alerts_protocol ON alerts (protocol, ts)",
    "CREATE INDEX alerts_source ON alerts (source_ip, ts)",
    "CREATE INDEX alerts_destination ON alerts (destination_ip, ts)",
    "CREATE INDEX alerts_organization ON alerts (organization, ts)",
    "CREATE INDEX alerts_status ON alerts (status, ts)",
    "CREATE INDEX alerts_assignee ON alerts (assignee, ts)",
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
    """CREATE TABLE inventory (
        kind TEXT NOT NULL,               -- assets, communications, sensors
        id TEXT NOT NULL,
        doc TEXT NOT NULL,                -- JSON
        PRIMARY KEY (kind, id)
    ) WITHOUT ROWID""",
)
FTS_2 = (
    f"""CREATE VIRTUAL TABLE alerts_text USING fts5(
        text_name, text_message, text_title,
        content='alerts', content_rowid='pk', tokenize="{_TOKENIZER}"
    )""",
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
COLUMNS = ("pk, id, ts, severity, rule_id, protocol, source_ip, destination_ip, organization, "
           "status, text_name, text_message, text_title, assignee, resolution, updated, ingested")


TEXTS = ("modbus", "write", "写", "no such word")


def _schema_2_file(path: Path, fulltext: bool) -> tuple[list[Doc], dict[str, Doc | None],
                                                         list[int]]:
    """A schema-2 file of alerts with triage set on some, events and
    inventory; the alerts written, each document as a store returns it, and
    the count of each of `TEXTS`."""
    alerts = numbered(TEMPLATES, 0, 60, "migration")
    made = path.with_name("made.db")
    with SqliteStore(made, fulltext=fulltext) as store:
        store.write_alerts(alerts)
        store.write_events([{"@timestamp": alerts[0]["@timestamp"],
                             "network": {"protocol": "modbus"}}])
        store.write_inventory("sensors", [{"id": "s1", "name": "one"}])
        store.flush()
        store.set_triage(alerts[0]["event"]["id"], status="closed", assignee="gina",
                         resolution="false_positive", updated=WHEN)
        store.set_triage(alerts[1]["event"]["id"], assignee="frank", updated=WHEN + 1)
        expected = {doc["event"]["id"]: store.get_alert(doc["event"]["id"]) for doc in alerts}
        counts = [store.count_alerts(AlertQuery(text=text)) for text in TEXTS]
    with sqlite3.connect(path) as old:
        for statement in SCHEMA_2 + (FTS_2 if fulltext else ()):
            old.execute(statement)
        old.execute("CREATE TABLE icswatch_schema (version INTEGER NOT NULL, "
                    "fulltext TEXT NOT NULL)")
        old.execute("INSERT INTO icswatch_schema VALUES (2, ?)", ("fts5" if fulltext else "scan",))
        old.execute("ATTACH DATABASE ? AS made", (str(made),))
        columns = ", ".join(f"a.{column}" for column in COLUMNS.split(", "))
        old.execute(f"INSERT INTO alerts ({COLUMNS}, doc) SELECT {columns}, d.doc "
                    "FROM made.alerts a JOIN made.alert_docs d ON d.pk = a.pk ORDER BY a.pk")
        for table in ("alert_techniques", "events", "inventory"):
            old.execute(f"INSERT INTO {table} SELECT * FROM made.{table}")
    return alerts, expected, counts


@pytest.mark.parametrize("fulltext", [
    pytest.param(True, marks=pytest.mark.skipif(not fts5_available(), reason="no FTS5")), False])
def test_a_schema_2_file_is_upgraded(tmp_path: Path, fulltext: bool) -> None:
    path = tmp_path / "old.db"
    alerts, expected, counts = _schema_2_file(path, fulltext)
    assert 0 < counts[1] < len(alerts)
    with SqliteStore(path) as store:
        assert store.fulltext is fulltext
        assert store.count_alerts(AlertQuery()) == len(alerts)
        for alert_id, document in expected.items():
            assert store.get_alert(alert_id) == document
        page = store.search_alerts(AlertQuery(size=len(alerts)))
        assert {doc["event"]["id"]: doc for doc in page.alerts} == expected
        assert store.count_alerts(AlertQuery(assignees=["gina"], statuses=["closed"])) == 1
        assert store.count_alerts(AlertQuery(assignees=["frank"])) == 1
        assert [store.count_alerts(AlertQuery(text=text)) for text in TEXTS] == counts
        techniques = store.top(AlertQuery(), "threat.technique.id", 100)
        assert techniques and sum(n for _, n in techniques) >= len(alerts)
        assert store.list_inventory("sensors") == [{"id": "s1", "name": "one"}]
        # Written after: new rows, rewrites, text index and markers all work.
        _, marker = store.alerts_since(None)
        changed = dict(alerts[2], message="zeppelin overflight")
        later = numbered(TEMPLATES, 60, 5, "migration")
        store.write_alerts([changed, *later])
        store.flush()
        new, _ = store.alerts_since(marker)
        assert [doc["event"]["id"] for doc in new] == [doc["event"]["id"] for doc in later]
        assert store.count_alerts(AlertQuery()) == len(alerts) + len(later)
        assert [doc["event"]["id"] for doc in store.search_alerts(
            AlertQuery(text="zeppelin")).alerts] == [changed["event"]["id"]]
        rewritten = store.get_alert(changed["event"]["id"])
        assert rewritten is not None and rewritten["message"] == "zeppelin overflight"
        assert store.get_alert(alerts[0]["event"]["id"]) == expected[alerts[0]["event"]["id"]]
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT version FROM icswatch_schema").fetchone() == (SCHEMA_VERSION,)
        columns = {row[1] for row in raw.execute("PRAGMA table_info(alerts)")}
        assert "doc" not in columns
        assert raw.execute("SELECT count(*) FROM alert_docs").fetchone() == (len(alerts) + 5,)
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        if fulltext:
            raw.execute("INSERT INTO alerts_text (alerts_text) VALUES ('integrity-check')")
    with SqliteStore(path) as store:  # opens as it is now, nothing to migrate
        assert store.count_alerts(AlertQuery()) == len(alerts) + 5

