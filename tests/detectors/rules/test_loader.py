"""Rule files with mistakes: every error names file, line and reason, and
the good rules in the same file still load."""

from __future__ import annotations

from pathlib import Path

from detectors.rules.loader import load_rules

GOOD = """\
  - id: GOOD-1
    title: {en: Good rule, zh-CN: 好规则}
    severity: low
    attack: [T0855]
    match: {protocol: modbus, access: write}
    explain: "{source.ip} wrote"
"""


def _pack(tmp_path: Path, rules: str, groups: str = "") -> Path:
    path = tmp_path / "pack.yml"
    path.write_text(f"pack: test\n{groups}rules:\n{rules}{GOOD}", encoding="utf-8")
    return path


def _rule(body: str, rule_id: str = "BAD-1") -> str:
    head = (f"  - id: {rule_id}\n    title: {{en: Bad, zh-CN: 坏}}\n    severity: high\n"
            "    attack: [T0855]\n    explain: x\n")
    return head + body


def _errors(path: Path) -> list[str]:
    ruleset = load_rules([path])
    assert [r.id for r in ruleset.rules] == ["GOOD-1"] or "GOOD-1" in [r.id for r in ruleset.rules]
    return [str(e) for e in ruleset.errors]


def test_unknown_field_names_line_and_suggests(tmp_path: Path) -> None:
    path = _pack(tmp_path, _rule("    match:\n      protocol: modbus\n      func_code: 6\n"))
    [error] = _errors(path)
    assert error.startswith(f"{path}:10: rule BAD-1: unknown field 'func_code'")
    assert "modbus.func_code" in error


def test_wrong_type(tmp_path: Path) -> None:
    path = _pack(tmp_path, _rule("    match: {protocol: modbus, modbus.func_code: six}\n"))
    [error] = _errors(path)
    assert f"{path}:8: rule BAD-1:" in error
    assert "modbus.func_code is int; 'six' is not" in error


def test_bad_regex(tmp_path: Path) -> None:
    path = _pack(tmp_path, _rule("    match:\n      operation: {regex: 'write_(single'}\n"))
    [error] = _errors(path)
    assert f"{path}:9:" in error and "bad regex" in error


def test_unknown_group(tmp_path: Path) -> None:
    path = _pack(tmp_path, _rule("    match:\n      source.ip: {not_group: hmis}\n"))
    [error] = _errors(path)
    assert f"{path}:9:" in error and "unknown host group 'hmis'" in error


def test_duplicate_id_points_at_the_first(tmp_path: Path) -> None:
    path = _pack(tmp_path, _rule("    match: {access: write}\n", rule_id="GOOD-1"))
    ruleset = load_rules([path])
    [error] = [str(e) for e in ruleset.errors]
    assert f"{path}:" in error and "duplicate rule id (first defined at" in error
    assert [r.id for r in ruleset.rules] == ["GOOD-1"]


def test_unknown_technique_severity_and_key(tmp_path: Path) -> None:
    bad_technique = _rule("    match: {access: write}\n").replace("T0855", "T9999")
    bad_severity = _rule("    match: {access: write}\n", "BAD-2").replace("high", "urgent")
    bad_key = _rule("    match: {access: write}\n    severty: high\n", "BAD-3")
    path = _pack(tmp_path, bad_technique + bad_severity + bad_key)
    errors = _errors(path)
    assert len(errors) == 3
    assert "'T9999' is not an ATT&CK for ICS technique id" in errors[0]
    assert "severity must be one of low, medium, high, critical" in errors[1]
    assert "unknown rule key 'severty'" in errors[2]


def test_unknown_protocol_and_operator(tmp_path: Path) -> None:
    path = _pack(tmp_path, _rule("    match: {protocol: modbuss}\n")
                 + _rule("    match: {unit: {between: [1, 2]}}\n", "BAD-2"))
    errors = _errors(path)
    assert "unknown protocol 'modbuss'" in errors[0]
    assert "unknown operator 'between'" in errors[1]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yml"
    path.write_text("pack: x\nrules:\n  - id: [unclosed\n", encoding="utf-8")
    ruleset = load_rules([path])
    [error] = ruleset.errors
    assert error.path == path and error.line >= 3 and "YAML syntax" in error.message


