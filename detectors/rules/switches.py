"""Rules switched on or off by the site, kept apart from the packs.

Shipped packs are never edited in place: the console records an operator's
choice in a small YAML file (``disabled: [ids]``, ``enabled: [ids]``) that
every loader of the rules applies after reading the packs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

from detectors.rules.loader import RuleSet


class SwitchesError(ValueError):
    """The switches file is unreadable or not in the expected shape."""


def read_switches(path: Path) -> dict[str, bool]:
    """Rule id → enabled, from ``path`` (no file: no switches)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SwitchesError(f"{path}: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise SwitchesError(f"{path}: {exc}") from None
    if not isinstance(doc, dict) or not set(doc) <= {"enabled", "disabled"}:
        raise SwitchesError(f"{path}: a mapping with 'enabled:' and 'disabled:' lists")
    switches: dict[str, bool] = {}
    for key, state in (("enabled", True), ("disabled", False)):
        ids = doc.get(key) or []
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise SwitchesError(f"{path}: {key} is a list of rule ids")
        switches.update(dict.fromkeys(ids, state))
    return switches


def write_switches(path: Path, switches: dict[str, bool]) -> None:
    """Replace the file atomically (a reader never sees half of it)."""
    doc = {
        "enabled": sorted(rule for rule, on in switches.items() if on),
        "disabled": sorted(rule for rule, on in switches.items() if not on),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".switches-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write("# Written by the icswatch console: rules switched on or off here.\n")
            yaml.safe_dump(doc, out, sort_keys=True)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def apply_switches(ruleset: RuleSet, switches: dict[str, bool]) -> None:
    for rule in ruleset.rules:
        state = switches.get(rule.id)
        if state is not None:
            rule.enabled = state
