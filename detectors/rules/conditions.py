"""Compiling a rule's ``match`` into one predicate over `IcsEvent`s.

A condition on a field is a scalar (equality), a list (any of), or a mapping
of operators, all of which must hold:

    eq ne in not_in gt gte lt lte range        numbers, strings, booleans
    regex contains startswith endswith          strings
    cidr group not_group                        IP addresses (groups are named
                                                host lists defined once)
    exists                                      true / false
    any all                                     a condition on list elements
    overlaps within                             address ranges
    not                                         negation of a condition

On a list-valued field a plain condition holds when any element satisfies
it. A ``match`` mapping may also hold ``any_of`` / ``all_of`` (lists of
matches) and ``not`` (a match). Everything is compiled once: regexes,
networks and sets are built at load time, never per event.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any

from detectors.rules.fields import Field, catalogue
from sensor.event import IcsEvent

Predicate = Callable[[Any], bool]
Matcher = Callable[[IcsEvent], bool]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConditionError(Exception):
    """A problem in a rule; ``line`` is where in the file, 0 when unknown."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _line(node: Any, key: str | None = None, default: int = 0) -> int:
    if key is not None and hasattr(node, "line_of"):
        return int(node.line_of(key))
    return int(getattr(node, "line", default) or default)


class HostGroups:
    """Named host lists (``engineering_workstations: [10.0.0.5, 10.0.1.0/24]``)."""

    def __init__(self, groups: Mapping[str, list[Network]] | None = None) -> None:
        self.groups: dict[str, list[Network]] = dict(groups or {})

    @staticmethod
    def parse_members(values: Any, line: int) -> list[Network]:
        if not isinstance(values, list):
            raise ConditionError(line, "a host group is a list of addresses or networks")
        networks: list[Network] = []
        for value in values:
            try:
                networks.append(ipaddress.ip_network(str(value), strict=False))
            except ValueError:
                raise ConditionError(line, f"bad address or network {value!r}") from None
        return networks

    def member_test(self, name: str, line: int) -> Callable[[str], bool]:
        if name not in self.groups:
            known = ", ".join(sorted(self.groups)) or "none defined"
            raise ConditionError(line, f"unknown host group {name!r} (known: {known})")
        return _network_test(self.groups[name])


def _network_test(networks: list[Network]) -> Callable[[str], bool]:
    """Membership of an address string in any of the networks, cached per
    address so the common case is one dict look-up."""
    cache: dict[str, bool] = {}

    def test(address: str) -> bool:
        hit = cache.get(address)
        if hit is None:
            try:
                parsed = ipaddress.ip_address(address)
            except ValueError:
                return False
            hit = any(parsed in network for network in networks)
            if len(cache) < 65536:
                cache[address] = hit
        return hit

    return test


def _either(parts: tuple[Matcher, ...]) -> Matcher:
    """Any of ``parts``, as nested ``or`` (no generator per event)."""
    if len(parts) == 1:
        return parts[0]
    head, rest = parts[0], _either(parts[1:])
    return lambda e: head(e) or rest(e)


def _chain(parts: tuple[Matcher, ...]) -> Matcher:
    """All of ``parts``, as nested ``and`` (no generator per event)."""
    if len(parts) == 1:
        return parts[0]
    head, rest = parts[0], _chain(parts[1:])
    return lambda e: head(e) and rest(e)


def _negate(matcher: Matcher) -> Matcher:
    return lambda e: not matcher(e)


def _field_test(get: Callable[[IcsEvent], Any], predicate: Predicate) -> Matcher:
    return lambda e: predicate(get(e))


def _protocol_field_test(protocol: str, name: str, predicate: Predicate) -> Matcher:
    """A test of ``<protocol>.<field>`` reading the event's fields directly
    (one call fewer than getter + predicate; this runs per event)."""
    return lambda e: predicate(e.fields.get(name) if e.protocol == protocol else None)


_SCALAR_OF_LIST = {"list[int]": "int", "list[float]": "float", "list[bool]": "bool",
                   "list[str]": "str"}
