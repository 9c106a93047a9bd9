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
from detectors.rules.model import INDEX_KEYS, Rule
from sensor.event import IcsEvent

MAX_KEYS_PER_RULE: Final = 10_000
MAX_FLOW_CACHE: Final = 100_000
NO_ALERTS: Final[tuple[Alert, ...]] = ()
IndexKey = tuple[str, str, str, str, bool, bool]


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

    __slots__ = ("events", "values")

    def __init__(self) -> None:
        self.events: deque[IcsEvent] = deque()
        self.values: dict[Any, IcsEvent] = {}


class _Progress:
    """How far one key has got through a sequence."""

    __slots__ = ("events", "started", "step")

    def __init__(self, started: float) -> None:
        self.started = started
        self.step = 0
        self.events: list[IcsEvent] = []


class _RuleState:
    __slots__ = ("alerts", "flow_matches", "progress", "suppressed", "suppressions", "windows")

    def __init__(self) -> None:
        self.flow_matches: dict[int, bool] = {}
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
        self._candidates: dict[IndexKey, tuple[Rule, ...]] = {}
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

    def candidates(self, key: IndexKey) -> tuple[Rule, ...]:
        """The rules whose pinned index values admit an event with ``key``
        (computed once per distinct key, then looked up)."""
        found = self._candidates.get(key)
        if found is None:
            found = self._candidates[key] = tuple(
                rule for rule in self.rules
                if all(value in rule.pins.get(name, (value,))
                       for name, value in zip(INDEX_KEYS, key, strict=True))
            )
        return found

    def process(self, event: IcsEvent) -> Seq[Alert]:
        key = (event.protocol, event.operation, event.direction, event.access,
               event.exception, event.malformed is not None)
        rules = self._candidates.get(key)
        if rules is None:
            rules = self.candidates(key)
        if not rules:
            return NO_ALERTS
        alerts: list[Alert] | None = None
        for rule in rules:
            if rule.sequence is not None:
                alert = self._sequence(rule, event)
            elif rule.flow_level:
                if not self._flow_match(rule, event):
                    continue
                alert = self._threshold(rule, event) if rule.threshold else self._single(
                    rule, event)
            elif rule.matcher is not None and not rule.matcher(event):
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

    def _flow_match(self, rule: Rule, event: IcsEvent) -> bool:
        cache = self.state[rule.id].flow_matches
        flow = event.flow
        key = (flow.number << 1) | event.from_initiator
        hit = cache.get(key)
        if hit is None:
            if len(cache) >= MAX_FLOW_CACHE:
                cache.clear()
            assert rule.matcher is not None
            hit = cache[key] = rule.matcher(event)
        return hit

    # -- kinds of rule -----------------------------------------------------

    def _single(self, rule: Rule, event: IcsEvent) -> Alert | None:
        return self._emit(rule, [event], event.ts, event.ts, 1, {})

    def _threshold(self, rule: Rule, event: IcsEvent) -> Alert | None:
        """Count matching events (or distinct values) per key in a sliding
        window. Neither store outgrows ``count``: reaching it fires and
        clears the key."""
        threshold = rule.threshold
        assert threshold is not None
        state = self.state[rule.id]
        key = threshold.by(event)
        window = state.windows.get(key)
        if window is None:
            if len(state.windows) >= MAX_KEYS_PER_RULE:
                state.windows.pop(next(iter(state.windows)))
            window = state.windows[key] = _Window()
        now = event.ts
        horizon = now - threshold.window
        if threshold.distinct is not None:
            # The latest event of each distinct value; stale ones are pruned
            # only when the count could be reached.
            values = window.values
            values[threshold.distinct(event)[0]] = event
            if len(values) < threshold.count:
                return None
            for stale in [v for v, seen in values.items() if seen.ts < horizon]:
                del values[stale]
            if len(values) < threshold.count:
                return None
            caused = sorted(values.values(), key=lambda e: e.ts)
        else:
            events = window.events
            while events and events[0].ts < horizon:
                events.popleft()
            events.append(event)
            if len(events) < threshold.count:
                return None
            caused = list(events)
        extras = {
            "count": len(caused),
            "distinct_count": len(window.values),
            "distinct_values": sorted(window.values, key=repr),
            "window": f"{threshold.window:g}s",
        }
        del state.windows[key]  # a new alert needs a new full window
        return self._emit(rule, caused[:MAX_SAMPLE_EVENTS], caused[0].ts, now, len(caused),
                          extras)

    def _sequence(self, rule: Rule, event: IcsEvent) -> Alert | None:
        sequence = rule.sequence
        assert sequence is not None
        state = self.state[rule.id]
        key = sequence.by(event)
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
            key = suppress.by(last)
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