def test_one_bad_file_does_not_stop_another(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text("pack: a\nrules: [\n", encoding="utf-8")
    _pack(tmp_path, "")
    ruleset = load_rules([tmp_path])
    assert [r.id for r in ruleset.rules] == ["GOOD-1"]
    assert len(ruleset.errors) == 1 and ruleset.errors[0].path.name == "a.yml"


def test_threshold_and_sequence_validation(tmp_path: Path) -> None:
    path = _pack(tmp_path,
                 _rule("    match: {access: write}\n    threshold: {count: 1, window: 10s}\n")
                 + _rule("    match: {access: write}\n    threshold: {count: 5, window: soon}\n",
                         "BAD-2")
                 + _rule("    sequence: {window: 1m, steps: [{access: read}]}\n", "BAD-3"))
    errors = _errors(path)
    assert "threshold.count is a whole number ≥ 2" in errors[0]
    assert "'soon' is not a duration" in errors[1]
    assert "at least two matches" in errors[2]


def test_empty_allowlist_makes_rule_inactive(tmp_path: Path) -> None:
    path = _pack(tmp_path, _rule("    match: {source.ip: {not_group: masters}}\n"),
                 groups="groups:\n  masters: []\n")
    ruleset = load_rules([path])
    assert ruleset.errors == []
    bad = next(r for r in ruleset.rules if r.id == "BAD-1")
    assert not bad.active and "masters is empty" in (bad.inactive_reason or "")
    filled = load_rules([path], {"masters": []}).rules
    assert not next(r for r in filled if r.id == "BAD-1").active


def test_float_lists_take_numbers_not_text(tmp_path: Path) -> None:
    good = _rule("    match: {protocol: dnp3, dnp3.al.ana.float: {gt: 99.5}}\n", "OK-1")
    path = _pack(tmp_path, good + _rule("    match: {protocol: dnp3, dnp3.al.ana.float: hot}\n"))
    [error] = _errors(path)
    assert "dnp3.al.ana.float is float; 'hot' is not" in error
    assert "OK-1" in [rule.id for rule in load_rules([path]).rules]


def _texts_rule(description: str, explain: str, rule_id: str = "BAD-1",
                extra: str = "") -> str:
    return (f"  - id: {rule_id}\n    title: {{en: Bad, zh-CN: 坏}}\n    severity: high\n"
            f"    attack: [T0855]\n    match: {{protocol: modbus, access: write}}\n{extra}"
            f"    description:{description}\n    explain:{explain}\n")


def test_description_and_explain_in_english_and_chinese(tmp_path: Path) -> None:
    rule = _texts_rule(
        "\n      en: >-\n        A host wrote\n        a register."
        "\n      zh-CN: 某主机写入了寄存器。",
        "\n      en: '{source.ip} wrote {modbus.reference_num}'"
        "\n      zh-CN: '{source.ip} 写入了地址 {modbus.reference_num}'",
        rule_id="OK-1")
    path = _pack(tmp_path, rule)
    ruleset = load_rules([path])
    assert ruleset.errors == []
    loaded = next(r for r in ruleset.rules if r.id == "OK-1")
    assert (loaded.description, loaded.description_zh) == ("A host wrote a register.",
                                                           "某主机写入了寄存器。")
    assert [literal for literal, _ in loaded.explain_zh] == ["", " 写入了地址 "]
    # English only, as before: no Chinese text, nothing to render.
    good = next(r for r in ruleset.rules if r.id == "GOOD-1")
    assert (good.description_zh, good.explain_zh) == ("", ())


def test_bad_localized_texts_name_file_line_and_problem(tmp_path: Path) -> None:
    no_english = _texts_rule("\n      zh-CN: 只有中文", " x")
    unknown_language = _texts_rule(" x", "\n      en: x\n      zh: 中文", "BAD-2")
    not_text = _texts_rule(" x", "\n      en: x\n      zh-CN: [1, 2]", "BAD-3")
    empty = _texts_rule("\n      en: ''", " x", "BAD-4")
    path = _pack(tmp_path, no_english + unknown_language + not_text + empty)
    errors = _errors(path)
    assert len(errors) == 4
    assert errors[0].startswith(f"{path}:8: rule BAD-1: description needs 'en'")
    assert errors[1].startswith(f"{path}:19: rule BAD-2: explain: unknown language 'zh'")
    assert errors[2].startswith(f"{path}:28: rule BAD-3: explain.zh-CN must be a non-empty string")
    assert errors[3].startswith(f"{path}:35: rule BAD-4: description.en must be a non-empty string")


def test_chinese_explain_is_compiled_like_the_english(tmp_path: Path) -> None:
    unknown_field = _texts_rule(" x", "\n      en: '{source.ip}'\n      zh-CN: '{source.ipp}'")
    needs_threshold = _texts_rule(
        " x", "\n      en: '{source.ip}'\n      zh-CN: '{source.ip} {window}'", "BAD-2")
    other_values = _texts_rule(
        " x", "\n      en: '{source.ip} to {destination.ip} {count}'"
              "\n      zh-CN: '{source.ip} 向 {unit} {count}'", "BAD-3")
    path = _pack(tmp_path, unknown_field + needs_threshold + other_values)
    errors = _errors(path)
    assert len(errors) == 3
    assert f"{path}:11: rule BAD-1: unknown field 'source.ipp'" in errors[0]
    assert f"{path}:20: rule BAD-2: explain: {{window}} needs a threshold" in errors[1]
    assert errors[2] == (f"{path}:29: rule BAD-3: explain.zh-CN must use the placeholders of "
                         "explain.en: it lacks {destination.ip} and adds {unit}")
