"""`icswatch rules check | list | test`, and loading rules for a replay."""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path
from typing import Any, TextIO

from console.errors import UsageError
from console.paths import site_rules_dir
from console.rule_admin import SiteRules
from detectors.rules.conditions import HostGroups, Network
from detectors.rules.engine import RuleEngine
from detectors.rules.loader import (
    RuleSet,
    load_groups_file,
    load_rules,
    pack_files,
)
from detectors.rules.model import Rule
from detectors.rules.switches import SwitchesError, apply_switches, read_switches
from detectors.rules.yamlsource import YamlError
from sensor.runtime import Sensor


def add_rules_commands(commands: Any) -> None:
    rules = commands.add_parser("rules", help="check, list and test rule packs")
    sub = rules.add_subparsers(dest="rules_command", metavar="ACTION", required=True,
                               parser_class=type(rules))
    check = sub.add_parser("check", help="validate rule packs (default: the built-in rules/)")
    check.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    listing = sub.add_parser("list", help="list rules with severity, techniques and status")
    listing.add_argument("--rules", action="append", type=Path, metavar="PATH")
    listing.add_argument("--groups", metavar="FILE")
    test = sub.add_parser("test", help="run each rule against its own test captures")
    test.add_argument("ids", nargs="*", metavar="RULE_ID")
    test.add_argument("--rules", action="append", type=Path, metavar="PATH")


def _paths(values: list[Any] | None) -> list[Path] | None:
    return [Path(v) for v in values] if values else None


def _load(paths: list[Path] | None,
          site_groups: dict[str, list[Network]] | None) -> RuleSet:
    """The packs given, else the rules in force: the shipped packs and the
    site's (uploaded through the console), with the site's switches."""
    if paths is not None:
        return load_rules(paths, site_groups)
    site = SiteRules(site_rules_dir())
    ruleset = load_rules(site.pack_paths(), site_groups)
    try:
        apply_switches(ruleset, read_switches(site.switches))
    except SwitchesError as exc:
        raise UsageError(str(exc)) from None
    return ruleset


def load_for_replay(rules: list[str] | None, groups: str | None, err: TextIO) -> RuleEngine:
    """Load the packs; report every rule error on stderr and go on without
    those rules (one bad rule never stops the others)."""
    paths = _paths(rules)
    for path in paths or []:
        if not path.exists():
            raise UsageError(f"--rules {path}: no such file or folder")
    site = load_groups_file(Path(groups)) if groups else None
    ruleset = _load(paths, site)
    for error in ruleset.errors:
        err.write(f"icswatch: rule error: {error}\n")
    return RuleEngine(ruleset)


class RuleReloader:
    """Reloads a running engine's rules when a pack or the groups file
    changes on disk, or on SIGHUP, without stopping the sensor. Rules whose
    definition did not change keep their state (thresholds under way); a
    pack with errors is reported and its good rules still load."""

    def __init__(self, engine: RuleEngine, rules: list[str] | None, groups: str | None,
                 err: TextIO, min_interval: float = 1.0) -> None:
        self.engine = engine
        self.paths = _paths(rules)
        self.groups = Path(groups) if groups else None
        self.err = err
        self.min_interval = min_interval
        self.requested = False
        self.checked = time.monotonic()
        self.reloads = 0
        self.stamps = self._stamps()

    def _files(self) -> list[Path]:
        if self.paths:
            files = pack_files(self.paths)
        else:
            site = SiteRules(site_rules_dir())
            files = [*pack_files(site.pack_paths()), site.switches]
        return files + ([self.groups] if self.groups else [])

    def _stamps(self) -> dict[Path, int]:
        stamps: dict[Path, int] = {}
        for path in self._files():
            try:
                stamps[path] = path.stat().st_mtime_ns
            except OSError:
                stamps[path] = -1
        return stamps

    def install_sighup(self) -> None:
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda _signum, _frame: self.request())

    def request(self) -> None:
        self.requested = True

    def maybe_reload(self) -> bool:
        """Cheap unless due: at most one look at the files per interval."""
        now = time.monotonic()
        if not self.requested and now - self.checked < self.min_interval:
            return False
        self.checked = now
        stamps = self._stamps()
        if not self.requested and stamps == self.stamps:
            return False
        self.requested = False
        self.stamps = stamps
        try:
            site = load_groups_file(self.groups) if self.groups else None
        except YamlError as exc:
            self.err.write(f"icswatch: rules not reloaded: {exc}\n")
            return False
        try:
            ruleset = _load(self.paths, site)
        except UsageError as exc:
            self.err.write(f"icswatch: rules not reloaded: {exc}\n")
            return False
        for error in ruleset.errors:
            self.err.write(f"icswatch: rule error: {error}\n")
        self.engine.reload(ruleset)
        self.reloads += 1
        self.err.write(f"icswatch: rules reloaded: {len(ruleset.active)} active\n")
        return True


