"""Rule semantics on events: operators, thresholds, sequences, suppression, reload."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from detectors.alert import alert_document
from detectors.rules.engine import RuleEngine
from detectors.rules.loader import load_rules
from sensor.event import IcsEvent
from sensor.flows.flow import TCP, Flow

HEADER = "pack: test\ngroups:\n  masters: [10.0.0.0/30]\nrules:\n"


def _flow(src: str, dst: str, dport: int = 502) -> Flow:
    return Flow(1, TCP, ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed,
                40000, dport, 0.0)


def _event(ts: float, src: str = "10.0.0.9", dst: str = "10.0.1.1", *, operation: str =
           "write_single_register", access: str = "write", unit: int = 1,
           direction: str = "request", **fields: Any) -> IcsEvent:
    flow = _flow(src, dst) if direction == "request" else _flow(dst, src)
    return IcsEvent(ts, flow, direction == "request", "modbus", direction, access, operation,
                    unit, dict(fields))


def _engine(tmp_path: Path, body: str) -> RuleEngine:
    path = tmp_path / "pack.yml"
    rules = ""
    for number, rule in enumerate(body.strip().split("\n---\n")):
        indented = "\n".join("    " + line for line in rule.strip().splitlines())
        rules += (f"  - id: R{number}\n    title: {{en: t, zh-CN: 测}}\n    severity: high\n"
                  f"    attack: [T0855]\n    explain: '{{source.ip}} {{operation}}'\n"
                  f"{indented}\n")
    path.write_text(HEADER + rules, encoding="utf-8")
    ruleset = load_rules([path])
    assert ruleset.errors == []
    return RuleEngine(ruleset)


def _fired(engine: RuleEngine, events: list[IcsEvent]) -> list[str]:
    return [alert.rule_id for event in events for alert in engine.process(event)]


def test_operators(tmp_path: Path) -> None:
    engine = _engine(tmp_path, """
match: {modbus.reference_num: {range: [100, 200]}, source.ip: {not_group: masters}}
suppress: false
---
match: {modbus.regval_uint16: {any: {gt: 1000}}}
suppress: false
---
match: {modbus.address_range: {overlaps: [150, 160]}}
suppress: false
---
match: {operation: {regex: '^write_multiple'}, destination.ip: {cidr: 10.0.1.0/24}}
suppress: false
---
match: {not: {unit: [1, 2]}, modbus.data: {exists: false}}
suppress: false
""")
    assert _fired(engine, [_event(1, reference_num=150, regval_uint16=[5])]) == ["R0", "R2"]
    assert _fired(engine, [_event(1, src="10.0.0.2", reference_num=150)]) == ["R2"]
    assert _fired(engine, [_event(1, reference_num=10, regval_uint16=[5, 1001])]) == ["R1"]
    assert _fired(engine, [_event(1, reference_num=140, word_cnt=11)]) == ["R0", "R2"]
    assert _fired(engine, [_event(1, operation="write_multiple_coils", reference_num=5)]) == ["R3"]
    assert _fired(engine, [_event(1, unit=3, reference_num=5)]) == ["R4"]
    assert _fired(engine, [_event(1, unit=3, reference_num=5, data="ff00")]) == []


def test_distinct_threshold_fires_once_per_full_window(tmp_path: Path) -> None:
    engine = _engine(tmp_path, """
match: {direction: request}
threshold: {count: 5, window: 10s, by: [source.ip], distinct: unit}
suppress: false
""")
    same_unit = [_event(t, unit=1) for t in range(10)]
    assert _fired(engine, same_unit) == []
    sweep = [_event(20 + t * 0.5, unit=u) for t, u in enumerate(range(1, 12))]
    fired = [(e.unit, a) for e in sweep for a in engine.process(e)]
    assert [unit for unit, _ in fired] == [5, 10]  # counting restarts after an alert
    alert = fired[0][1]
    assert alert.count == 5 and alert.source_ip == "10.0.0.9"
    assert alert.first_ts == 20 and alert.last_ts == 22
    slow = [_event(100 + t * 20, unit=u) for t, u in enumerate(range(20, 30))]
    assert _fired(engine, slow) == []  # never 5 distinct units within 10 s


def test_sequence_in_order_within_window(tmp_path: Path) -> None:
    engine = _engine(tmp_path, """
sequence:
  window: 60s
  by: [source.ip, destination.ip]
  steps:
    - {operation: read_device_identification}
    - {access: write}
suppress: false
""")
    ident = {"operation": "read_device_identification", "access": "diagnostic"}
    assert _fired(engine, [_event(1), _event(2, **ident)]) == []  # wrong order
    assert _fired(engine, [_event(3)]) == ["R0"]
    assert _fired(engine, [_event(10, **ident), _event(100)]) == []  # too late
    assert _fired(engine, [_event(200, src="10.0.0.8", **ident), _event(201)]) == []  # other key


def test_suppression_and_rate_limit(tmp_path: Path) -> None:
    engine = _engine(tmp_path, """
