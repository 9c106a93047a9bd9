"""The shipped rule pack: valid, every rule fired by its own captures, and
silent on everything else except the alerts each capture documents.

A rule's ``tests:`` list is the documentation: a capture may fire a rule only
if that rule names the capture, with the exact alert count.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from console.rules_cli import run_rule_on_capture
from detectors.rules.conditions import HostGroups
from detectors.rules.engine import RuleEngine
from detectors.rules.loader import DEFAULT_RULES_DIR, RuleSet, load_rules
from detectors.rules.model import RuleTest
from sensor.event import IcsEvent
from sensor.runtime import Sensor

ROOT = Path(__file__).resolve().parents[2]
PCAPS = ROOT / "pcaps"
SHARED_PCAPS = ROOT.parent / "shared" / "pcaps"
# The hosts the test captures treat as legitimate Modbus masters.
SITE_GROUPS = {
    "modbus_masters": ["127.0.0.1"], "dnp3_masters": ["127.0.0.1"],
    "s7comm_masters": ["127.0.0.1"], "s7comm_engineering": ["127.0.0.1"],
    "enip_masters": ["127.0.0.1"], "iec104_masters": ["127.0.0.1"],
}

HAN = re.compile(r"[\u4e00-\u9fff]")
HAN_SPACE_HAN = re.compile(r"[\u4e00-\u9fff]\s+[\u4e00-\u9fff]")

BUILTIN = load_rules([DEFAULT_RULES_DIR])
CASES = [(rule.id, case) for rule in BUILTIN.rules for case in rule.tests]


def _captures(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".pcap", ".pcapng", ".gz"))


def _alerts_by_rule(ruleset: RuleSet, capture: Path) -> Counter[str]:
    engine = RuleEngine(ruleset)
    counts: Counter[str] = Counter()

    def consume(event: IcsEvent) -> None:
        for alert in engine.process(event):
            counts[alert.rule_id] += 1

    Sensor(consume).replay([capture])
    return counts


def test_builtin_pack_is_valid() -> None:
    assert BUILTIN.errors == []
    modbus_rules = [r for r in BUILTIN.rules if r.protocols == ("modbus",)]
    assert len(modbus_rules) >= 15
    for rule in BUILTIN.rules:
        assert rule.tests, f"{rule.id} has no test capture"
        assert rule.title_zh and rule.title


def test_every_builtin_rule_speaks_chinese() -> None:
    """zh-CN operators read the whole alert in Chinese: every shipped rule has
    a Chinese description and explanation (the loader checks the explanation
    uses the English one's placeholders). A YAML folded block would join
    Chinese lines with a space: none may sit between two Chinese characters."""
    for rule in BUILTIN.rules:
        assert rule.description and rule.description_zh, f"{rule.id}: description"
        assert rule.explain_zh, f"{rule.id}: explain has no zh-CN"
        literals = [literal for literal, _token in rule.explain_zh]
        for text in (rule.title_zh, rule.description_zh, "".join(literals)):
            assert HAN.search(text), f"{rule.id}: {text!r} is not Chinese"
        for text in (rule.title_zh, rule.description_zh, *literals):
            assert not HAN_SPACE_HAN.search(text), f"{rule.id}: stray space in {text!r}"


@pytest.mark.parametrize(
    ("rule_id", "case"), CASES, ids=[f"{r}-{c.capture.name}" for r, c in CASES]
)
def test_rule_fires_on_its_capture(rule_id: str, case: RuleTest) -> None:
    assert case.capture.exists(), f"{rule_id}: test capture {case.capture} is missing"
    assert run_rule_on_capture(BUILTIN, rule_id, case.capture, case.groups) == case.alerts


def _documented(capture: Path, with_groups: bool) -> Counter[str]:
    expected: Counter[str] = Counter()
    for rule in BUILTIN.rules:
        for case in rule.tests:
            if case.capture.resolve() == capture.resolve():
                if case.groups and not with_groups:
                    continue
                expected[rule.id] = case.alerts
    return expected


@pytest.mark.parametrize("capture", _captures(PCAPS), ids=lambda p: p.name)
def test_project_captures_raise_only_documented_alerts(capture: Path) -> None:
    site = {name: HostGroups.parse_members(v, 0) for name, v in SITE_GROUPS.items()}
    ruleset = load_rules([DEFAULT_RULES_DIR], site)
    assert _alerts_by_rule(ruleset, capture) == _documented(capture, with_groups=True)


@pytest.mark.skipif(not SHARED_PCAPS.is_dir(), reason=f"{SHARED_PCAPS} is absent")
def test_public_captures_raise_no_alert() -> None:
    """The public datasets are benign traffic: with the default (empty) site
    groups, the whole pack must stay silent on every capture."""
    raised = {
        capture.name: dict(counts)
        for capture in _captures(SHARED_PCAPS)
        if (counts := _alerts_by_rule(BUILTIN, capture))
    }
    assert raised == {}
