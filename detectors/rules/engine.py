"""Running compiled rules over events: candidate look-up, thresholds,
sequences, suppression, and the alerts that come out.

The hot path is one nested dict look-up for the event's (protocol,
operation) giving the tuple of rules that can match it, then each rule's
compiled matcher. Per-key state exists only for rules that fired at least
part-way, and is capped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from collections.abc import Sequence as Seq
from functools import partial
from typing import Any, Final

from detectors.alert import MAX_SAMPLE_EVENTS, Alert
from detectors.rules.loader import RuleSet
from detectors.rules.model import INDEX_KEYS, Rule, Template
from sensor.event import IcsEvent
from sensor.flows.flow import Flow

MAX_KEYS_PER_RULE: Final = 10_000
MAX_FLOW_CACHE: Final = 16_384
SWEEP_INTERVAL: Final = 10.0
NO_ALERTS: Final[tuple[Alert, ...]] = ()
IndexKey = tuple[str, str, str, str, bool, bool]
Handler = Callable[[IcsEvent], "Alert | None"]


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
    """One threshold key: the times of its events within the window (or,
    for distinct counts, the latest event of each value) and the first few
    events as the alert's sample."""

    __slots__ = ("last", "sample", "times", "values")

    def __init__(self) -> None:
        self.times: deque[float] = deque()
        self.sample: list[IcsEvent] = []
        self.values: dict[Any, IcsEvent] = {}
        self.last = 0.0


class _Progress:
    """How far one key has got through a sequence."""

    __slots__ = ("events", "started", "step")

    def __init__(self, started: float) -> None:
        self.started = started
        self.step = 0
        self.events: list[IcsEvent] = []