match: {access: write}
suppress: {window: 60s, by: [source.ip], max_alerts: 2}
""")
    events = [_event(t) for t in range(0, 50, 5)] + [_event(120)]
    assert _fired(engine, events) == ["R0", "R0", "R0"]
    assert engine.statistics()["R0"] == (3, 8)


def test_reload_keeps_state_of_unchanged_rules(tmp_path: Path) -> None:
    body = """
match: {access: write}
threshold: {count: 3, window: 60s, by: [source.ip]}
"""
    engine = _engine(tmp_path, body)
    assert _fired(engine, [_event(1), _event(2)]) == []
    engine.reload(load_rules([tmp_path / "pack.yml"]))
    assert _fired(engine, [_event(3)]) == ["R0"]


def test_alert_document_is_ecs(tmp_path: Path) -> None:
    engine = _engine(tmp_path, "match: {access: write}\n")
    [alert] = engine.process(_event(1_700_000_000.25, reference_num=7))
    doc = alert_document(alert)
    assert doc["@timestamp"] == "2023-11-14T22:13:20.250000Z"
    assert doc["event"]["kind"] == "alert"
    assert doc["rule"]["id"] == "R0"
    assert doc["threat"]["technique"]["id"] == ["T0855"]
    assert doc["threat"]["technique"]["name"] == ["Unauthorized Command Message"]
    assert doc["source"]["ip"] == "10.0.0.9" and doc["destination"]["port"] == 502
    assert doc["message"] == "10.0.0.9 write_single_register"
    assert doc["ics"]["alert"]["events"][0]["ics"]["modbus"] == {"reference_num": 7}
    assert alert.id == engine.__class__(engine.ruleset).process(
        _event(1_700_000_000.25, reference_num=7))[0].id


def test_alert_document_carries_the_chinese_texts_beside_the_ecs_ones(tmp_path: Path) -> None:
    path = tmp_path / "pack.yml"
    path.write_text(HEADER + """\
  - id: ZH-1
    title: {en: Write, zh-CN: 写操作}
    severity: high
    attack: [T0855, T0836]
    match: {access: write}
    threshold: {count: 2, window: 10s, by: [source.ip]}
    description: {en: A host wrote., zh-CN: 某主机执行了写操作。}
    explain:
      en: "{source.ip} wrote {count} times within {window}, last {operation}"
      zh-CN: "{source.ip} 在 {window} 内写入 {count} 次，最近一次 {operation}"
""", encoding="utf-8")  # noqa: RUF001
    engine = RuleEngine(load_rules([path]))
    [alert] = _fired_alerts(engine, [_event(1), _event(2)])
    doc = alert_document(alert)
    # ECS stays English ...
    assert doc["message"] == doc["event"]["reason"] == (
        "10.0.0.9 wrote 2 times within 10s, last write_single_register")
    assert doc["rule"]["description"] == "A host wrote."
    assert doc["threat"]["technique"]["name"] == ["Unauthorized Command Message",
                                                  "Modify Parameter"]
    # ... and the Chinese texts, with the same values, are under ics.alert.
    ics = doc["ics"]["alert"]
    assert ics["reason_zh"] == (
        "10.0.0.9 在 10s 内写入 2 次，最近一次 write_single_register")  # noqa: RUF001
    assert ics["description_zh"] == "某主机执行了写操作。"
    assert ics["technique_names_zh"] == ["未授权命令消息", "修改参数"]


def test_a_rule_in_english_only_has_no_chinese_explanation(tmp_path: Path) -> None:
    engine = _engine(tmp_path, "match: {access: write}\n")
    [alert] = engine.process(_event(1))
    ics = alert_document(alert)["ics"]["alert"]
    assert "reason_zh" not in ics and "description_zh" not in ics
    assert ics["technique_names_zh"] == ["未授权命令消息"]


def _fired_alerts(engine: RuleEngine, events: list[IcsEvent]) -> list[Any]:
    return [alert for event in events for alert in engine.process(event)]


def test_state_of_past_keys_is_forgotten(tmp_path: Path) -> None:
    """An hour of writes from ever new sources: threshold windows and
    suppressions of sources gone quiet are swept, so state stays bounded."""
    engine = _engine(tmp_path, """
match: {access: write}
threshold: {count: 50, window: 5s, by: [source.ip]}
""")
    for second in range(3600):
        source = f"10.1.{second // 250}.{second % 250}"
        for tenth in range(3):
            engine.process(_event(second + tenth / 10, src=source))
    state = engine.state["R0"]
    assert len(state.windows) <= 20
    assert all(len(w.times) <= 3 and len(w.sample) <= 3 for w in state.windows.values())