def _status(rule: Rule) -> str:
    if not rule.enabled:
        return "disabled"
    if rule.inactive_reason:
        return f"inactive: {rule.inactive_reason}"
    return "active"


def run_rules_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.rules_command == "check":
        for path in args.paths:
            if not path.exists():
                err.write(f"icswatch: {path}: no such file or folder\n")
                return 2
        ruleset = load_rules(args.paths or None)
        for error in ruleset.errors:
            out.write(f"{error}\n")
        files = len(ruleset.files)
        out.write(f"{len(ruleset.rules)} rules loaded from {files} file(s), "
                  f"{len(ruleset.errors)} error(s)\n")
        return 1 if ruleset.errors else 0
    if args.rules_command == "list":
        site = load_groups_file(Path(args.groups)) if args.groups else None
        ruleset = _load(args.rules, site)
        for error in ruleset.errors:
            err.write(f"icswatch: rule error: {error}\n")
        for rule in ruleset.rules:
            protocols = ",".join(rule.protocols) if rule.protocols else "any"
            out.write(f"{rule.id:<18} {rule.severity:<8} {','.join(rule.techniques):<18} "
                      f"{protocols:<8} {rule.title} / {rule.title_zh} [{_status(rule)}]\n")
        return 0
    return _test_rules(args, out, err)


def _test_rules(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    ruleset = load_rules(args.rules)
    for error in ruleset.errors:
        err.write(f"icswatch: rule error: {error}\n")
    failures = 0
    tested = 0
    for rule in ruleset.rules:
        if args.ids and rule.id not in args.ids:
            continue
        if not rule.tests:
            out.write(f"{rule.id}: NO TEST CAPTURE\n")
            failures += 1
            continue
        for case in rule.tests:
            tested += 1
            alerts = run_rule_on_capture(ruleset, rule.id, case.capture, case.groups)
            ok = alerts == case.alerts
            failures += not ok
            verdict = "ok" if ok else f"FAILED (expected {case.alerts})"
            out.write(f"{rule.id}: {case.capture.name}: {alerts} alert(s) {verdict}\n")
    out.write(f"{tested} rule tests, {failures} failed\n")
    return 1 if failures or ruleset.errors else 0


def run_rule_on_capture(
    ruleset: RuleSet, rule_id: str, capture: Path, groups: dict[str, list[str]]
) -> int:
    """Replay ``capture`` with one rule (and the test's host groups): the alert count."""
    site = {name: HostGroups.parse_members(members, 0) for name, members in groups.items()}
    reloaded = load_rules(ruleset.files, site)
    engine = RuleEngine(reloaded)
    engine.load(RuleSet(rules=[r for r in reloaded.rules if r.id == rule_id],
                        groups=reloaded.groups))
    count = 0

    def consume(event: Any) -> None:
        nonlocal count
        count += len(engine.process(event))

    Sensor(consume).replay([capture])
    return count