class _RuleState:
    __slots__ = ("alerts", "from_initiator", "from_responder", "progress", "suppressed",
                 "suppressions", "windows")

    def __init__(self) -> None:
        # Matches of flow-level rules, per flow direction.
        self.from_initiator: dict[Flow, bool] = {}
        self.from_responder: dict[Flow, bool] = {}
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
        self._candidates: dict[IndexKey, tuple[Handler, ...]] = {}
        self._next_sweep = 0.0
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

    def candidates(self, key: IndexKey) -> tuple[Handler, ...]:
        """The handlers of the rules whose pinned index values admit an
        event with ``key`` (computed once per distinct key, then looked up)."""
        found = self._candidates.get(key)
        if found is None:
            found = self._candidates[key] = tuple(
                self._handler(rule, self.state[rule.id]) for rule in self.rules
                if all(value in rule.pins.get(name, (value,))
                       for name, value in zip(INDEX_KEYS, key, strict=True))
            )
        return found

    def process(self, event: IcsEvent) -> Seq[Alert]:
        key = (event.protocol, event.operation, event.direction, event.access,
               event.exception, event.malformed is not None)
        handlers = self._candidates.get(key)
        if handlers is None:
            handlers = self.candidates(key)
        alerts: list[Alert] | None = None
        for handler in handlers:
            alert = handler(event)
            if alert is not None:
                if alerts is None:
                    alerts = []
                alerts.append(alert)
        return alerts if alerts is not None else NO_ALERTS

    def sweep(self, now: float) -> None:
        """Forget per-key state that can no longer contribute: threshold
        windows, sequences in progress and suppressions whose time is past.
        Runs when new per-key state is about to be created and
        `SWEEP_INTERVAL` seconds of event time have passed, so state is
        bounded by what is recent, not by how long the capture is."""
        self._next_sweep = now + SWEEP_INTERVAL
        for rule in self.rules:
            state = self.state[rule.id]
            if rule.threshold is not None and state.windows:
                horizon = now - rule.threshold.window
                for key in [k for k, w in state.windows.items() if w.last < horizon]:
                    del state.windows[key]
            if rule.sequence is not None and state.progress:
                horizon = now - rule.sequence.window
                for key in [k for k, p in state.progress.items() if p.started < horizon]:
                    del state.progress[key]
            if rule.suppress is not None and state.suppressions:
                horizon = now - rule.suppress.window
                for key in [k for k, (since, _) in state.suppressions.items()
                            if since < horizon]:
                    del state.suppressions[key]

    # -- compiling a rule into one handler -----------------------------------

    def _handler(self, rule: Rule, state: _RuleState) -> Handler:
        """One closure per rule: its test (flow-cached when it only looks at
        addresses and ports) and its kind (single, threshold, sequence)."""
        if rule.sequence is not None:
            return partial(self._sequence, rule, state)
        body: Handler
        if rule.threshold is not None and rule.threshold.distinct is not None:
            body = self._distinct_threshold(rule, state)
        elif rule.threshold is not None:
            body = partial(self._threshold, rule, state)
        else:
            emit = self._emit

            def body(event: IcsEvent) -> Alert | None:
                return emit(rule, state, [event], event.ts, event.ts, 1, {})

        matcher = rule.matcher
        if matcher is None:
            return body
        if not rule.flow_level:
            def guarded(event: IcsEvent) -> Alert | None:
                return body(event) if matcher(event) else None

            return guarded
        from_initiator, from_responder = state.from_initiator, state.from_responder

        def flow_guarded(event: IcsEvent) -> Alert | None:
            cache = from_initiator if event.from_initiator else from_responder
            hit = cache.get(event.flow)
            if hit is None:
                if len(cache) >= MAX_FLOW_CACHE:
                    cache.clear()
                hit = cache[event.flow] = matcher(event)
            return body(event) if hit else None

        return flow_guarded

    # -- kinds of rule -----------------------------------------------------

    def _window(self, state: _RuleState, key: tuple[Any, ...], now: float) -> _Window:
        if now >= self._next_sweep:
            self.sweep(now)
        window = state.windows.get(key)
        if window is None:
            if len(state.windows) >= MAX_KEYS_PER_RULE:
                state.windows.pop(next(iter(state.windows)))
            window = state.windows[key] = _Window()
        return window

    def _threshold(self, rule: Rule, state: _RuleState, event: IcsEvent) -> Alert | None:
        """Count matching events per key in a sliding window; the window
        never outgrows ``count``: reaching it fires and clears the key."""
        threshold = rule.threshold
        assert threshold is not None
        key = threshold.by(event)
        window = state.windows.get(key) or self._window(state, key, event.ts)
        times = window.times
        now = window.last = event.ts
        horizon = now - threshold.window
        if times and times[0] < horizon:
            while times and times[0] < horizon:
                times.popleft()
            window.sample = [e for e in window.sample if e.ts >= horizon]
        times.append(now)
        if len(window.sample) < MAX_SAMPLE_EVENTS:
            window.sample.append(event)
        if len(times) < threshold.count:
            return None
        return self._fire_threshold(rule, state, key, window, window.sample, len(times),
                                    times[0])

    def _distinct_threshold(self, rule: Rule, state: _RuleState) -> Handler:
        """Count distinct values per key in a sliding window, keeping the
        latest event of each value. Most events repeat a value already seen,
        so that path is a few dictionary operations; stale values are pruned
        only when the count could be reached."""
        threshold = rule.threshold
        assert threshold is not None and threshold.distinct is not None
        by, distinct, count, span = (threshold.by, threshold.distinct, threshold.count,
                                     threshold.window)
        windows = state.windows

        def handler(event: IcsEvent) -> Alert | None:
            key = by(event)
            window = windows.get(key) or self._window(state, key, event.ts)
            window.last = event.ts
            values = window.values
            values[distinct(event)] = event
            if len(values) < count:
                return None
            horizon = event.ts - span
            for stale in [v for v, seen in values.items() if seen.ts < horizon]:
                del values[stale]
            if len(values) < count:
                return None
            caused = sorted(values.values(), key=lambda e: e.ts)
            return self._fire_threshold(rule, state, key, window, caused[:MAX_SAMPLE_EVENTS],
                                        len(caused), caused[0].ts)

        return handler

    def _fire_threshold(
        self, rule: Rule, state: _RuleState, key: tuple[Any, ...], window: _Window,
        sample: list[IcsEvent], count: int, first_ts: float,
    ) -> Alert | None:
        assert rule.threshold is not None
        extras = {
            "count": count,
            "distinct_count": len(window.values),
            "distinct_values": sorted(window.values, key=repr),
            "window": f"{rule.threshold.window:g}s",
        }
        del state.windows[key]  # a new alert needs a new full window
        return self._emit(rule, state, sample, first_ts, window.last, count, extras)

    def _sequence(self, rule: Rule, state: _RuleState, event: IcsEvent) -> Alert | None:
        sequence = rule.sequence
        assert sequence is not None
        if not state.progress and not sequence.steps[0](event):
            return None  # nothing under way and this does not start it
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
            if event.ts >= self._next_sweep:
                self.sweep(event.ts)
            if len(state.progress) >= MAX_KEYS_PER_RULE:
                state.progress.pop(next(iter(state.progress)))
            progress = state.progress[key] = _Progress(event.ts)
        if len(progress.events) < MAX_SAMPLE_EVENTS:
            progress.events.append(event)
        progress.step = step + 1
        if progress.step < len(sequence.steps):
            return None
        del state.progress[key]
        return self._emit(rule, state, progress.events, progress.started, event.ts,
                          len(progress.events), {})

    # -- alerts ------------------------------------------------------------

    def _emit(
        self, rule: Rule, state: _RuleState, events: list[IcsEvent], first_ts: float,
        last_ts: float, count: int, extras: dict[str, Any],
    ) -> Alert | None:
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
                if last_ts >= self._next_sweep:
                    self.sweep(last_ts)
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
            explanation=self._explain(rule.explain, last, extras),
            explanation_zh=self._explain(rule.explain_zh, last, extras),
            first_ts=first_ts,
            last_ts=last_ts,
            count=count,
            events=list(events),
            protocol=first.protocol,
            source_ip=first.src_ip if len(sources) == 1 else None,
            destination_ip=first.dst_ip if len(destinations) == 1 else None,
            description=rule.description,
            description_zh=rule.description_zh,
            references=rule.references,
        )

    @staticmethod
    def _explain(template: Template, event: IcsEvent, extras: dict[str, Any]) -> str:
        """One language's explanation with the values filled in ("" for a
        rule without that language)."""
        out: list[str] = []
        for literal, token in template:
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
