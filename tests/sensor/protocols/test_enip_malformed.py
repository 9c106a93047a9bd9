"""EtherNet/IP on a live flow: messages split anywhere or batched, bad
lengths, unknown commands, broken CPF and CIP, gaps, UDP datagrams and
implicit I/O. Each bad message is one event with a `malformed` reason, and
the valid messages after it still decode."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from builders import TcpConversation, replay_packets
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.packet import Raw

from sensor.event import MALFORMED_REASONS

ENIP_PORT = 44818
SESSION = 0x11223344
GET_PRODUCT_NAME = bytes([0x0E, 0x03, 0x20, 0x01, 0x24, 0x01, 0x30, 0x07])
PRODUCT_NAME_REPLY = bytes([0x8E, 0, 0, 0, 5]) + b"PLC-1"


def encap(command: int, data: bytes = b"", *, session: int = SESSION, status: int = 0,
          context: bytes = b"ctx00001", length: int | None = None) -> bytes:
    size = len(data) if length is None else length
    return struct.pack("<HHII8sI", command, size, session, status, context, 0) + data


def cpf(items: list[tuple[int, bytes]], lengths: dict[int, int] | None = None) -> bytes:
    out = struct.pack("<H", len(items))
    for index, (item_type, data) in enumerate(items):
        size = (lengths or {}).get(index, len(data))
        out += struct.pack("<HH", item_type, size) + data
    return out


def rr_data(cip: bytes, **kwargs: Any) -> bytes:
    """SendRRData with a null address and an unconnected data item."""
    return encap(0x6F, struct.pack("<IH", 0, 10) + cpf([(0, b""), (0xB2, cip)]), **kwargs)


def unit_data(cip: bytes, connid: int, sequence: int) -> bytes:
    items = [(0xA1, struct.pack("<I", connid)), (0xB1, struct.pack("<H", sequence) + cip)]
    return encap(0x70, struct.pack("<IH", 0, 0) + cpf(items))


def register() -> bytes:
    return encap(0x65, struct.pack("<HH", 1, 0), session=0)


def _conversation() -> TcpConversation:
    """Handshake (1-3) and a RegisterSession exchange (4, 5)."""
    conversation = TcpConversation(server_port=ENIP_PORT)
    conversation.handshake()
    conversation.request(register())
    conversation.reply(encap(0x65, struct.pack("<HH", 1, 0)))
    return conversation


def _rows(events: list[Any]) -> list[tuple[Any, ...]]:
    return [(e.packet, e.direction, e.operation, e.malformed) for e in events]


def test_message_split_anywhere_and_batched(tmp_path: Path) -> None:
    conversation = _conversation()
    request = rr_data(GET_PRODUCT_NAME)
    conversation.request(request[:3])
    conversation.request(request[3:30])
    conversation.request(request[30:] + rr_data(GET_PRODUCT_NAME, context=b"ctx00002"))
    conversation.reply(rr_data(PRODUCT_NAME_REPLY) + rr_data(PRODUCT_NAME_REPLY,
                                                             context=b"ctx00002")[:40])
    conversation.reply(rr_data(PRODUCT_NAME_REPLY, context=b"ctx00002")[40:])
    events, stats = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2:] == [
        (8, "request", "get_attribute_single", None),
        (8, "request", "get_attribute_single", None),
        (9, "response", "get_attribute_single", None),
        (10, "response", "get_attribute_single", None),
    ]
    reply = events[4]
    assert reply.fields["id.product_name"] == "PLC-1"
    assert (reply.fields["class"], reply.fields["attribute"]) == (1, 7)  # from the request
    assert reply.request_packet == 8 and reply.access == "diagnostic"
    assert events[5].fields["context"] == b"ctx00002".hex()
    assert stats.malformed == 0
    assert events[0].flow.analyzer_status == "confirmed"


def test_unknown_command_is_skipped_by_its_length(tmp_path: Path) -> None:
    conversation = _conversation()
    conversation.request(encap(0xFF, b"\x01\x02\x03\x04") + rr_data(GET_PRODUCT_NAME))
    events, stats = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2:] == [
        (6, "request", "unknown_command", "unknown_function"),
        (6, "request", "get_attribute_single", None),
    ]
    assert events[2].fields["command"] == 0xFF
    assert events[2].fields["encap_data"] == "01020304"
    assert stats.malformed == 1


def test_unknown_command_running_past_the_segment_resynchronises(tmp_path: Path) -> None:
    """A header whose length cannot be trusted: the rest of the segment is
    one malformed message and decoding resumes at the next segment."""
    conversation = _conversation()
    conversation.request(encap(0x0BAD, b"\x00" * 4, length=5000))
    conversation.request(b"garbage that is not a header at all....")
    conversation.request(rr_data(GET_PRODUCT_NAME))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2:] == [
        (6, "request", "unknown_command", "unknown_function"),
        (8, "request", "get_attribute_single", None),
    ]


def test_encapsulation_length_short_of_the_cpf(tmp_path: Path) -> None:
    """The header says 8 bytes fewer than sent: the CPF does not fit (bad
    length) and the 8 left over are too short to be a message."""
    conversation = _conversation()
    message = rr_data(GET_PRODUCT_NAME)
    conversation.request(encap(0x6F, message[24:], length=len(message) - 24 - 8))
    conversation.fin()
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2:] == [
        (6, "request", "send_rr_data", "bad_length"),
        (6, "request", "malformed", "truncated"),
    ]


def test_cpf_item_longer_than_the_message(tmp_path: Path) -> None:
    conversation = _conversation()
    data = struct.pack("<IH", 0, 10) + cpf([(0, b""), (0xB2, GET_PRODUCT_NAME)], {1: 40})
    conversation.request(encap(0x6F, data))
    conversation.request(rr_data(GET_PRODUCT_NAME))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2:] == [
        (6, "request", "get_attribute_single", "bad_length"),
        (7, "request", "get_attribute_single", None),
    ]
    assert events[2].fields["cpf.length"] == [0, 40]


def test_request_path_longer_than_the_message(tmp_path: Path) -> None:
    conversation = _conversation()
    conversation.request(rr_data(bytes([0x0E, 0x09, 0x20, 0x01])))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2] == (6, "request", "unknown_service", "bad_length")


def test_multiple_service_packet_with_offsets_outside_it(tmp_path: Path) -> None:
    conversation = _conversation()
    msp = bytes([0x0A, 0x02, 0x20, 0x02, 0x24, 0x01]) + struct.pack("<HHH", 2, 6, 200)
    conversation.request(rr_data(msp + GET_PRODUCT_NAME))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2] == (6, "request", "multiple_service_packet", "bad_length")


def test_multiple_service_packet_is_one_event_per_service(tmp_path: Path) -> None:
    """A write hidden among reads is its own event, with access write."""
    write = bytes([0x4D, 0x03, 0x91, 0x04]) + b"TEMP" + struct.pack("<HHf", 0xCA, 1, 99.5)
    services = [GET_PRODUCT_NAME, write, GET_PRODUCT_NAME]
    offsets, body = [], b""
    for service in services:
        offsets.append(2 + 2 * len(services) + len(body))
        body += service
    msp = (bytes([0x0A, 0x02, 0x20, 0x02, 0x24, 0x01]) + struct.pack("<H", len(services))
           + struct.pack(f"<{len(services)}H", *offsets) + body)
    conversation = _conversation()
    conversation.request(rr_data(msp))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert [(e.operation, e.access, e.fields["msp.offset"]) for e in events[2:]] == [
        ("get_attribute_single", "diagnostic", 8), ("write_tag", "write", 16),
        ("get_attribute_single", "diagnostic", 32),
    ]
    assert events[3].fields["symbol"] == "TEMP" and events[3].fields["tag.type"] == 0xCA


def test_unconnected_send_carries_a_reset(tmp_path: Path) -> None:
    reset = bytes([0x05, 0x02, 0x20, 0x01, 0x24, 0x01, 0x01])
    send = (bytes([0x52, 0x02, 0x20, 0x06, 0x24, 0x01, 0x05, 0x9D])
            + struct.pack("<H", len(reset)) + reset + b"\x00" + bytes([1, 0, 1, 0]))
    conversation = _conversation()
    conversation.request(rr_data(send))
    conversation.reply(rr_data(bytes([0x85, 0, 0, 0])))
    events, _ = replay_packets(tmp_path, conversation.packets)
    request, reply = events[2:]
    assert (request.operation, request.access) == ("reset", "control")
    assert request.fields["reset.type"] == 1
    assert request.fields["route_path"] == "0100" and request.fields["linkaddress.byte"] == 0
    assert (reply.operation, reply.fields["class"], reply.request_packet) == ("reset", 1, 6)


def test_connected_messages_pair_by_sequence_count(tmp_path: Path) -> None:
    conversation = _conversation()
    conversation.request(unit_data(GET_PRODUCT_NAME, 0x1000, 7))
    conversation.reply(unit_data(PRODUCT_NAME_REPLY, 0x2000, 7))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert [(e.fields["seq"], e.fields["cpf.cai.connid"]) for e in events[2:]] == [
        (7, 0x1000), (7, 0x2000)]
    assert events[3].request_packet == 6
    assert events[3].fields["id.product_name"] == "PLC-1"


def test_error_reply_without_data_is_not_malformed(tmp_path: Path) -> None:
    conversation = _conversation()
    conversation.request(rr_data(bytes([0x07, 0x02, 0x20, 0x01, 0x24, 0x01])))
    conversation.reply(encap(0x6F, status=8))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2:] == [(6, "request", "stop", None),
                                 (7, "response", "send_rr_data", None)]
    assert events[3].exception and events[3].request_packet == 6


def test_truncated_message_at_end_of_flow(tmp_path: Path) -> None:
    conversation = _conversation()
    conversation.request(rr_data(GET_PRODUCT_NAME)[:30])
    conversation.fin()
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events)[2:] == [(0, "request", "send_rr_data", "truncated")]


def test_gap_resynchronises_on_the_next_header(tmp_path: Path) -> None:
    conversation = _conversation()
    message = rr_data(GET_PRODUCT_NAME)
    conversation.request(message[:20])
    conversation.request(message[20:], record=False)  # lost before the capture
    conversation.request(message[5:])  # a segment starting mid-message: not decodable
    conversation.request(rr_data(GET_PRODUCT_NAME, context=b"ctx00003"))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert [(e.operation, e.fields.get("context")) for e in events[2:]] == [
        ("get_attribute_single", b"ctx00003".hex())]


def test_every_reason_is_in_the_fixed_vocabulary(tmp_path: Path) -> None:
    conversation = _conversation()
    conversation.request(encap(0xFF, b"\x01"))
    conversation.request(rr_data(bytes([0x0E, 0x09, 0x20, 0x01])))
    conversation.request(rr_data(GET_PRODUCT_NAME)[:30])
    conversation.fin()
    events, stats = replay_packets(tmp_path, conversation.packets)
    reasons = [e.malformed for e in events if e.malformed]
    assert reasons == ["unknown_function", "bad_length", "truncated"]
    assert set(reasons) <= MALFORMED_REASONS
    assert stats.malformed == 3


def _udp(sport: int, dport: int, payload: bytes, src: str = "10.0.0.10",
         dst: str = "10.0.0.20") -> Any:
    return IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(payload)


def test_list_identity_over_udp(tmp_path: Path) -> None:
    name = b"PLC-1"
    identity = (struct.pack("<H", 1) + struct.pack(">HH4s8s", 2, ENIP_PORT, bytes([10, 0, 0, 20]),
                                                   bytes(8))
                + struct.pack("<HHH", 1, 14, 54) + struct.pack(">H", 0x140B)
                + struct.pack("<HIB", 0x3160, 0x6C061A, len(name)) + name + b"\x03")
    reply = encap(0x63, cpf([(0x0C, identity)]), session=0)
    packets = [_udp(50000, ENIP_PORT, encap(0x63, session=0)),
               _udp(ENIP_PORT, 50000, reply, "10.0.0.20", "10.0.0.10"),
               _udp(ENIP_PORT, 50000, reply[:40], "10.0.0.20", "10.0.0.10")]
    events, _ = replay_packets(tmp_path, packets)
    assert _rows(events) == [(1, "request", "list_identity", None),
                             (2, "response", "list_identity", None),
                             (3, "response", "list_identity", "bad_length")]
    assert events[1].fields["identity"] == {
        "vendor_id": 1, "vendor": "Rockwell Automation/Allen-Bradley", "device_type": 14,
        "device": "programmable logic controller", "product_code": 54, "revision": "20.11",
        "serial_number": "006c061a", "product_name": "PLC-1", "status": 0x3160, "state": 3,
    }
    assert events[1].access == "diagnostic" and events[1].request_packet == 1


def test_enip_found_by_its_framing_on_another_port(tmp_path: Path) -> None:
    conversation = TcpConversation(server_port=4000)
    conversation.handshake()
    conversation.request(register())
    conversation.reply(encap(0x65, struct.pack("<HH", 1, 0)))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert [(e.protocol, e.operation) for e in events] == [
        ("enip", "register_session"), ("enip", "register_session")]


def test_implicit_io_datagrams(tmp_path: Path) -> None:
    good = cpf([(0x8002, struct.pack("<II", 0x4B0603, 4166875)), (0xB1, bytes(6))])
    bad = cpf([(0x8002, struct.pack("<II", 0x4B0603, 4166876)), (0xB1, bytes(6))], {1: 30})
    packets = [_udp(2222, 2222, good), _udp(2222, 2222, bad)]
    events, _ = replay_packets(tmp_path, packets)
    assert [(e.protocol, e.operation, e.malformed) for e in events] == [
        ("enip_io", "io_data", None), ("enip_io", "io_data", "bad_length")]
    assert events[0].fields["cpf.sai.connid"] == 0x4B0603
    assert events[0].fields["cpf.sai.seq"] == 4166875
    assert events[0].fields["data"] == "00" * 6


# -- no input escapes as an exception -------------------------------------------

def _unconnected(cip: bytes) -> bytes:
    return (bytes([0x52, 0x02, 0x20, 0x06, 0x24, 0x01, 0x05, 0x9D]) + struct.pack("<H", len(cip))
            + cip + b"\x00" * (len(cip) & 1) + bytes([1, 0, 1, 0]))


def _msp(services: list[bytes]) -> bytes:
    offsets, body = [], b""
    for service in services:
        offsets.append(2 + 2 * len(services) + len(body))
        body += service
    return (bytes([0x0A, 0x02, 0x20, 0x02, 0x24, 0x01]) + struct.pack("<H", len(services))
            + struct.pack(f"<{len(services)}H", *offsets) + body)


FORWARD_OPEN = (bytes([0x54, 0x02, 0x20, 0x06, 0x24, 0x01, 0x0A, 0x05])
                + struct.pack("<IIHHIB3xIHIHBB", 0, 7, 1, 2, 3, 1, 10000, 0x43F4, 10000, 0x43F4,
                              0xA3, 3) + bytes([1, 0, 0x20, 0x02, 0x24, 0x01]))
VALID_MESSAGES = (
    register(), rr_data(GET_PRODUCT_NAME), rr_data(PRODUCT_NAME_REPLY),
    unit_data(GET_PRODUCT_NAME, 1, 2), encap(0x63, session=0), encap(0x04),
    rr_data(_unconnected(_msp([GET_PRODUCT_NAME, GET_PRODUCT_NAME]))), rr_data(FORWARD_OPEN),
    rr_data(_unconnected(bytes([0x05, 0x02, 0x20, 0x01, 0x24, 0x01, 0x01]))),
)


def _session(transport: int = 6) -> tuple[Any, list[Any]]:
    from sensor.flows.flow import Flow
    from sensor.protocols.enip import EnipSession

    flow = Flow(1, transport, b"\x0a\x00\x00\x0a", b"\x0a\x00\x00\x14", 49152, ENIP_PORT, 0.0)
    events: list[Any] = []
    flow.session = session = EnipSession(flow, events.append)
    return session, events


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(VALID_MESSAGES), st.integers(0, 120),
                          st.integers(0, 255), st.booleans()), min_size=1, max_size=6),
       st.integers(1, 40))
def test_damaged_streams_never_raise(damage: list[tuple[bytes, int, int, bool]],
                                     chunk: int) -> None:
    """Messages with one byte changed, fed in chunks from both sides, and
    flushed at close: every outcome is an event, never an exception."""
    for transport in (6, 17):
        session, events = _session(transport)
        for index, (message, position, value, from_client) in enumerate(damage):
            data = bytearray(message)
            data[position % len(data)] = value
            for start in range(0, len(data), chunk):
                session.feed(from_client, bytes(data[start : start + chunk]), float(index),
                             index + 1)
        session.close(99.0)
        assert all(e.malformed is None or e.malformed in MALFORMED_REASONS for e in events)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    from sensor.flows.flow import Flow
    from sensor.protocols.enip_io import EnipIoSession

    session, events = _session()
    session.feed(True, data, 0.0, 1)
    session.close(1.0)
    io_flow = Flow(2, 17, b"\x0a\x00\x00\x0a", b"\x0a\x00\x00\x14", 2222, 2222, 0.0)
    EnipIoSession(io_flow, events.append).feed(True, data, 0.0, 1)
    assert all(e.malformed is None or e.malformed in MALFORMED_REASONS for e in events)


def test_no_field_is_the_parent_of_another() -> None:
    """Events become JSON documents with dotted keys expanded (Elasticsearch):
    ``a.b`` and ``a.b.c`` cannot both be fields."""
    from sensor.protocols.enip import FIELDS as ENIP_FIELDS
    from sensor.protocols.enip_io import FIELDS as IO_FIELDS

    for fields in (ENIP_FIELDS, IO_FIELDS):
        names = [name for name, _ in fields]
        assert len(names) == len(set(names))
        assert not [(a, b) for a in names for b in names if b.startswith(a + ".")]


def test_every_field_of_the_captures_is_declared_with_its_kind() -> None:
    """What rules may test (the spec's fields) is what events carry."""
    from sensor.protocols.enip import FIELDS as ENIP_FIELDS
    from sensor.protocols.enip_io import FIELDS as IO_FIELDS
    from sensor.runtime import Sensor

    python_types = {"int": int, "str": str, "bool": bool, "ip": str, "map": dict,
                    "list[int]": list}
    kinds = {"enip": dict(ENIP_FIELDS), "enip_io": dict(IO_FIELDS)}
    root = Path(__file__).resolve().parents[3]
    captures = sorted((root / "pcaps" / "enip").glob("*.pcapng"))
    events: list[Any] = []
    Sensor(events.append).replay(captures)
    seen: set[str] = set()
    for event in events:
        for name, value in event.fields.items():
            kind = kinds[event.protocol].get(name)
            assert kind is not None, f"{event.protocol}.{name} is not declared"
            assert type(value) is python_types[kind], f"{name}: {value!r} is not {kind}"
            seen.add(name)
    assert {"symbol", "tag.type", "cm.ot_connid", "lir.name", "id.product_name",
            "identity", "msp.offset", "route_path"} <= seen


def test_multiple_service_reply_without_its_request(tmp_path: Path) -> None:
    """Picked up mid-conversation: the reply's services still split, each
    with its own status, though no path is known."""
    replies = [PRODUCT_NAME_REPLY, bytes([0x8E, 0, 0x05, 0])]
    offsets, body = [], b""
    for reply in replies:
        offsets.append(2 + 2 * len(replies) + len(body))
        body += reply
    msp_reply = bytes([0x8A, 0, 0, 0]) + struct.pack("<3H", 2, *offsets) + body
    conversation = _conversation()
    conversation.reply(rr_data(msp_reply))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert [(e.operation, e.fields["genstat"], e.exception) for e in events[2:]] == [
        ("get_attribute_single", 0, False), ("get_attribute_single", 5, True)]
