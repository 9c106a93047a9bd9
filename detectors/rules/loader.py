"""Loading rule packs: every error found (file, line, rule, reason), not just the first.

A pack is one YAML file::

    pack: modbus
    groups:                      # named host lists, referenced by rules
      engineering_workstations: []
    rules:
      - id: ICSW-MODBUS-001
        title: {en: ..., zh-CN: ...}
        severity: high           # low | medium | high | critical
        attack: [T0855, T0836]   # MITRE ATT&CK for ICS technique ids
        description: ...         # or {en: ..., zh-CN: ...}
        references: [...]
        match: {protocol: modbus, access: write, source.ip: {not_group: ...}}
        threshold: {count: 20, window: 10s, by: [source.ip], distinct: unit}
        sequence: {window: 5m, by: [source.ip], steps: [{...}, {...}]}
        suppress: {window: 60s, by: [source.ip, destination.ip], max_alerts: 1}
        explain: "{source.ip} wrote {modbus.regval_uint16} to {destination.ip}"
        tests: [{capture: pcaps/modbus/x.pcapng, alerts: 1, groups: {...}}]

``description`` and ``explain`` are English text, or a mapping with ``en``
and optionally ``zh-CN`` (like ``title``, which needs both). A zh-CN explain
is compiled like the English one and must use the same placeholders.

A rule with an error is left out and reported; the others load.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from detectors.alert import SEVERITIES
from detectors.attack import TECHNIQUES
from detectors.rules.conditions import Compiler, ConditionError, HostGroups, Matcher, Network
from detectors.rules.fields import (
    FLOW_FIELDS,
    UNHASHABLE_KINDS,
    Getter,
    operations_of,
    protocol_names,
)
from detectors.rules.model import (
    INDEX_KEYS,
    KeyFunction,
    Rule,
    RuleTest,
    Sequence,
    Suppression,
    Template,
    Threshold,
)
from detectors.rules.yamlsource import LineDict, YamlError, load_yaml
from sensor.event import ACCESS_CLASSES, REQUEST, RESPONSE, IcsEvent
from sensor.flows.flow import Flow

PROJECT_ROOT: Final = Path(__file__).resolve().parents[2]
DEFAULT_RULES_DIR: Final = PROJECT_ROOT / "rules"

RULE_KEYS: Final = frozenset({
    "id", "title", "severity", "attack", "description", "references", "match", "threshold",
    "sequence", "suppress", "explain", "tests", "enabled",
})
PACK_KEYS: Final = frozenset({"pack", "description", "groups", "rules"})
EXPLAIN_EXTRAS: Final = frozenset({"count", "distinct_count", "distinct_values", "window"})
# The languages a rule's title, description and explain may come in.
LANGUAGES: Final = ("en", "zh-CN")
EXPLAIN_HINT: Final = ("explain is a one-line template, e.g. '{source.ip} wrote to "
                       "{destination.ip}', or {en: ..., zh-CN: ...}")
DEFAULT_SUPPRESS_WINDOW: Final = 60.0
FLOW_CACHE_SIZE: Final = 16_384
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS: Final = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True, slots=True)
class RuleError:
    path: Path
    line: int
    rule_id: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        rule = f" rule {self.rule_id}:" if self.rule_id else ""
        return f"{where}:{rule} {self.message}"


@dataclass(slots=True)
class RuleSet:
    rules: list[Rule] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)
    groups: dict[str, list[Network]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    @property
    def active(self) -> list[Rule]:
        return [rule for rule in self.rules if rule.active]


def pack_files(paths: Iterable[Path]) -> list[Path]:
    """Expand directories into their ``*.yml``/``*.yaml`` files, sorted."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir()
                                if p.suffix in (".yml", ".yaml") and p.is_file()))
        else:
            files.append(path)
    return files


