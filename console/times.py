"""Times at the console's edge: ISO 8601 out, ISO 8601 or epoch seconds in.

(`sensor.ecs.iso_timestamp` caches per second for the sensor's hot path and
is not meant for the server's threads.)"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

# Epoch seconds: a plain decimal number (float() would also take 'nan', 'inf', '1_0').
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def iso(epoch: float) -> str:
    """ISO 8601 in UTC with microseconds and a ``Z``."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> float:
    """Epoch seconds from ISO 8601 (a zone-less time is UTC) or from a plain
    number of epoch seconds; ValueError with the reason otherwise."""
    text = text.strip()
    if _NUMBER.fullmatch(text):
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"time {text!r} is not a finite number")
        return value
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ValueError(
            f"time {text!r}: ISO 8601 (2026-11-24T08:00:00Z) or epoch seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
