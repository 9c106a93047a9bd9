"""Rules reload while the sensor runs: on a changed pack file or on SIGHUP."""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path

from console.rules_cli import RuleReloader, load_for_replay

RULE = """\
  - id: {id}
    title: {{en: t, zh-CN: 测}}
    severity: {severity}
    attack: [T0855]
    match: {{protocol: modbus, access: write}}
    threshold: {{count: 3, window: 60s, by: [source.ip]}}
    explain: "{{source.ip}} wrote"
"""


def _write(path: Path, *rules: str) -> None:
    path.write_text("pack: t\nrules:\n" + "".join(rules), encoding="utf-8")
    stamp = path.stat().st_mtime_ns + 1_000_000_000
    os.utime(path, ns=(stamp, stamp))  # a visible change even within one tick


def test_changed_pack_is_reloaded_keeping_state_of_unchanged_rules(tmp_path: Path) -> None:
    pack = tmp_path / "pack.yml"
    _write(pack, RULE.format(id="A", severity="low"), RULE.format(id="B", severity="low"))
    err = io.StringIO()
    engine = load_for_replay([str(pack)], None, err)
    reloader = RuleReloader(engine, [str(pack)], None, err, min_interval=0)
    engine.state["A"].windows[("10.0.0.1",)] = marker = object()  # type: ignore[assignment]
    assert not reloader.maybe_reload()  # nothing changed

    _write(pack, RULE.format(id="A", severity="low"), RULE.format(id="B", severity="high"),
           RULE.format(id="C", severity="medium"))
    assert reloader.maybe_reload()
    assert [(r.id, r.severity) for r in engine.rules] == [
        ("A", "low"), ("B", "high"), ("C", "medium")]
    assert engine.state["A"].windows[("10.0.0.1",)] is marker  # unchanged rule kept its state
    assert "rules reloaded: 3 active" in err.getvalue()


def test_broken_edit_keeps_the_good_rules(tmp_path: Path) -> None:
    pack = tmp_path / "pack.yml"
    _write(pack, RULE.format(id="A", severity="low"))
    err = io.StringIO()
    engine = load_for_replay([str(pack)], None, err)
    reloader = RuleReloader(engine, [str(pack)], None, err, min_interval=0)
    _write(pack, RULE.format(id="A", severity="low"), RULE.format(id="B", severity="urgent"))
    assert reloader.maybe_reload()
    assert [r.id for r in engine.rules] == ["A"]
    assert f"{pack}:" in err.getvalue() and "rule B: severity must be one of" in err.getvalue()


def test_sighup_forces_a_reload(tmp_path: Path) -> None:
    pack = tmp_path / "pack.yml"
    _write(pack, RULE.format(id="A", severity="low"))
    err = io.StringIO()
    engine = load_for_replay([str(pack)], None, err)
    reloader = RuleReloader(engine, [str(pack)], None, err, min_interval=3600)
    previous = signal.getsignal(signal.SIGHUP)
    try:
        reloader.install_sighup()
        os.kill(os.getpid(), signal.SIGHUP)
        assert reloader.maybe_reload()
        assert reloader.reloads == 1
    finally:
        signal.signal(signal.SIGHUP, previous)
