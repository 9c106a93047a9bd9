"""Running compiled rules over events: candidate look-up, thresholds,
sequences, suppression, and the alerts that come out.

The hot path is one nested dict look-up for the event's (protocol,
operation) giving the tuple of rules that can match it, then each rule's
compiled matcher. Per-key state exists only for rules that fired at least
part-way, and is capped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence as Seq
from typing import Any, Final

from detectors.alert import MAX_SAMPLE_EVENTS, Alert
from detectors.rules.loader import RuleSet
from detectors.rules.model import Rule
from sensor.event import IcsEvent

MAX_KEYS_PER_RULE: Final = 10_000
NO_ALERTS: Final[tuple[Alert, ...]] = ()


def _key(getters: tuple[Any, ...], event: IcsEvent) -> tuple[Any, ...]:
    return tuple(_hashable(g(event)) for g in getters)


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, dict):
        return tuple(sorted(value.items()))
    return value


def _render(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        shown = ",".join(_render(v) for v in value[:8])
        return f"[{shown}{',…' if len(value) > 8 else ''}]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class _Window:
    """Events of one threshold key within the window."""

    __slots__ = ("events", "first_events", "values")

    def __init__(self) -> None:
        self.events: deque[tuple[float, Any]] = deque()
        self.values: dict[Any, float] = {}
        self.first_events: list[IcsEvent] = []


class _Progress:
    """How far one key has got through a sequence."""

    __slots__ = ("events", "started", "step")

    def __init__(self, started: float) -> None:
        self.started = started
        self.step = 0
        self.events: list[IcsEvent] = []


class _RuleState:
    __slots__ = ("alerts", "progress", "suppressed", "suppressions", "windows")

    def __init__(self) -> None:
        self.windows: dict[tuple[Any, ...], _Window] = {}
        self.progress: dict[tuple[Any, ...], _Progress] = {}
        self.suppressions: dict[tuple[Any, ...], tuple[float, int]] = {}
        self.alerts = 0
        self.suppressed = 0


class RuleEngine:
    """Matches events against a `RuleSet`; `reload` swaps rules in place,
    keeping the state of rules whose definition did not change."""

    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self.rules: list[Rule] = []
        self.state: dict[str, _RuleState] = {}
        self._candidates: dict[str, dict[str, tuple[Rule, ...]]] = {}
        self.load(ruleset)

    def load(self, ruleset: RuleSet) -> None:
        old = {rule.id: rule.source for rule in self.rules}
        self.ruleset = ruleset
        self.rules = ruleset.active
        self.state = {
            rule.id: self.state[rule.id]
            if rule.id in self.state and old.get(rule.id) == rule.source else _RuleState()
            for rule in self.rules
        }
        self._candidates = {}

    reload = load

    def candidates(self, protocol: str, operation: str) -> tuple[Rule, ...]:
        by_operation = self._candidates.get(protocol)
        if by_operation is None:
            by_operation = self._candidates[protocol] = {}
        found = by_operation.get(operation)
        if found is None:
            found = by_operation[operation] = tuple(
                rule for rule in self.rules
                if (rule.protocols is None or protocol in rule.protocols)
                and (rule.operations is None or operation in rule.operations)
            )
        return found

    def process(self, event: IcsEvent) -> Seq[Alert]:
        by_operation = self._candidates.get(event.protocol)
        rules = by_operation.get(event.operation) if by_operation is not None else None
        if rules is None:
            rules = self.candidates(event.protocol, event.operation)
        if not rules:
            return NO_ALERTS
        alerts: list[Alert] | None = None
        for rule in rules:
            if rule.sequence is not None:
                alert = self._sequence(rule, event)
            elif rule.matcher is None or not rule.matcher(event):
                continue
            elif rule.threshold is not None:
                alert = self._threshold(rule, event)
            else:
                alert = self._single(rule, event)
            if alert is not None:
                if alerts is None:
                    alerts = []
                alerts.append(alert)
        return alerts if alerts is not None else NO_ALERTS

    # -- kinds of rule -----------------------------------------------------

    def _single(self, rule: Rule, event: IcsEvent) -> Alert | None:
        return self._emit(rule, [event], event.ts, event.ts, 1, {})

    def _threshold(self, rule: Rule, event: IcsEvent) -> Alert | None:
        threshold = rule.threshold
        assert threshold is not None
        state = self.state[rule.id]
        key = _key(threshold.by, event)
        window = state.windows.get(key)
        if window is None:
            if len(state.windows) >= MAX_KEYS_PER_RULE:
                state.windows.pop(next(iter(state.windows)))
            window = state.windows[key] = _Window()
        now = event.ts
        horizon = now - threshold.window
        events = window.events
        while events and events[0][0] < horizon:
            events.popleft()
        value = _hashable(threshold.distinct(event)) if threshold.distinct else None
        events.append((now, value))
        if len(window.first_events) < MAX_SAMPLE_EVENTS:
            window.first_events.append(event)
        if threshold.distinct is not None:
            values = window.values
            for stale in [v for v, seen in values.items() if seen < horizon]:
                del values[stale]
            if value is not None:
                values[value] = now
            reached = len(values)
        else:
            reached = len(events)
        if reached < threshold.count:
            return None
        first_ts = events[0][0]
        extras = {
            "count": len(events),
            "distinct_count": len(window.values),
            "distinct_values": sorted(window.values, key=repr),
            "window": f"{threshold.window:g}s",
        }
        sample = window.first_events
        del state.windows[key]  # a new alert needs a new full window
        return self._emit(rule, sample, first_ts, now, len(events), extras)

    def _sequence(self, rule: Rule, event: IcsEvent) -> Alert | None:
        sequence = rule.sequence
        assert sequence is not None
        state = self.state[rule.id]
        key = _key(sequence.by, event)
        progress = state.progress.get(key)
        if progress is not None and event.ts - progress.started > sequence.window:
            del state.progress[key]
            progress = None
        step = progress.step if progress is not None else 0
        if not sequence.steps[step](event):
            if progress is None or not sequence.steps[0](event):
                return None
            progress = None  # the first step again: start over from here
            step = 0
        if progress is None:
            if len(state.progress) >= MAX_KEYS_PER_RULE:
                state.progress.pop(next(iter(state.progress)))
            progress = state.progress[key] = _Progress(event.ts)
        if len(progress.events) < MAX_SAMPLE_EVENTS:
            progress.events.append(event)
        progress.step = step + 1
        if progress.step < len(sequence.steps):
            return None
        del state.progress[key]
        return self._emit(rule, progress.events, progress.started, event.ts,
                          len(progress.events), {})

    # -- alerts ------------------------------------------------------------

    def _emit(
        self, rule: Rule, events: list[IcsEvent], first_ts: float, last_ts: float, count: int,
        extras: dict[str, Any],
    ) -> Alert | None:
        state = self.state[rule.id]
        last = events[-1]
        suppress = rule.suppress
        if suppress is not None:
            key = _key(suppress.by, last)
            since, emitted = state.suppressions.get(key, (0.0, 0))
            if emitted and last_ts - since <= suppress.window:
                if emitted >= suppress.max_alerts:
                    state.suppressed += 1
                    return None
                state.suppressions[key] = (since, emitted + 1)
            else:
                if len(state.suppressions) >= MAX_KEYS_PER_RULE:
                    state.suppressions.pop(next(iter(state.suppressions)))
                state.suppressions[key] = (last_ts, 1)
        state.alerts += 1
        first = events[0]
        sources = {e.src_ip for e in events}
        destinations = {e.dst_ip for e in events}
        return Alert(
            rule_id=rule.id,
            title=rule.title,
            title_zh=rule.title_zh,
            severity=rule.severity,
            techniques=rule.techniques,
            explanation=self._explain(rule, last, extras),
            first_ts=first_ts,
            last_ts=last_ts,
            count=count,
            events=list(events),
            protocol=first.protocol,
            source_ip=first.src_ip if len(sources) == 1 else None,
            destination_ip=first.dst_ip if len(destinations) == 1 else None,
            description=rule.description,
            references=rule.references,
        )

    @staticmethod
    def _explain(rule: Rule, event: IcsEvent, extras: dict[str, Any]) -> str:
        out: list[str] = []
        for literal, token in rule.explain:
            out.append(literal)
            if token is None:
                continue
            if isinstance(token, str):
                out.append(_render(extras.get(token, 1 if token == "count" else None)))
            else:
                out.append(_render(token(event)))
        return "".join(out)

    def statistics(self) -> dict[str, tuple[int, int]]:
        """Alerts raised and alerts suppressed, per rule id."""
        return {rule_id: (s.alerts, s.suppressed) for rule_id, s in self.state.items()}
