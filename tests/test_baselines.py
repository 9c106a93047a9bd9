"""Golden files: the exact JSON lines (events and alerts) of every capture in
pcaps/, as `icswatch replay --format jsonl` writes them with the built-in
rules. A change in behaviour shows as a diff here; review it, then rewrite
the baselines on purpose with

    ICSWATCH_UPDATE_BASELINES=1 python3 -m pytest tests/test_baselines.py

and commit the diff with the change that caused it.
"""

from __future__ import annotations

import difflib
import io
import os
from pathlib import Path

import pytest

from console.output import JsonLinesWriter
from detectors.rules.engine import RuleEngine
from detectors.rules.loader import load_rules
from sensor.event import IcsEvent
from sensor.runtime import Sensor

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "pcaps"
BASELINES = Path(__file__).resolve().parent / "baseline"
CAPTURES = sorted(p for p in PCAPS.rglob("*") if p.suffix in (".pcap", ".pcapng"))


def _replay_jsonl(capture: Path) -> str:
    out = io.StringIO()
    writer = JsonLinesWriter(out)
    engine = RuleEngine(load_rules())

    def consume(event: IcsEvent) -> None:
        writer.event(event)
        for alert in engine.process(event):
            writer.alert(alert)

    Sensor(consume).replay([capture])
    return out.getvalue()


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: str(p.relative_to(PCAPS)))
def test_capture_matches_its_baseline(capture: Path) -> None:
    baseline = BASELINES / capture.relative_to(PCAPS).with_suffix(".jsonl")
    actual = _replay_jsonl(capture)
    assert actual == _replay_jsonl(capture), "replay is not deterministic"
    if os.environ.get("ICSWATCH_UPDATE_BASELINES"):
        baseline.parent.mkdir(parents=True, exist_ok=True)
        baseline.write_text(actual, encoding="utf-8")
        return
    assert baseline.exists(), f"no baseline {baseline}: run with ICSWATCH_UPDATE_BASELINES=1"
    expected = baseline.read_text(encoding="utf-8")
    if actual != expected:
        diff = "".join(difflib.unified_diff(
            expected.splitlines(keepends=True), actual.splitlines(keepends=True),
            str(baseline), "replay", n=0))
        pytest.fail(f"{capture.name} differs from its baseline:\n{diff[:6000]}")
