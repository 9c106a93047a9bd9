"""S7comm-plus identification on frames built from the protocol description
(there is no open Python stack and Wireshark 4.0 has no dissector): header,
version, opcode, function, sequence number, session id, integrity part,
pairing, fragments, keep-alives and broken PDUs."""

from __future__ import annotations

import struct
from pathlib import Path

from builders import TcpConversation, replay_packets

from sensor.event import IcsEvent

DIGEST = bytes(range(32))


def tpkt(cotp: bytes) -> bytes:
    return struct.pack("!BBH", 3, 0, len(cotp) + 4) + cotp


def dt(payload: bytes) -> bytes:
    return tpkt(b"\x02\xf0\x80" + payload)


def cr(dst_tsap: bytes, src_tsap: bytes) -> bytes:
    params = b"\xc1" + bytes([len(src_tsap)]) + src_tsap + b"\xc2" + bytes([len(dst_tsap)]) \
        + dst_tsap + b"\xc0\x01\x0a"
    return tpkt(bytes([6 + len(params), 0xE0, 0, 0, 0, 0x1B, 0]) + params)


def plus(version: int, data: bytes, trailer: bool = True) -> bytes:
    pdu = struct.pack("!BBH", 0x72, version, len(data)) + data
    return pdu + (struct.pack("!BBH", 0x72, version, 0) if trailer else b"")


def request(function: int, seq: int, session: int = 0x120, body: bytes = b"") -> bytes:
    return struct.pack("!BHHHHIB", 0x31, 0, function, 0, seq, session, 0x36) + body


def response(function: int, seq: int, body: bytes = b"") -> bytes:
    return struct.pack("!BHHHHB", 0x32, 0, function, 0, seq, 0x34) + body


def v2_integrity(integrity_id: int = 3) -> bytes:
    return bytes([integrity_id, 32]) + DIGEST


def _replay(tmp_path: Path, frames: list[tuple[bool, bytes]]) -> list[IcsEvent]:
    conversation = TcpConversation(server_port=102)
    conversation.handshake()
    conversation.request(cr(b"SIMATIC-ROOT-HMI", b"\x06\x20"))
    for from_client, frame in frames:
        (conversation.request if from_client else conversation.reply)(frame)
    events, _ = replay_packets(tmp_path, conversation.packets)
    return events


def test_v1_session_setup_is_identified(tmp_path: Path) -> None:
    events = _replay(tmp_path, [
        (True, dt(plus(1, request(0x04CA, 1, body=b"\x00\x00\x01\x20")))),
        (False, dt(plus(1, response(0x04CA, 1, body=b"\x00\x00")))),
    ])
    connect, create, created = events
    assert (connect.protocol, connect.operation) == ("s7comm_plus", "cotp_connection_request")
    assert connect.fields["cotp.dst-tsap"] == "SIMATIC-ROOT-HMI"
    assert (create.protocol, create.direction, create.operation) == (
        "s7comm_plus", "request", "create_object")
    assert create.fields["header.version"] == 1
    assert create.fields["data.opcode"] == 0x31 and create.fields["data.seqnum"] == 1
    assert create.fields["data.sessionid"] == 0x120
    assert create.fields["integrity_protected"] is False
    assert (created.direction, created.operation, created.request_packet) == (
        "response", "create_object", create.packet)
    assert created.malformed is None and created.response_time is not None


def test_v2_pdus_carry_an_integrity_digest(tmp_path: Path) -> None:
    events = _replay(tmp_path, [
        (True, dt(plus(2, request(0x054C, 3, body=bytes(12)) + v2_integrity()))),
        (False, dt(plus(2, response(0x054C, 3, body=bytes(8)) + v2_integrity(4)))),
        (True, dt(plus(2, request(0x0542, 4, body=bytes(20)) + v2_integrity(5)))),
    ])
    read, answer, write = events[1:]
    assert (read.operation, read.access) == ("get_multi_variables", "read")
    assert (write.operation, write.access) == ("set_multi_variables", "write")
    for event in (read, answer, write):
        assert event.fields["integrity_protected"] is True
        assert event.fields["integrity.digestlen"] == 32
        assert event.malformed is None
    assert answer.request_packet == read.packet


def test_v3_integrity_part_leads_the_data(tmp_path: Path) -> None:
    events = _replay(tmp_path, [
        (True, dt(plus(3, b"\x20" + DIGEST + request(0x04F2, 9, body=bytes(6))))),
        (True, dt(plus(3, b"\x20" + DIGEST + request(0x04D4, 10)))),
    ])
    set_variable, delete = events[1:]
    assert (set_variable.operation, set_variable.access) == ("set_variable", "write")
    assert set_variable.fields["header.version"] == 3
    assert set_variable.fields["integrity.digestlen"] == 32
    assert set_variable.fields["data.seqnum"] == 9
    assert delete.operation == "delete_object"


def test_explore_and_keep_alive(tmp_path: Path) -> None:
    events = _replay(tmp_path, [
        (True, dt(plus(1, request(0x04BB, 2, body=bytes(10))))),
        (True, dt(b"\x72\xff\x05\x00")),
    ])
    assert [e.operation for e in events[1:]] == ["explore", "keep_alive"]
    assert events[2].fields["header.keepalive_seqnum"] == 5


def test_fragments_join_until_the_trailer(tmp_path: Path) -> None:
    whole = request(0x0542, 7, body=bytes(range(40)))
    events = _replay(tmp_path, [
        (True, dt(plus(1, whole[:20], trailer=False))),
        (True, dt(plus(1, whole[20:]))),
    ])
    assert [(e.packet, e.operation, e.malformed) for e in events[1:]] == [
        (6, "set_multi_variables", None)]
    assert events[1].fields["data.seqnum"] == 7


def test_broken_pdus_are_flagged(tmp_path: Path) -> None:
    events = _replay(tmp_path, [
        (True, dt(plus(1, request(0x04BB, 2)))),  # confirms the flow
        (True, dt(plus(1, b"\x55" + bytes(12)))),  # unknown opcode
        (True, dt(plus(1, request(0x04BB, 3))[:-1] + b"\x09")),  # bad trailer
        (True, dt(plus(7, request(0x04BB, 4)))),  # unknown version
        (True, dt(plus(1, request(0x0777, 5)))),  # unknown function
        (True, dt(b"\x72\x01")),  # truncated header
        (True, dt(plus(1, request(0x04BB, 6)))),
    ])
    assert [(e.operation, e.malformed) for e in events[1:]] == [
        ("explore", None), ("unknown_function", "unknown_function"), ("explore", "bad_value"),
        ("malformed", "bad_value"), ("unknown_function", "unknown_function"),
        ("malformed", "truncated"), ("explore", None),
    ]
    assert all(e.protocol == "s7comm_plus" for e in events[1:])
