"""Compacting sample events for storage loses nothing: every alert the
built-in rules raise on the project's captures comes back equal."""

from __future__ import annotations

import json
from pathlib import Path

from console.stores import samples
from tests.support.alerts import replay_alerts

ROOT = Path(__file__).resolve().parents[3]
CAPTURES = sorted((ROOT / "pcaps").glob("*/*.pcap*"))


def test_compact_then_expand_is_the_identity() -> None:
    alerts = replay_alerts(CAPTURES)
    assert len(alerts) > 50
    before = after = 0
    for alert in alerts:
        original = json.dumps(alert, sort_keys=True)
        stored = samples.compact(alert)
        assert json.dumps(alert, sort_keys=True) == original  # input untouched
        assert samples.expand(stored) == alert
        before += len(original)
        after += len(json.dumps(stored))
    assert after < before * 0.9


def test_reply_and_foreign_flows() -> None:
    flow = {"source": {"ip": "10.0.0.1", "port": 4000}, "destination": {"ip": "10.0.0.2",
                                                                         "port": 502}}
    network = {"protocol": "modbus", "transport": "tcp"}
    request = {"event": {"action": "read"}, "network": network, **flow}
    reply = {"event": {"action": "read"}, "network": network,
             "source": flow["destination"], "destination": flow["source"]}
    foreign = {"event": {"action": "read"}, "network": {"protocol": "modbus"},
               "source": {"ip": "10.0.0.9"}, "destination": flow["destination"]}
    alert = {"network": network, **flow,
             "ics": {"alert": {"events": [request, reply, foreign, "not an event"]}}}
    stored = samples.compact(alert)
    kept = stored["ics"]["alert"]["events"]
    assert kept[0] == {"event": {"action": "read"}, "_flow": "same"}
    assert kept[1] == {"event": {"action": "read"}, "_flow": "reply"}
    assert kept[2] is foreign
    assert samples.expand(stored) == alert


def test_alert_without_flow_or_samples_is_left_alone() -> None:
    bare = {"event": {"id": "x"}, "ics": {"alert": {"events": [{"event": {}}]}}}
    assert samples.compact(bare) is bare
    assert samples.expand(bare) is bare
    assert samples.compact({"event": {}}) == {"event": {}}
