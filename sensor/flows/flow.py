"""One bidirectional transport flow, shared by every event decoded from it."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import struct
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from sensor.flows.tcp import TcpStream
    from sensor.protocols.base import Session

TCP: Final = 6
UDP: Final = 17
TRANSPORT_NAMES: Final = {TCP: "tcp", UDP: "udp"}

# Analyzer states, as Zeek's analyzer framework records them.
CONFIRMED: Final = "confirmed"
VIOLATED: Final = "violated"
DISABLED: Final = "disabled"


def format_ip(raw: bytes) -> str:
    if len(raw) == 4:
        return f"{raw[0]}.{raw[1]}.{raw[2]}.{raw[3]}"
    return str(ipaddress.IPv6Address(raw))


def format_mac(raw: bytes) -> str:
    return raw.hex(":")


def community_id(
    proto: int, src: bytes, dst: bytes, sport: int, dport: int, seed: int = 0
) -> str:
    """Community ID v1 of a flow (https://github.com/corelight/community-id-spec)."""
    if (src, sport) > (dst, dport):
        src, dst, sport, dport = dst, src, dport, sport
    digest = hashlib.sha1(
        struct.pack("!H", seed) + src + dst + struct.pack("!BBHH", proto, 0, sport, dport)
    ).digest()
    return "1:" + base64.b64encode(digest).decode("ascii")


class Flow:
    """A transport conversation; "initiator" is the side that opened it (or, when
    the capture started mid-stream, the side judged to be the client)."""

    __slots__ = (
        "_community_id",
        "analyzer_reason",
        "analyzer_status",
        "bytes_from_initiator",
        "bytes_from_responder",
        "closed",
        "consumer_state",
        "ecs_parts",
        "fin_from_initiator",
        "fin_from_responder",
        "first_ts",
        "initiator_ip",
        "initiator_mac",
        "initiator_port",
        "initiator_raw",
        "last_ts",
        "midstream",
        "number",
        "packets_from_initiator",
        "packets_from_responder",
        "pass_from_initiator",
        "pass_from_responder",
        "probes_left",
        "protocol",
        "responder_ip",
        "responder_mac",
        "responder_port",
        "responder_raw",
        "session",
        "stream_from_initiator",
        "stream_from_responder",
        "transport",
    )

    def __init__(
        self,
        number: int,
        transport: int,
        initiator_raw: bytes,
        responder_raw: bytes,
        initiator_port: int,
        responder_port: int,
        ts: float,
    ) -> None:
        self.number = number
        self.transport = transport
        self.initiator_raw = initiator_raw
        self.responder_raw = responder_raw
        self.initiator_ip = format_ip(initiator_raw)
        self.responder_ip = format_ip(responder_raw)
        self.initiator_port = initiator_port
        self.responder_port = responder_port
        self.initiator_mac: str | None = None
        self.responder_mac: str | None = None
        self.first_ts = ts
        self.last_ts = ts
        self.packets_from_initiator = 0
        self.packets_from_responder = 0
        self.bytes_from_initiator = 0
        self.bytes_from_responder = 0
        self.midstream = False
        self.closed = False
        self.fin_from_initiator = False
        self.fin_from_responder = False
        self.pass_from_initiator = True
        self.pass_from_responder = True
        self.stream_from_initiator: TcpStream | None = None
        self.stream_from_responder: TcpStream | None = None
        self.session: Session | None = None
        self.protocol: str | None = None
        self.analyzer_status: str | None = None
        self.analyzer_reason: str | None = None
        self.probes_left = 0
        self._community_id: str | None = None
        # The Elastic Common Schema pieces shared by its events (sensor.ecs).
        self.ecs_parts: tuple[dict[str, Any], dict[str, Any], str, str] | None = None
        # What a consumer above the sensor keeps per flow (the asset
        # inventory's edge), so it needs no table of its own keyed by flow.
        self.consumer_state: Any = None

    @property
    def community_id(self) -> str:
        if self._community_id is None:
            self._community_id = community_id(
                self.transport,
                self.initiator_raw,
                self.responder_raw,
                self.initiator_port,
                self.responder_port,
            )
        return self._community_id

    @property
    def transport_name(self) -> str:
        return TRANSPORT_NAMES.get(self.transport, str(self.transport))

    def confirm(self) -> None:
        """The analyzer saw a well-formed exchange: the flow is its protocol's."""
        self.analyzer_status = CONFIRMED
        self.analyzer_reason = None

    def violation(self, reason: str) -> None:
        if self.analyzer_status != CONFIRMED:
            self.analyzer_status = VIOLATED
        self.analyzer_reason = reason

    def disable(self, reason: str) -> None:
        """Stop decoding this flow: it is not (or no longer) the protocol."""
        self.analyzer_status = DISABLED
        self.analyzer_reason = reason
        self.session = None
