"""`icswatch replay --store URL`: alerts into a real Elasticsearch node, or
into the spool (one log line) when the cluster cannot be reached."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ROOT / "pcaps" / "modbus" / "attack-function-scan.pcapng"


def _replay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "console.cli", "replay", "--format", "jsonl",
                           *args, str(CAPTURE)], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, check=False)


def _alert_ids(jsonl: str) -> list[str]:
    docs = [json.loads(line) for line in jsonl.splitlines()]
    return sorted(d["event"]["id"] for d in docs if d["event"]["kind"] == "alert")


def test_replay_into_elasticsearch(elasticsearch_url: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    first = _replay("--store", elasticsearch_url, "--spool", str(spool))
    assert first.returncode == 0, first.stderr
    expected = _alert_ids(first.stdout)
    assert len(expected) == 4
    assert f"stored: 4 alerts to {elasticsearch_url} (4 indexed)" in first.stderr
    second = _replay("--store", elasticsearch_url, "--spool", str(spool))
    assert second.returncode == 0, second.stderr
    urllib.request.urlopen(f"{elasticsearch_url}/icswatch-alerts/_refresh", data=b"")
    with urllib.request.urlopen(
            f"{elasticsearch_url}/icswatch-alerts/_search?size=100&_source=event.id") as r:
        hits = json.load(r)["hits"]["hits"]
    assert sorted(h["_source"]["event"]["id"] for h in hits) == expected


def test_unreachable_cluster_spools_with_one_line(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    result = _replay("--store", "http://127.0.0.1:9", "--spool", str(spool), "--no-summary")
    assert result.returncode == 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("icswatch: Elasticsearch at http://127.0.0.1:9 is unreachable")
    assert "Traceback" not in result.stderr
    segments = list(spool.glob("*.seg"))
    assert segments and sum(p.stat().st_size for p in segments) > 1000
