"""Real alert documents for store and sink tests and benchmarks: the
built-in rules on the project's captures, copied with ids and times of
their own so any number can be made."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from detectors.alert import alert_document
from detectors.rules.engine import RuleEngine
from detectors.rules.loader import load_rules
from sensor.ecs import iso_timestamp
from sensor.event import IcsEvent
from sensor.runtime import Sensor

Doc = dict[str, Any]


def replay_alerts(captures: Iterable[Path]) -> list[Doc]:
    """The alert documents the built-in rules raise on ``captures``."""
    found: list[Doc] = []
    for capture in captures:
        engine = RuleEngine(load_rules())

        def consume(event: IcsEvent, engine: RuleEngine = engine) -> None:
            found.extend(alert_document(a) for a in engine.process(event))

        Sensor(consume).replay([capture])
    return found


def numbered(templates: list[Doc], start: int, count: int, tag: str,
             first_ts: float = 1_700_000_000, step: float = 1.0) -> list[Doc]:
    """``count`` copies of ``templates`` in turn, each with its own
    deterministic id (from ``tag`` and its number) and @timestamp."""
    out = []
    for number in range(start, start + count):
        document = copy.deepcopy(templates[number % len(templates)])
        document["event"]["id"] = hashlib.sha1(f"{tag}-{number}".encode()).hexdigest()[:20]
        document["@timestamp"] = iso_timestamp(first_ts + number * step)
        out.append(document)
    return out