def parse_duration(value: Any, line: int, what: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is not None and float(match.group(1)) > 0:
            return float(match.group(1)) * _UNITS[match.group(2)]
    raise ConditionError(line, f"{what}: {value!r} is not a duration (e.g. 10s, 5m, 1h)")


def load_groups_file(path: Path) -> dict[str, list[Network]]:
    """A site's host groups: a YAML mapping of name to addresses/networks."""
    data = load_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise YamlError(path, 1, "a groups file is a mapping of group name to address list")
    groups: dict[str, list[Network]] = {}
    for name, members in data.items():
        line = data.line_of(name) if isinstance(data, LineDict) else 0
        try:
            groups[str(name)] = HostGroups.parse_members(members or [], line)
        except ConditionError as exc:
            raise YamlError(path, exc.line, f"group {name}: {exc.message}") from None
    return groups


def load_rules(
    paths: Iterable[Path] | None = None,
    site_groups: dict[str, list[Network]] | None = None,
) -> RuleSet:
    """Load every pack under ``paths`` (default: the shipped ``rules/``)."""
    files = pack_files(list(paths) if paths is not None else [DEFAULT_RULES_DIR])
    result = RuleSet(files=files)
    documents: list[tuple[Path, Any]] = []
    for path in files:
        try:
            documents.append((path, load_yaml(path)))
        except YamlError as exc:
            result.errors.append(RuleError(path, exc.line, None, exc.message))
    # Groups first: a rule in one pack may use a group defined in another.
    for path, doc in documents:
        if not isinstance(doc, LineDict):
            result.errors.append(RuleError(path, 1, None,
                                           "a rule pack is a mapping with 'rules:'"))
            continue
        for key in doc:
            if key not in PACK_KEYS:
                result.errors.append(RuleError(path, doc.line_of(key), None,
                                               f"unknown pack key {key!r}"))
        groups = doc.get("groups")
        if groups is None:
            continue
        if not isinstance(groups, LineDict):
            result.errors.append(RuleError(path, doc.line_of("groups"), None,
                                           "groups is a mapping of name to address list"))
            continue
        for name, members in groups.items():
            try:
                parsed = HostGroups.parse_members(members or [], groups.line_of(name))
            except ConditionError as exc:
                result.errors.append(RuleError(path, exc.line, None,
                                               f"group {name}: {exc.message}"))
                continue
            result.groups.setdefault(str(name), []).extend(parsed)
    if site_groups:
        result.groups.update(site_groups)
    compiler = Compiler(HostGroups(result.groups))
    seen: dict[str, tuple[Path, int]] = {}
    for path, doc in documents:
        if not isinstance(doc, LineDict):
            continue
        rules = doc.get("rules")
        if not isinstance(rules, list):
            result.errors.append(RuleError(path, doc.line_of("rules"), None,
                                           "'rules:' must be a list of rules"))
            continue
        for raw in rules:
            line = getattr(raw, "line", 0)
            rule_id = raw.get("id") if isinstance(raw, dict) else None
            rule_id = rule_id if isinstance(rule_id, str) else None
            try:
                rule = _build_rule(path, raw, compiler)
            except ConditionError as exc:
                result.errors.append(RuleError(path, exc.line or line, rule_id, exc.message))
                continue
            if rule.id in seen:
                other_path, other_line = seen[rule.id]
                result.errors.append(RuleError(
                    path, rule.line, rule.id,
                    f"duplicate rule id (first defined at {other_path}:{other_line})"))
                continue
            seen[rule.id] = (path, rule.line)
            result.rules.append(rule)
    return result


def _localized(raw: LineDict, key: str, hint: str) -> dict[str, tuple[str, int]]:
    """A text given in English (a string) or per language (``{en: ..., zh-CN:
    ...}``, ``en`` required): each language's stripped text and its line."""
    value = raw.get(key)
    line = raw.line_of(key)
    if isinstance(value, str) and value.strip():
        return {"en": (value.strip(), line)}
    if not isinstance(value, dict):
        raise ConditionError(line, hint)
    texts: dict[str, tuple[str, int]] = {}
    for language, text in value.items():
        where = value.line_of(language) if isinstance(value, LineDict) else line
        if language not in LANGUAGES:
            raise ConditionError(where, f"{key}: unknown language {language!r} "
                                        f"(languages: {', '.join(LANGUAGES)})")
        if not isinstance(text, str) or not text.strip():
            raise ConditionError(where, f"{key}.{language} must be a non-empty string")
        texts[language] = (text.strip(), where)
    if "en" not in texts:
        raise ConditionError(line, f"{key} needs 'en' (and may have 'zh-CN')")
    return texts


def _text(raw: LineDict, key: str, required: bool = True) -> str:
    value = raw.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise ConditionError(raw.line_of(key), f"'{key}' must be a non-empty string")
    return value.strip()


def _fields(compiler: Compiler, names: Any, line: int, what: str) -> tuple[
        KeyFunction, tuple[str, ...]]:
    """The key function of ``by: [field, ...]``: a tuple of the fields'
    values, built without a generator (it runs on every matching event)."""
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConditionError(line, f"{what}.by takes a list of field names")
    fields = [compiler.field(n, line) for n in names]
    getters = [f.get if f.kind not in UNHASHABLE_KINDS else _hashable_getter(f.get)
               for f in fields]
    key = _key_function(getters)
    if fields and all(f.name in FLOW_FIELDS for f in fields):
        key = _per_flow(key)
    return key, tuple(names)


def _per_flow(build: KeyFunction) -> KeyFunction:
    """A key made of addresses and ports only is the same for every event of
    one flow direction: build it once per flow direction (bounded cache)."""
    from_initiator: dict[Flow, tuple[Any, ...]] = {}
    from_responder: dict[Flow, tuple[Any, ...]] = {}

    def key(event: IcsEvent) -> tuple[Any, ...]:
        cache = from_initiator if event.from_initiator else from_responder
        found = cache.get(event.flow)
        if found is None:
            if len(cache) >= FLOW_CACHE_SIZE:
                cache.clear()
            found = cache[event.flow] = build(event)
        return found

    return key


def _hashable_getter(get: Getter) -> Getter:
    def hashable(event: IcsEvent) -> Any:
        value = get(event)
        if isinstance(value, list):
            return tuple(value)
        if isinstance(value, dict):
            return tuple(sorted(value.items()))
        return value

    return hashable


def _key_function(getters: list[Getter]) -> KeyFunction:
    if not getters:
        return lambda e: ()
    if len(getters) == 1:
        (first,) = getters
        return lambda e: (first(e),)
    if len(getters) == 2:
        first, second = getters
        return lambda e: (first(e), second(e))
    frozen = tuple(getters)
    return lambda e: tuple(g(e) for g in frozen)


def _pins(match: Any, line: int) -> dict[str, frozenset[Any]]:
    """The index values a match pins: literal protocol, operation, direction
    and access (a string or a list), ``exception: true/false`` and
    ``malformed: {exists: true/false}``."""
    pins: dict[str, frozenset[Any]] = {}
    if not isinstance(match, dict):
        return pins
    for key in ("protocol", "operation", "direction", "access"):
        value = match.get(key)
        if isinstance(value, str):
            pins[key] = frozenset((value,))
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            pins[key] = frozenset(value)
        elif isinstance(value, dict) and set(value) == {"in"} and isinstance(value["in"], list):
            pins[key] = frozenset(value["in"])
    if isinstance(match.get("exception"), bool):
        pins["exception"] = frozenset((match["exception"],))
    malformed = match.get("malformed")
    if isinstance(malformed, dict) and set(malformed) == {"exists"}:
        pins["malformed"] = frozenset((bool(malformed["exists"]),))
    where = match.line_of("protocol") if isinstance(match, LineDict) else line
    known = protocol_names()
    for protocol in pins.get("protocol", ()):
        if protocol not in known:
            raise ConditionError(where, f"unknown protocol {protocol!r} "
                                        f"(known: {', '.join(sorted(known))})")
    for direction in pins.get("direction", ()):
        if direction not in (REQUEST, RESPONSE):
            raise ConditionError(line, f"direction is request or response, not {direction!r}")
    for access in pins.get("access", ()):
        if access not in ACCESS_CLASSES:
            raise ConditionError(line, f"unknown access class {access!r} "
                                       f"(known: {', '.join(sorted(ACCESS_CLASSES))})")
    if "operation" in pins and "protocol" in pins:
        known_operations = {o for p in pins["protocol"] for o in operations_of(p)}
        for operation in sorted(pins["operation"] - known_operations):
            raise ConditionError(line, f"{'/'.join(sorted(pins['protocol']))} has no "
                                       f"operation {operation!r}")
    return pins


def _merge_pins(first: dict[str, frozenset[Any]], second: dict[str, frozenset[Any]]) -> dict[
        str, frozenset[Any]]:
    """Pins of a step inside a rule that has its own match: both must hold."""
    merged = dict(first)
    for key, values in second.items():
        merged[key] = merged[key] & values if key in merged else values
    return merged


def _build_rule(path: Path, raw: Any, compiler: Compiler) -> Rule:
    compiler.negated_groups.clear()
    if not isinstance(raw, LineDict):
        raise ConditionError(getattr(raw, "line", 0), "a rule is a mapping")
    for key in raw:
        if key not in RULE_KEYS:
            raise ConditionError(raw.line_of(key), f"unknown rule key {key!r}")
    rule_id = _text(raw, "id")
    title = _localized(raw, "title", "title needs both 'en' and 'zh-CN'")
    if "zh-CN" not in title:
        raise ConditionError(raw.line_of("title"), "title needs both 'en' and 'zh-CN'")
    description: dict[str, tuple[str, int]] = {}
    if raw.get("description") is not None:
        description = _localized(raw, "description", "description is text, or "
                                                     "{en: ..., zh-CN: ...}")
    severity = raw.get("severity")
    if severity not in SEVERITIES:
        raise ConditionError(raw.line_of("severity"),
                             f"severity must be one of {', '.join(SEVERITIES)}")
    attack = raw.get("attack")
    if not isinstance(attack, list) or not attack:
        raise ConditionError(raw.line_of("attack"), "attack lists ATT&CK for ICS technique ids")
    for technique in attack:
        if technique not in TECHNIQUES:
            raise ConditionError(raw.line_of("attack"),
                                 f"{technique!r} is not an ATT&CK for ICS technique id")
    references = raw.get("references") or []
    if not isinstance(references, list) or not all(isinstance(r, str) for r in references):
        raise ConditionError(raw.line_of("references"), "references is a list of strings")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConditionError(raw.line_of("enabled"), "enabled is true or false")

    match_spec = raw.get("match")
    sequence_spec = raw.get("sequence")
    if match_spec is None and sequence_spec is None:
        raise ConditionError(raw.line, "a rule needs 'match' or 'sequence'")
    matcher: Matcher | None = None
    flow_level = False
    pins: dict[str, frozenset[Any]] = {}
    if match_spec is not None:
        pins = _pins(match_spec, raw.line_of("match"))
        skip = frozenset(pins) if sequence_spec is None else frozenset()
        compiler.tested.clear()
        matcher = compiler.match(match_spec, raw.line_of("match"), skip)
        flow_level = matcher is not None and compiler.tested <= FLOW_FIELDS
        if matcher is None and sequence_spec is None and not pins:
            raise ConditionError(raw.line_of("match"), "match tests nothing")

    threshold = None
    if (spec := raw.get("threshold")) is not None:
        line = raw.line_of("threshold")
        if not isinstance(spec, dict) or set(spec) - {"count", "window", "by", "distinct"}:
            raise ConditionError(line, "threshold takes count, window, by and distinct")
        count = spec.get("count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 2:
            raise ConditionError(line, "threshold.count is a whole number ≥ 2")
        by, by_names = _fields(compiler, spec.get("by", []), line, "threshold")
        distinct = spec.get("distinct")
        if distinct is not None and not isinstance(distinct, str):
            raise ConditionError(line, "threshold.distinct is one field name")
        distinct_get = None
        if distinct:
            field = compiler.field(distinct, line)
            distinct_get = (field.get if field.kind not in UNHASHABLE_KINDS
                            else _hashable_getter(field.get))
        threshold = Threshold(
            count, parse_duration(spec.get("window"), line, "threshold.window"), by, by_names,
            distinct_get, distinct,
        )

    sequence = None
    if sequence_spec is not None:
        line = raw.line_of("sequence")
        if threshold is not None:
            raise ConditionError(line, "a rule has a threshold or a sequence, not both")
        if not isinstance(sequence_spec, dict) or set(sequence_spec) - {"window", "by", "steps"}:
            raise ConditionError(line, "sequence takes window, by and steps")
        steps = sequence_spec.get("steps")
        if not isinstance(steps, list) or len(steps) < 2:
            raise ConditionError(line, "sequence.steps lists at least two matches")
        compiled = []
        step_pins: list[dict[str, frozenset[Any]]] = []
        for step in steps:
            step_line = getattr(step, "line", line)
            step_matcher = compiler.required(step, step_line)
            compiled.append(step_matcher if matcher is None else _both(matcher, step_matcher))
            step_pins.append(_merge_pins(pins, _pins(step, step_line)))
        # An event is a candidate for any step: index by what every step
        # pins (the union of their values); the step matchers test the rest.
        pins = {
            key: frozenset().union(*(p[key] for p in step_pins))
            for key in INDEX_KEYS if all(key in p for p in step_pins)
        }
        by, by_names = _fields(compiler, sequence_spec.get("by", []), line, "sequence")
        sequence = Sequence(
            tuple(compiled), parse_duration(sequence_spec.get("window"), line, "sequence.window"),
            by, by_names,
        )

    suppress = _suppression(raw, compiler)
    explain = _localized(raw, "explain", EXPLAIN_HINT)
    explain_en = _explain(*explain["en"], compiler, threshold is not None)
    explain_zh: Template = ()
    if "zh-CN" in explain:
        explain_zh = _explain(*explain["zh-CN"], compiler, threshold is not None)
        _same_placeholders(explain["en"][0], explain["zh-CN"][0], explain["zh-CN"][1])
    tests = _tests(raw, path)
    inactive = None
    empty = sorted(g for g in compiler.negated_groups if not compiler.groups.groups.get(g))
    if empty:
        inactive = (f"host group {', '.join(empty)} is empty: 'outside the allowlist' "
                    "means nothing until the site lists its hosts")
    compiler.negated_groups.clear()
    return Rule(
        id=rule_id, title=title["en"][0], title_zh=title["zh-CN"][0],
        severity=severity, techniques=tuple(attack),
        description=description["en"][0] if description else "",
        description_zh=description["zh-CN"][0] if "zh-CN" in description else "",
        references=tuple(references), path=path, line=raw.line,
        pins=pins, matcher=matcher, explain=explain_en, explain_zh=explain_zh,
        threshold=threshold, sequence=sequence, suppress=suppress, tests=tests,
        enabled=enabled, inactive_reason=inactive, inactive_groups=tuple(empty),
        source=dict(raw), flow_level=flow_level and sequence is None,
    )


def _both(first: Matcher, second: Matcher) -> Matcher:
    return lambda e: first(e) and second(e)


def _suppression(raw: LineDict, compiler: Compiler) -> Suppression | None:
    spec = raw.get("suppress", {})
    line = raw.line_of("suppress")
    if spec is False:
        return None
    if not isinstance(spec, dict) or set(spec) - {"window", "by", "max_alerts"}:
        raise ConditionError(line, "suppress takes window, by and max_alerts (or false)")
    by, by_names = _fields(compiler, spec.get("by", ["source.ip", "destination.ip"]), line,
                           "suppress")
    window = parse_duration(spec.get("window", DEFAULT_SUPPRESS_WINDOW), line, "suppress.window")
    max_alerts = spec.get("max_alerts", 1)
    if not isinstance(max_alerts, int) or isinstance(max_alerts, bool) or max_alerts < 1:
        raise ConditionError(line, "suppress.max_alerts is a whole number ≥ 1")
    return Suppression(window, by, by_names, max_alerts)


def _explain(template: str, line: int, compiler: Compiler, has_threshold: bool) -> Template:
    """Compile one language's explain: literal text and, for each placeholder,
    the field's getter or the name of an extra (count, window, ...)."""
    parts: list[tuple[str, Getter | str | None]] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConditionError(line, f"explain: {exc}") from None
    for literal, name, _spec, _conversion in parsed:
        token: Getter | str | None = None
        if name:
            if name in EXPLAIN_EXTRAS:
                if name != "count" and not has_threshold:
                    raise ConditionError(line, f"explain: {{{name}}} needs a threshold")
                token = name
            else:
                token = compiler.field(name, line).get
        parts.append((literal, token))
    return tuple(parts)


def _placeholders(template: str) -> set[str]:
    return {name for _literal, name, _spec, _conv in string.Formatter().parse(template) if name}


def _same_placeholders(english: str, chinese: str, line: int) -> None:
    """A translation shows the same values as the English, in its own order."""
    missing = _placeholders(english) - _placeholders(chinese)
    extra = _placeholders(chinese) - _placeholders(english)
    if missing or extra:
        problems = []
        if missing:
            problems.append("lacks " + ", ".join(f"{{{name}}}" for name in sorted(missing)))
        if extra:
            problems.append("adds " + ", ".join(f"{{{name}}}" for name in sorted(extra)))
        raise ConditionError(line, "explain.zh-CN must use the placeholders of explain.en: "
                                   f"it {' and '.join(problems)}")


def _tests(raw: LineDict, path: Path) -> tuple[RuleTest, ...]:
    specs = raw.get("tests") or []
    line = raw.line_of("tests")
    if not isinstance(specs, list):
        raise ConditionError(line, "tests is a list of {capture, alerts, groups}")
    tests = []
    for spec in specs:
        if not isinstance(spec, dict) or "capture" not in spec:
            raise ConditionError(line, "each test names a capture")
        alerts = spec.get("alerts", 1)
        if not isinstance(alerts, int) or alerts < 0:
            raise ConditionError(line, "tests.alerts is a whole number")
        groups = spec.get("groups") or {}
        if not isinstance(groups, dict):
            raise ConditionError(line, "tests.groups maps group names to address lists")
        capture = Path(spec["capture"])
        if not capture.is_absolute():
            capture = PROJECT_ROOT / capture
        tests.append(RuleTest(capture, alerts, {str(k): [str(x) for x in v or []]
                                                for k, v in groups.items()}))
    return tuple(tests)
