"""DNP3 framing, reassembly and bad input on a live flow: frames split
anywhere across segments, fragments across link frames, and each damaged
frame one event with a `malformed` reason, the good frames after it still
decoded."""

from __future__ import annotations

import struct
from pathlib import Path

from builders import CLIENT_IP, SERVER_IP, TcpConversation, replay_packets
from scapy.layers.inet import IP, UDP

from sensor.event import IcsEvent
from sensor.protocols.dnp3 import crc16

MASTER, OUTSTATION = 1, 10
READ_CLASS_0 = bytes([60, 1, 0x06])


def _crc(data: bytes) -> bytes:
    return struct.pack("<H", crc16(data, 0, len(data)))


def frame(user: bytes, *, ctl: int = 0xC4, dst: int = OUTSTATION, src: int = MASTER,
          length: int | None = None) -> bytes:
    header = struct.pack("<BBBBHH", 5, 0x64, 5 + len(user) if length is None else length, ctl,
                         dst, src)
    blocks = b"".join(user[i : i + 16] + _crc(user[i : i + 16]) for i in range(0, len(user), 16))
    return header + _crc(header) + blocks


def request(seq: int, function: int, objects: bytes = b"") -> bytes:
    return frame(bytes([0xC0 | seq, 0xC0 | seq, function]) + objects)


def response(seq: int, objects: bytes = b"", iin: int = 0) -> bytes:
    """A response in as many link frames as it needs (249 octets each)."""
    fragment = bytes([0xC0 | seq, 0x81, iin >> 8, iin & 0xFF]) + objects
    chunks = [fragment[i : i + 249] for i in range(0, len(fragment), 249)]
    out = b""
    for number, chunk in enumerate(chunks):
        transport = number & 0x3F | (0x40 if number == 0 else 0) | \
            (0x80 if number == len(chunks) - 1 else 0)
        out += frame(bytes([transport]) + chunk, ctl=0x44, dst=MASTER, src=OUTSTATION)
    return out


def analogs(count: int) -> bytes:
    """g30v1 points 0..count-1, flags 1, value = 10 * index."""
    head = bytes([30, 1, 0x01]) + struct.pack("<HH", 0, count - 1)
    return head + b"".join(struct.pack("<Bi", 1, 10 * i) for i in range(count))


def _conversation() -> TcpConversation:
    conversation = TcpConversation(server_port=20000)
    conversation.handshake()
    return conversation


def _rows(events: list[IcsEvent]) -> list[tuple[object, ...]]:
    return [(e.packet, e.direction, e.operation, e.malformed) for e in events]


def test_fragment_across_link_frames_and_segments_split_anywhere(tmp_path: Path) -> None:
    """A 1004-octet response in five link frames, cut into 7-octet
    segments, and two requests in one segment."""
    conversation = _conversation()
    conversation.request(request(1, 1, READ_CLASS_0) + request(2, 1, READ_CLASS_0))
    wire = response(1, analogs(200))
    for offset in range(0, len(wire), 7):
        conversation.reply(wire[offset : offset + 7])
    conversation.reply(response(2, analogs(2)))
    events, _ = replay_packets(tmp_path, conversation.packets)
    last = 4 + (len(wire) + 6) // 7
    assert _rows(events) == [
        (4, "request", "read", None), (4, "request", "read", None),
        (last, "response", "read", None), (last + 1, "response", "read", None),
    ]
    big = events[2]
    assert big.fields["al.point_index"] == list(range(200))
    assert big.fields["al.ana.int"] == [10 * i for i in range(200)]
    assert big.fields["al.aiq"] == [1] * 200
    assert big.fields["tr.fin"] is True and big.fields["tr.fir"] is False
    assert big.request_packet == 4 and big.response_time is not None
    assert big.unit == OUTSTATION and big.fields["src"] == OUTSTATION


def test_bad_crcs_and_lengths_then_good_frames(tmp_path: Path) -> None:
    conversation = _conversation()
    conversation.request(request(1, 1, READ_CLASS_0))
    conversation.reply(response(1))
    good = request(2, 1, READ_CLASS_0)
    conversation.request(good[:8] + bytes([good[8] ^ 0xFF]) + good[9:])  # header CRC
    damaged = bytearray(request(3, 1, READ_CLASS_0))
    damaged[-1] ^= 0xFF  # data block CRC
    conversation.request(bytes(damaged))
    short = struct.pack("<BBBBHH", 5, 0x64, 3, 0xC4, OUTSTATION, MASTER)
    conversation.request(short + _crc(short))
    conversation.request(request(4, 1, READ_CLASS_0))
    conversation.reply(response(4))
    events, stats = replay_packets(tmp_path, conversation.packets)
    assert _rows(events) == [
        (4, "request", "read", None), (5, "response", "read", None),
        (6, "request", "malformed", "bad_crc"), (7, "request", "malformed", "bad_crc"),
        (8, "request", "malformed", "bad_length"),
        (9, "request", "read", None), (10, "response", "read", None),
    ]
    assert "header CRC" in events[2].fields["error"]
    assert "data block 0" in events[3].fields["error"]
    assert stats.malformed == 3