_NUMERIC = {"int", "float"}


def _check_value(value: Any, kind: str, line: int, field: str) -> Any:
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "ip": isinstance(value, str),
    }.get(kind, False)
    if not ok:
        raise ConditionError(line, f"{field} is {kind}; {value!r} is not")
    if kind == "ip":
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ConditionError(line, f"{field}: {value!r} is not an IP address") from None
    return value


class Compiler:
    """Compiles conditions against the field catalogue and the host groups."""

    def __init__(self, groups: HostGroups) -> None:
        self.groups = groups
        self.fields = catalogue()
        self.groups_used: set[str] = set()
        # Fields the last compiled matcher tested (not those left to the index).
        self.tested: set[str] = set()
        self.negated_groups: set[str] = set()

    def field(self, name: str, line: int) -> Field:
        found = self.fields.get(name)
        if found is None:
            close = [f for f in self.fields if f.split(".")[-1] == name.split(".")[-1]]
            hint = f" (did you mean {', '.join(sorted(close)[:3])}?)" if close else ""
            raise ConditionError(line, f"unknown field {name!r}{hint}")
        return found

    def match(self, spec: Any, line: int, skip: frozenset[str] = frozenset()) -> Matcher | None:
        """Compile a match; keys in ``skip`` are left to the caller (the rule
        index guarantees them). None when nothing is left to test."""
        if not isinstance(spec, Mapping) or not spec:
            raise ConditionError(line, "match must be a non-empty mapping of field: condition")
        cheap: list[Matcher] = []
        costly: list[Matcher] = []
        for key, value in spec.items():
            where = _line(spec, key, line)
            if key in ("any_of", "all_of"):
                if not isinstance(value, list) or not value:
                    raise ConditionError(where, f"{key} takes a non-empty list of matches")
                parts = tuple(self.required(item, _line(item, default=where)) for item in value)
                costly.append(_either(parts) if key == "any_of" else _chain(parts))
            elif key == "not":
                costly.append(_negate(self.required(value, where)))
            else:
                field = self.field(key, where)
                predicate = self.condition(value, field.kind, where, field.name)
                if key in skip:
                    continue
                self.tested.add(field.name)
                if field.protocol is not None and field.key is not None:
                    test = _protocol_field_test(field.protocol, field.key, predicate)
                else:
                    test = _field_test(field.get, predicate)
                (costly if field.protocol else cheap).append(test)
        tests = cheap + costly
        return _chain(tuple(tests)) if tests else None

    def required(self, spec: Any, line: int) -> Matcher:
        matcher = self.match(spec, line)
        assert matcher is not None
        return matcher

    def condition(self, spec: Any, kind: str, line: int, name: str) -> Predicate:
        element = _SCALAR_OF_LIST.get(kind)
        if element is not None and not (isinstance(spec, Mapping) and
                                        set(spec) & {"any", "all", "exists", "not"}):
            inner = self.condition(spec, element, line, name)
            return lambda v: v is not None and any(inner(x) for x in v)
        if isinstance(spec, Mapping):
            if not spec:
                raise ConditionError(line, f"{name}: empty condition")
            predicates = [
                self.operator(op, arg, kind, _line(spec, op, line), name)
                for op, arg in spec.items()
            ]
            if len(predicates) == 1:
                return predicates[0]
            frozen = tuple(predicates)
            return lambda v: all(p(v) for p in frozen)
        if isinstance(spec, list):
            return self.operator("in", spec, kind, line, name)
        return self.operator("eq", spec, kind, line, name)

    def operator(self, op: str, arg: Any, kind: str, line: int, name: str) -> Predicate:
        if op == "not":
            inner = self.condition(arg, kind, line, name)
            return lambda v: not inner(v)
        if op == "exists":
            if not isinstance(arg, bool):
                raise ConditionError(line, f"{name}: exists takes true or false")
            return (lambda v: v is not None) if arg else (lambda v: v is None)
        if op in ("any", "all"):
            element = _SCALAR_OF_LIST.get(kind)
            if element is None:
                raise ConditionError(line, f"{name} is {kind}, not a list: '{op}' does not apply")
            inner = self.condition(arg, element, line, name)
            if op == "any":
                return lambda v: v is not None and any(inner(x) for x in v)
            return lambda v: v is not None and len(v) > 0 and all(inner(x) for x in v)
        if op in ("overlaps", "within"):
            if kind != "range":
                raise ConditionError(line, f"{name} is {kind}, not an address range: '{op}'")
            low, high = self._pair(arg, line, name, op)
            if op == "overlaps":
                return lambda v: v is not None and v[0] <= high and v[1] >= low
            return lambda v: v is not None and v[0] >= low and v[1] <= high
        if kind == "range":
            raise ConditionError(line, f"{name} is an address range: use overlaps or within")
        if op in ("eq", "ne"):
            value = _check_value(arg, kind, line, name)
            if op == "eq":
                return lambda v: v == value
            return lambda v: v is not None and v != value
        if op in ("in", "not_in"):
            if not isinstance(arg, list) or not arg:
                raise ConditionError(line, f"{name}: {op} takes a non-empty list")
            values = frozenset(_check_value(a, kind, line, name) for a in arg)
            if op == "in":
                return lambda v: v in values
            return lambda v: v is not None and v not in values
        if op in ("gt", "gte", "lt", "lte"):
            if kind not in _NUMERIC:
                raise ConditionError(line, f"{name} is {kind}: {op} needs a number field")
            bound = _check_value(arg, "float", line, name)
            return {
                "gt": lambda v: v is not None and v > bound,
                "gte": lambda v: v is not None and v >= bound,
                "lt": lambda v: v is not None and v < bound,
                "lte": lambda v: v is not None and v <= bound,
            }[op]
        if op == "range":
            if kind not in _NUMERIC:
                raise ConditionError(line, f"{name} is {kind}: range needs a number field")
            low, high = self._pair(arg, line, name, op)
            return lambda v: v is not None and low <= v <= high
        if op in ("regex", "contains", "startswith", "endswith"):
            if kind not in ("str", "ip"):
                raise ConditionError(line, f"{name} is {kind}: {op} needs a string field")
            if not isinstance(arg, str):
                raise ConditionError(line, f"{name}: {op} takes a string")
            if op == "regex":
                try:
                    search = re.compile(arg).search
                except re.error as exc:
                    raise ConditionError(line, f"{name}: bad regex {arg!r}: {exc}") from None
                return lambda v: v is not None and search(v) is not None
            if op == "contains":
                return lambda v: v is not None and arg in v
            if op == "startswith":
                return lambda v: v is not None and v.startswith(arg)
            return lambda v: v is not None and v.endswith(arg)
        if op == "cidr":
            if kind != "ip":
                raise ConditionError(line, f"{name} is {kind}: cidr needs an IP field")
            networks = HostGroups.parse_members(arg if isinstance(arg, list) else [arg], line)
            test = _network_test(networks)
            return lambda v: v is not None and test(v)
        if op in ("group", "not_group"):
            if kind != "ip":
                raise ConditionError(line, f"{name} is {kind}: {op} needs an IP field")
            if not isinstance(arg, str):
                raise ConditionError(line, f"{name}: {op} takes a group name")
            member = self.groups.member_test(arg, line)
            self.groups_used.add(arg)
            if op == "group":
                return lambda v: v is not None and member(v)
            self.negated_groups.add(arg)
            return lambda v: v is not None and not member(v)
        raise ConditionError(line, f"{name}: unknown operator {op!r}")

    @staticmethod
    def _pair(arg: Any, line: int, name: str, op: str) -> tuple[float, float]:
        if (not isinstance(arg, list) or len(arg) != 2
                or not all(isinstance(a, int | float) and not isinstance(a, bool) for a in arg)):
            raise ConditionError(line, f"{name}: {op} takes [low, high]")
        low, high = arg
        if low > high:
            raise ConditionError(line, f"{name}: {op} [{low}, {high}] is empty")
        return low, high
