"""A BPF-style packet filter over the fields the flow table knows.

Grammar (a subset of pcap-filter(7)): primitives ``tcp``, ``udp``, ``ip``,
``ip6``, ``[src|dst] host ADDR``, ``[src|dst] net CIDR``, ``[src|dst] port N``,
``[src|dst] portrange N-M``, each of the last four optionally qualified by a
protocol (``tcp port 502``), joined with ``and``/``&&`` and ``or``/``||``
(equal precedence, left to right, as in tcpdump), ``not``/``!`` and
parentheses. It is compiled once into a Python closure; the
flow table evaluates it once per flow and direction, never per packet.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from sensor.flows.table import PacketFilter

Predicate = Callable[[int, bytes, bytes, int, int], bool]

_TOKEN = re.compile(r"\s*(\(|\)|&&|\|\||!|[^\s()!&|]+)")


_PROTOCOLS: dict[str, Predicate] = {
    "tcp": lambda t, s, d, sp, dp: t == 6,
    "udp": lambda t, s, d, sp, dp: t == 17,
    "ip": lambda t, s, d, sp, dp: len(s) == 4,
    "ip6": lambda t, s, d, sp, dp: len(s) == 16,
}
# Keywords a protocol name may qualify.
_QUALIFIED = frozenset({"src", "dst", "host", "net", "port", "portrange"})


class FilterError(ValueError):
    """A filter expression that does not parse; the message says where."""


def _tokens(expression: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    expression = expression.rstrip()
    while pos < len(expression):
        match = _TOKEN.match(expression, pos)
        if match is None:
            raise FilterError(f"cannot read filter at {expression[pos:]!r}")
        tokens.append(match.group(1))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, expression: str) -> None:
        self.tokens = _tokens(expression)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise FilterError("filter ends too early")
        self.pos += 1
        return token

    def expression(self) -> Predicate:
        # pcap-filter(7): "and" and "or" have equal precedence and associate
        # left to right; only "not" binds tighter.
        left = self.factor()
        while True:
            token = self.peek()
            if token in ("and", "&&"):
                self.take()
                right = self.factor()
                left = (lambda a, b: lambda *p: a(*p) and b(*p))(left, right)
            elif token in ("or", "||"):
                self.take()
                right = self.factor()
                left = (lambda a, b: lambda *p: a(*p) or b(*p))(left, right)
            else:
                return left

    def factor(self) -> Predicate:
        token = self.take()
        if token in ("not", "!"):
            inner = self.factor()
            return lambda *p: not inner(*p)
        if token == "(":
            inner = self.expression()
            if self.peek() != ")":
                raise FilterError("missing ')' in filter")
            self.take()
            return inner
        return self.primitive(token)

    def primitive(self, token: str) -> Predicate:
        protocol = _PROTOCOLS.get(token)
        if protocol is not None:
            if self.peek() in _QUALIFIED:
                # "tcp port 502", "ip6 src net 2001:db8::/32": the protocol
                # qualifies the primitive after it.
                qualified = self.primitive(self.take())
                return lambda *p: protocol(*p) and qualified(*p)
            return protocol
        direction = "either"
        if token in ("src", "dst"):
            direction = token
            token = self.take()
        if token == "host":
            return self._address(direction, self.take(), host=True)
        if token == "net":
            return self._address(direction, self.take(), host=False)
        if token in ("port", "portrange"):
            value = self.take()
            try:
                low, _, high = value.partition("-")
                first = int(low)
                last = int(high) if high else first
            except ValueError:
                raise FilterError(f"bad port {value!r} in filter") from None
            if not (0 <= first <= last <= 65535):
                raise FilterError(f"port {value!r} out of range in filter")
            if direction == "src":
                return lambda t, s, d, sp, dp: first <= sp <= last
            if direction == "dst":
                return lambda t, s, d, sp, dp: first <= dp <= last
            return lambda t, s, d, sp, dp: first <= sp <= last or first <= dp <= last
        raise FilterError(f"unknown filter keyword {token!r}")

    @staticmethod
    def _address(direction: str, value: str, host: bool) -> Predicate:
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            kind = "host" if host else "net"
            raise FilterError(f"bad {kind} address {value!r} in filter") from None
        if host and network.num_addresses != 1:
            raise FilterError(f"host {value!r} is a network; use 'net'")
        raw = network.network_address.packed
        prefix = network.prefixlen
        whole, bits = divmod(prefix, 8)
        mask = (0xFF << (8 - bits)) & 0xFF if bits else 0

        def inside(address: bytes) -> bool:
            if len(address) != len(raw) or address[:whole] != raw[:whole]:
                return False
            return not bits or (address[whole] & mask) == raw[whole]

        if direction == "src":
            return lambda t, s, d, sp, dp: inside(s)
        if direction == "dst":
            return lambda t, s, d, sp, dp: inside(d)
        return lambda t, s, d, sp, dp: inside(s) or inside(d)


def compile_filter(expression: str) -> PacketFilter:
    parser = _Parser(expression)
    if parser.peek() is None:
        raise FilterError("empty filter")
    predicate = parser.expression()
    if parser.peek() is not None:
        raise FilterError(f"unexpected {parser.peek()!r} in filter")
    return predicate
