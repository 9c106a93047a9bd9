"""A loaded, compiled rule and the parts it is built of."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from detectors.rules.conditions import Matcher
from detectors.rules.fields import Getter
from sensor.event import IcsEvent

# Builds the key a threshold, sequence or suppression groups events by.
KeyFunction = Callable[[IcsEvent], tuple[Any, ...]]

# A compiled explain template: (literal text, then what to render after it:
# a field getter, an extra's name such as "count", or nothing).
Template = tuple[tuple[str, Getter | str | None], ...]

# The event attributes rules are indexed by, in the order of the index key.
INDEX_KEYS: Final = ("protocol", "operation", "direction", "access", "exception", "malformed")


@dataclass(frozen=True, slots=True)
class Threshold:
    """Fire when ``count`` matching events (or distinct values of
    ``distinct``) share a key within ``window`` seconds."""

    count: int
    window: float
    by: KeyFunction
    by_names: tuple[str, ...]
    distinct: Getter | None = None
    distinct_name: str | None = None


@dataclass(frozen=True, slots=True)
class Sequence:
    """Fire when events matching each step arrive in order, for one key,
    within ``window`` seconds of the first."""

    steps: tuple[Matcher, ...]
    window: float
    by: KeyFunction
    by_names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Suppression:
    """At most ``max_alerts`` alerts per key within ``window`` seconds."""

    window: float
    by: KeyFunction
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
    # What the rule index guarantees before the matcher runs: for each of
    # INDEX_KEYS the rule pins, the values an event may have.
    pins: dict[str, frozenset[Any]]
    matcher: Matcher | None
    explain: Template
    # The Chinese texts, when the pack gives them ("" and () when not): the
    # zh-CN explain has the same placeholders as the English one.
    description_zh: str = ""
    explain_zh: Template = ()
    threshold: Threshold | None = None
    sequence: Sequence | None = None
    suppress: Suppression | None = None
    tests: tuple[RuleTest, ...] = ()
    enabled: bool = True
    inactive_reason: str | None = None
    # The empty host groups that make the rule inactive (the reason, as data).
    inactive_groups: tuple[str, ...] = ()
    source: dict[str, Any] = field(default_factory=dict)
    # The matcher tests only flow-level fields (addresses, ports): its
    # result is cached per flow direction.
    flow_level: bool = False

    @property
    def protocols(self) -> tuple[str, ...] | None:
        pinned = self.pins.get("protocol")
        return tuple(sorted(pinned)) if pinned is not None else None

    @property
    def active(self) -> bool:
        return self.enabled and self.inactive_reason is None