def test_application_errors(tmp_path: Path) -> None:
    """Unknown function (answered, and paired), object data cut short, a
    reserved qualifier, an unknown object with data, a range that stops
    before it starts."""
    conversation = _conversation()
    conversation.request(request(1, 0x70))
    conversation.reply(response(1, iin=0x0001))
    conversation.request(request(2, 2, bytes([80, 1, 0x00, 7, 7])))
    conversation.request(request(3, 1, bytes([30, 1, 0x0C])))
    conversation.request(request(4, 2, bytes([99, 9, 0x00, 0, 0, 1, 2, 3])))
    conversation.request(request(5, 5, bytes([12, 1, 0x00, 5, 2])))
    conversation.request(request(6, 1, READ_CLASS_0))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events) == [
        (4, "request", "unknown_function", "unknown_function"),
        (5, "response", "unknown_function", None),
        (6, "request", "write", "truncated"), (7, "request", "read", "bad_value"),
        (8, "request", "write", "bad_value"), (9, "request", "direct_operate", "bad_value"),
        (10, "request", "read", None),
    ]
    assert events[1].exception is True and events[1].fields["al.iin"] == 1
    assert "g99v9" in events[4].fields["error"]


def test_crob_fields_and_access(tmp_path: Path) -> None:
    conversation = _conversation()
    crob = bytes([12, 1, 0x28]) + struct.pack("<HHBBIIB", 1, 7, 0x41, 2, 500, 300, 0)
    conversation.request(request(1, 5, crob))
    aob = bytes([41, 3, 0x28]) + struct.pack("<HHfB", 1, 2, 47.5, 0)
    conversation.request(request(2, 3, aob))
    events, _ = replay_packets(tmp_path, conversation.packets)
    operate, select = events
    assert (operate.access, select.access) == ("control", "write")
    assert operate.fields["al.index"] == [7]
    assert (operate.fields["ctl.op"], operate.fields["ctl.trip"]) == ([1], [1])
    assert (operate.fields["al.on_time"], operate.fields["al.off_time"]) == ([500], [300])
    assert select.fields["al.anaout.float"] == [47.5]


def test_transport_sequence_break_drops_the_fragment(tmp_path: Path) -> None:
    wire = response(1, analogs(100))
    second = 10 + 250 + 2 * 16  # the first link frame is full
    frames = [wire[:second], wire[second:]]
    broken = bytearray(frames[1])
    user = bytearray(broken[10:26])
    user[0] = 0x80 | 5  # FIN, sequence 5 instead of 1
    broken[10:28] = bytes(user) + _crc(bytes(user))
    conversation = _conversation()
    conversation.request(request(1, 1, READ_CLASS_0))
    conversation.reply(frames[0])
    conversation.reply(bytes(broken))
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events) == [(4, "request", "read", None), (6, "response", "malformed",
                                                           "truncated")]
    assert "out of sequence" in events[1].fields["error"]


def test_junk_and_a_frame_cut_short_at_the_end(tmp_path: Path) -> None:
    conversation = _conversation()
    conversation.request(request(1, 1, READ_CLASS_0))
    conversation.request(b"GET / HTTP/1.0\r\n\r\n" + request(2, 1, READ_CLASS_0))
    conversation.request(request(3, 1, READ_CLASS_0)[:12])
    events, _ = replay_packets(tmp_path, conversation.packets)
    assert _rows(events) == [
        (4, "request", "read", None), (5, "request", "malformed", "bad_protocol_id"),
        (5, "request", "read", None), (0, "request", "malformed", "truncated"),
    ]


def test_udp_datagrams(tmp_path: Path) -> None:
    def datagram(payload: bytes, from_master: bool = True) -> IP:
        src, dst = (CLIENT_IP, SERVER_IP) if from_master else (SERVER_IP, CLIENT_IP)
        sport, dport = (20001, 20000) if from_master else (20000, 20001)
        return IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload

    packets = [datagram(request(1, 1, READ_CLASS_0)),
               datagram(response(1, analogs(3)), False),
               datagram(request(2, 1, READ_CLASS_0)[:14])]
    events, _ = replay_packets(tmp_path, packets)
    assert _rows(events) == [(1, "request", "read", None), (2, "response", "read", None),
                             (3, "request", "malformed", "truncated")]
    assert events[1].fields["al.ana.int"] == [0, 10, 20]
