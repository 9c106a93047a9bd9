"""The site's rule choices (made in the console) hold for `icswatch replay`
and `icswatch rules list`: switches and uploaded packs."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

from console.cli import main
from console.paths import site_rules_dir
from console.rule_admin import PackRefused, RuleAdmin, SiteRules

CAPTURE = str(Path(__file__).resolve().parents[2] / "pcaps" / "modbus"
              / "attack-force-listen-only.pcapng")


def _run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        status = main(list(args))
    finally:
        sys.stdout, sys.stderr = saved
    return status, out.getvalue(), err.getvalue()


def _alerts() -> str:
    status, out, _ = _run("replay", "--format", "alerts", "--store", "none", "--no-summary",
                          CAPTURE)
    assert status == 0
    return out


def test_a_rule_switched_off_in_the_console_stays_off_for_replay() -> None:
    assert "ICSW-MODBUS-002" in _alerts()
    admin = RuleAdmin(SiteRules(site_rules_dir()))
    assert admin.set_enabled("ICSW-MODBUS-002", False) is not None
    assert "ICSW-MODBUS-002" not in _alerts()
    listed = _run("rules", "list")[1]
    assert next(line for line in listed.splitlines()
                if line.startswith("ICSW-MODBUS-002")).endswith("[disabled]")
    admin.set_enabled("ICSW-MODBUS-002", True)
    assert "ICSW-MODBUS-002" in _alerts()


def test_an_uploaded_pack_is_loaded_by_replay() -> None:
    pack = """\
rules:
  - id: SITE-DIAG-001
    title: {en: Any Modbus diagnostics, zh-CN: Modbus诊断}
    severity: low
    attack: [T0888]
    match: {protocol: modbus, direction: request, operation: diagnostics}
    explain: "{source.ip} ran diagnostics"
""".encode()
    admin = RuleAdmin(SiteRules(site_rules_dir()))
    assert admin.add_pack("site-diag.yml", pack) == 1
    assert "SITE-DIAG-001" in _alerts()
    with pytest.raises(PackRefused, match="holds no rule"):
        admin.add_pack("empty.yml", b"rules: []\n")


def test_a_broken_switches_file_is_bad_usage() -> None:
    switches = SiteRules(site_rules_dir()).switches
    switches.parent.mkdir(parents=True, exist_ok=True)
    switches.write_text("disabled: ICSW-MODBUS-002\n")
    status, _, err = _run("replay", "--format", "none", "--store", "none", CAPTURE)
    assert status == 2
    assert err == f"icswatch: {switches}: disabled is a list of rule ids\n"
    assert os.environ["XDG_DATA_HOME"] in str(switches)  # never the user's own
