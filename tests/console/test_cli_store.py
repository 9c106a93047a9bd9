"""`icswatch replay` writes its alerts to the embedded store, as a user runs
it: the same alerts (same ids, same documents) as `--format jsonl` prints,
once however often the capture is replayed, and one clear line when the
store cannot be used."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from console import cli
from console.stores.base import AlertQuery, StoreError
from console.stores.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[2]
MODBUS = ROOT / "pcaps" / "modbus"
CAPTURES = [MODBUS / "attack-function-scan.pcapng", MODBUS / "diagnostics.pcapng"]


def icswatch(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[
        str]:
    return subprocess.run(
        [sys.executable, "-m", "console.cli", *map(str, args)], capture_output=True, text=True,
        timeout=60, check=False, cwd=ROOT, env={**os.environ, **(env or {})},
    )


def _alerts_printed(*captures: Path) -> list[dict[str, Any]]:
    result = icswatch("replay", "--format", "jsonl", "--no-summary", "--store", "none",
                      *captures)
    assert result.returncode == 0, result.stderr
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    return [doc for doc in documents if doc["event"]["kind"] == "alert"]


def _stored(path: Path) -> dict[str, dict[str, Any]]:
    with SqliteStore(path) as store:
        page = store.search_alerts(AlertQuery(size=10_000))
    return {alert["event"]["id"]: alert for alert in page.alerts}


def _one_error_line(result: subprocess.CompletedProcess[str], status: int) -> str:
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("icswatch: ")
    return lines[0]


def test_replay_stores_its_alerts_by_default(_store_in_tmp: Path) -> None:
    expected = _alerts_printed(*CAPTURES)
    assert len(expected) >= 4
    result = icswatch("replay", "--format", "none", *CAPTURES)
    assert result.returncode == 0, result.stderr
    assert (f"  stored: {len(expected)} alerts in {_store_in_tmp} "
            f"({len(expected)} alerts in the store)\n") in result.stderr
    stored = _stored(_store_in_tmp)
    assert set(stored) == {doc["event"]["id"] for doc in expected}
    for doc in expected:
        assert stored[doc["event"]["id"]]["ics"]["alert"].pop("status") == "open"
        assert stored[doc["event"]["id"]]["event"].pop("ingested")  # when it was stored
        assert stored[doc["event"]["id"]] == doc


def test_a_second_replay_does_not_duplicate(_store_in_tmp: Path) -> None:
    first = icswatch("replay", "--format", "alerts", *CAPTURES)
    assert first.returncode == 0, first.stderr
    count = len(_stored(_store_in_tmp))
    assert count > 0
    second = icswatch("replay", "--format", "alerts", *CAPTURES)
    assert second.returncode == 0, second.stderr
    assert first.stdout == second.stdout
    assert f"({count} alerts in the store)" in second.stderr
    assert len(_stored(_store_in_tmp)) == count
    third = icswatch("replay", "--format", "none", MODBUS / "attack-umas.pcapng")
    assert third.returncode == 0, third.stderr
    assert len(_stored(_store_in_tmp)) > count


def test_store_option_overrides_the_environment(tmp_path: Path, _store_in_tmp: Path) -> None:
    chosen = tmp_path / "chosen" / "alerts.db"
    result = icswatch("replay", "--format", "none", "--store", chosen, CAPTURES[0])
    assert result.returncode == 0, result.stderr
    assert f"in {chosen} (" in result.stderr
    assert _stored(chosen)
    assert not _store_in_tmp.exists()


def test_store_none_writes_nothing(_store_in_tmp: Path) -> None:
    result = icswatch("replay", "--format", "none", "--store", "none", CAPTURES[0])
    assert result.returncode == 0, result.stderr
    assert "stored:" not in result.stderr
    assert not _store_in_tmp.exists()


def test_default_location_without_icswatch_db(tmp_path: Path) -> None:
    env = {"ICSWATCH_DB": "", "XDG_DATA_HOME": str(tmp_path / "data")}
    result = icswatch("replay", "--format", "none", "--no-summary", CAPTURES[0], env=env)
    assert (result.returncode, result.stderr) == (0, "")
    assert _stored(tmp_path / "data" / "icswatch" / "icswatch.db")


def test_events_only_when_asked(_store_in_tmp: Path) -> None:
    result = icswatch("replay", "--format", "none", "--store-events", CAPTURES[1])
    assert result.returncode == 0, result.stderr
    events = int(result.stderr.split(" events (")[0].rsplit(" ", 1)[1])
    assert f" alerts and {events} events in {_store_in_tmp}" in result.stderr
    with sqlite3.connect(_store_in_tmp) as raw:
        assert raw.execute("SELECT count(*) FROM events").fetchone() == (events,)


def test_no_rules_no_store(_store_in_tmp: Path) -> None:
    result = icswatch("replay", "--format", "none", "--no-rules", CAPTURES[0])
    assert result.returncode == 0, result.stderr
    assert not _store_in_tmp.exists()


# -- a store that cannot be used ----------------------------------------------------


def test_unusable_store_path_is_bad_usage(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = icswatch("replay", "--store", blocker / "s.db", CAPTURES[0])
    line = _one_error_line(result, 2)
    assert line.startswith(f"icswatch: store {blocker / 's.db'}: cannot create its folder")
    assert result.stdout == ""


def test_unusable_default_store_says_how_to_go_without(tmp_path: Path) -> None:
    result = icswatch("replay", CAPTURES[0], env={"ICSWATCH_DB": str(tmp_path)})
    line = _one_error_line(result, 2)
    assert line == (f"icswatch: store {tmp_path}: is a folder, not a file "
                    "(--store none replays without storing)")


def test_corrupt_store_is_bad_usage(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"\0garbage" * 1000)
    line = _one_error_line(icswatch("replay", "--store", path, CAPTURES[0]), 2)
    assert line.startswith(f"icswatch: store {path}: not an icswatch store")


def test_store_failure_while_running_exits_1(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        _store_in_tmp: Path) -> None:
    def broken(self: SqliteStore, alerts: Any) -> None:
        raise StoreError(f"store {self.path}: failed: disk I/O error")

    monkeypatch.setattr(SqliteStore, "write_alerts", broken)
    status = cli.main(["replay", "--format", "alerts", "--no-progress", str(CAPTURES[0])])
    captured = capsys.readouterr()
    assert status == 1
    assert captured.err == f"icswatch: store {_store_in_tmp}: failed: disk I/O error\n"
    assert "ALERT" in captured.out  # what was printed stays printed
