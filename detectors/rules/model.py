"""A loaded, compiled rule and the parts it is built of."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detectors.rules.conditions import Matcher
from detectors.rules.fields import Getter


@dataclass(frozen=True, slots=True)
class Threshold:
    """Fire when ``count`` matching events (or distinct values of
    ``distinct``) share a key within ``window`` seconds."""

    count: int
    window: float
    by: tuple[Getter, ...]
    by_names: tuple[str, ...]
    distinct: Getter | None = None
    distinct_name: str | None = None


@dataclass(frozen=True, slots=True)
class Sequence:
    """Fire when events matching each step arrive in order, for one key,
    within ``window`` seconds of the first."""

    steps: tuple[Matcher, ...]
    window: float
    by: tuple[Getter, ...]
    by_names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Suppression:
    """At most ``max_alerts`` alerts per key within ``window`` seconds."""

    window: float
    by: tuple[Getter, ...]
    by_names: tuple[str, ...]
    max_alerts: int = 1


@dataclass(frozen=True, slots=True)
class RuleTest:
    """A capture that must fire the rule ``alerts`` times, with the host
    groups that capture's site would have."""

    capture: Path
    alerts: int
    groups: dict[str, list[str]] = field(default_factory=dict)


@dataclass(slots=True)
class Rule:
    id: str
    title: str
    title_zh: str
    severity: str
    techniques: tuple[str, ...]
    description: str
    references: tuple[str, ...]
    path: Path
    line: int
    protocols: tuple[str, ...] | None
    operations: tuple[str, ...] | None
    matcher: Matcher | None
    explain: tuple[tuple[str, Getter | str | None], ...]
    threshold: Threshold | None = None
    sequence: Sequence | None = None
    suppress: Suppression | None = None
    tests: tuple[RuleTest, ...] = ()
    enabled: bool = True
    inactive_reason: str | None = None
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.enabled and self.inactive_reason is None
