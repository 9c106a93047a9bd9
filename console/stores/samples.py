"""Sample events stored without what their alert already says.

An alert carries up to ten of the decoded events that raised it. Most of them
repeat the alert's ``network`` and its ``source``/``destination`` (or the two
swapped, for a reply), and those repeats were a fifth of an alert document's
bytes: bytes Elasticsearch parses, compresses and stores on every alert.
`compact` leaves the repeats out when an alert is stored, marking a reply
with ``"_flow": "reply"``; `expand` puts them back when it is read, so a
reader of the store gets the sample events exactly as the sensor made them.
"""

from __future__ import annotations

from typing import Any, Final

FLOW_MARK: Final = "_flow"
REPLY: Final = "reply"
SAME: Final = "same"


def _samples(alert: dict[str, Any]) -> list[Any] | None:
    ics = alert.get("ics")
    if not isinstance(ics, dict):
        return None
    inner = ics.get("alert")
    if not isinstance(inner, dict):
        return None
    events = inner.get("events")
    return events if isinstance(events, list) and events else None


def _with_samples(alert: dict[str, Any], events: list[Any]) -> dict[str, Any]:
    """A shallow copy of ``alert`` whose ``ics.alert.events`` is ``events``."""
    ics = alert["ics"]
    return {**alert, "ics": {**ics, "alert": {**ics["alert"], "events": events}}}


def compact(alert: dict[str, Any]) -> dict[str, Any]:
    """``alert`` with its sample events stripped of the flow fields it
    repeats; ``alert`` itself when nothing repeats (no copy made)."""
    events = _samples(alert)
    if events is None:
        return alert
    network = alert.get("network")
    source = alert.get("source")
    destination = alert.get("destination")
    compacted: list[Any] = []
    changed = False
    for event in events:
        if not isinstance(event, dict) or FLOW_MARK in event:
            compacted.append(event)
            continue
        drop_network = network is not None and event.get("network") == network
        mark = None
        if source is not None and destination is not None:
            pair = (event.get("source"), event.get("destination"))
            if pair == (source, destination):
                mark = SAME
            elif pair == (destination, source):
                mark = REPLY
        if not drop_network and mark is None:
            compacted.append(event)
            continue
        changed = True
        slim = {key: value for key, value in event.items()
                if not (key == "network" and drop_network)
                and not (mark is not None and key in ("source", "destination"))}
        slim[FLOW_MARK] = f"{mark or 'own'}{'' if drop_network else '+network'}"
        compacted.append(slim)
    return _with_samples(alert, compacted) if changed else alert


def expand(alert: dict[str, Any]) -> dict[str, Any]:
    """The inverse of `compact`: sample events as the sensor made them."""
    events = _samples(alert)
    if events is None or not any(isinstance(e, dict) and FLOW_MARK in e for e in events):
        return alert
    expanded: list[Any] = []
    for event in events:
        if not isinstance(event, dict) or FLOW_MARK not in event:
            expanded.append(event)
            continue
        full = {key: value for key, value in event.items() if key != FLOW_MARK}
        mark, _, own_network = str(event[FLOW_MARK]).partition("+")
        if not own_network and "network" in alert:
            full["network"] = alert["network"]
        if mark == SAME:
            full["source"], full["destination"] = alert.get("source"), alert.get("destination")
        elif mark == REPLY:
            full["source"], full["destination"] = alert.get("destination"), alert.get("source")
        expanded.append(full)
    return _with_samples(alert, expanded)
