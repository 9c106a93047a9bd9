"""Rule management for the console: the rules in force, switching one on or
off, and adding a pack uploaded by an administrator.

Rules in force are the shipped packs (``rules/``) plus the site's packs
(``packs/`` under `console.paths.site_rules_dir`), with the site's switches
(``switches.yml`` there) applied. `icswatch replay` loads the same set when
no ``--rules`` is given, so a choice made in the console holds for the next
run, and a running sensor's `RuleReloader` picks it up.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from detectors.rules.loader import DEFAULT_RULES_DIR, RuleSet, load_rules, pack_files
from detectors.rules.model import Rule
from detectors.rules.switches import apply_switches, read_switches, write_switches

MAX_PACK_BYTES: Final = 1 << 20
PACK_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,80}\.ya?ml")


class PackRefused(ValueError):
    """An uploaded pack that is not taken; the message names file, line and
    problem."""


@dataclass(frozen=True, slots=True)
class SiteRules:
    directory: Path

    @property
    def packs(self) -> Path:
        return self.directory / "packs"

    @property
    def switches(self) -> Path:
        return self.directory / "switches.yml"

    def pack_paths(self) -> list[Path]:
        """What to load: the shipped packs, then the site's."""
        return [DEFAULT_RULES_DIR] + ([self.packs] if self.packs.is_dir() else [])


def load_site_rules(site: SiteRules) -> RuleSet:
    ruleset = load_rules(site.pack_paths())
    apply_switches(ruleset, read_switches(site.switches))
    return ruleset


def rule_summary(rule: Rule) -> dict[str, Any]:
    protocols = rule.protocols
    return {
        "id": rule.id, "title": rule.title, "title_zh": rule.title_zh,
        "severity": rule.severity,
        "protocol": protocols[0] if protocols and len(protocols) == 1 else
        (",".join(protocols) if protocols else None),
        "techniques": list(rule.techniques), "enabled": rule.enabled, "active": rule.active,
        "inactive_reason": rule.inactive_reason, "inactive_groups": list(rule.inactive_groups),
        "pack": rule.path.name,
        "description": rule.description, "description_zh": rule.description_zh,
    }


class RuleAdmin:
    def __init__(self, site: SiteRules) -> None:
        self.site = site
        self._lock = threading.RLock()
        self._cached: tuple[tuple[tuple[str, int], ...], RuleSet] | None = None

    def _stamps(self) -> tuple[tuple[str, int], ...]:
        stamps = []
        for path in [*pack_files(self.site.pack_paths()), self.site.switches]:
            try:
                stamps.append((str(path), path.stat().st_mtime_ns))
            except OSError:
                stamps.append((str(path), -1))
        return tuple(stamps)

    def ruleset(self) -> RuleSet:
        """The rules in force, loaded again only when a file changed."""
        with self._lock:
            stamps = self._stamps()
            if self._cached is None or self._cached[0] != stamps:
                self._cached = (stamps, load_site_rules(self.site))
            return self._cached[1]

    def names(self) -> dict[str, str]:
        return {rule.id: rule.title for rule in self.ruleset().rules}

    def set_enabled(self, rule_id: str, enabled: bool) -> Rule | None:
        """Switch a rule; None when no rule has that id."""
        with self._lock:
            ruleset = load_site_rules(self.site)
            rule = next((rule for rule in ruleset.rules if rule.id == rule_id), None)
            if rule is None:
                return None
            switches = read_switches(self.site.switches)
            switches[rule_id] = enabled
            write_switches(self.site.switches, switches)
            rule.enabled = enabled
            return rule

    def add_pack(self, name: str, content: bytes) -> int:
        """Check the pack together with the rules in force and, when every
        rule of it loads, install it (replacing a site pack of the same
        name). The number of rules it holds."""
        if len(content) > MAX_PACK_BYTES:
            raise PackRefused(f"{name}: larger than {MAX_PACK_BYTES} bytes")
        if not PACK_NAME.fullmatch(name):
            raise PackRefused(f"{name!r}: a pack is named like site-modbus.yml "
                              "(letters, digits, . _ -, ending .yml or .yaml)")
        try:
            content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PackRefused(f"{name}: not UTF-8 text (byte {exc.start})") from None
        with self._lock, tempfile.TemporaryDirectory(prefix="icswatch-pack-") as scratch:
            # The candidate loads last, so a clash (a duplicate id) is its error.
            others, trial = Path(scratch) / "others", Path(scratch) / "candidate"
            others.mkdir()
            trial.mkdir()
            if self.site.packs.is_dir():
                for existing in self.site.packs.iterdir():
                    if existing.name != name and existing.is_file():
                        shutil.copy2(existing, others / existing.name)
            candidate = trial / name
            candidate.write_bytes(content)
            ruleset = load_rules([DEFAULT_RULES_DIR, others, trial])
            errors = [error for error in ruleset.errors if error.path == candidate]
            if errors:
                first = errors[0]
                more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
                where = f"{name} line {first.line}" if first.line else name
                rule = f" rule {first.rule_id}:" if first.rule_id else ""
                raise PackRefused(f"{where}:{rule} {first.message}{more}")
            count = sum(1 for rule in ruleset.rules if rule.path == candidate)
            if not count:
                raise PackRefused(f"{name}: the pack holds no rule")
            self.site.packs.mkdir(parents=True, exist_ok=True)
            staged = self.site.packs / f".{name}.new"
            staged.write_bytes(content)
            os.replace(staged, self.site.packs / name)
            return count
