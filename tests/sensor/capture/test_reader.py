"""Capture files: pcap (µs and ns, either byte order), pcapng (several
interfaces, link types and timestamp resolutions), gzip, several files in one
replay, and damaged files that must fail with one clear line."""

from __future__ import annotations

import gzip
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest
from builders import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_RAW,
    MODBUS_EXCHANGE_EVENTS,
    START_TS,
    TcpConversation,
    client_side,
    frames,
    link_frame,
    modbus_exchange,
    pcap_bytes,
    pcapng_block,
    pcapng_bytes,
    pcapng_epb,
    pcapng_idb,
    pcapng_shb,
    read_holding,
    read_holding_reply,
    replay,
    summary,
    write,
    write_pcap,
)
from scapy.layers.l2 import Ether
from scapy.utils import PcapNgWriter, wrpcap

from sensor.capture.reader import CaptureError, CaptureFile, read_frames
from sensor.ecs import iso_timestamp


def _exchange() -> TcpConversation:
    conversation = TcpConversation()
    modbus_exchange(conversation)
    return conversation


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.mark.parametrize("endian", ["<", ">"], ids=["little-endian", "big-endian"])
@pytest.mark.parametrize("nanoseconds", [False, True], ids=["usec", "nsec"])
def test_pcap_resolution_and_byte_order(tmp_path: Path, endian: str, nanoseconds: bool) -> None:
    packets = _exchange().packets
    path = write(tmp_path / "x.pcap",
                 pcap_bytes(frames(packets), endian=endian, nanoseconds=nanoseconds))

    events, stats = replay([path])

    assert summary(events) == MODBUS_EXCHANGE_EVENTS
    assert stats.packets == len(packets) == 10
    # Packet 5 (index 4) was written at START_TS + 4 ms, whatever the unit.
    assert events[1].ts == pytest.approx(START_TS + 0.004, abs=1e-6)
    assert iso_timestamp(events[1].ts) == "2023-11-14T22:13:20.004000Z"
    assert events[1].response_time == pytest.approx(0.001, abs=1e-6)


def test_pcap_nanosecond_fraction_is_not_read_as_microseconds(tmp_path: Path) -> None:
    """750 000 000 in a ns file is three quarters of a second, not 750 s."""
    packet = _exchange().packets[3]
    path = write(tmp_path / "ns.pcap",
                 pcap_bytes([(START_TS + 0.75, link_frame(packet, "ethernet"))],
                            nanoseconds=True, endian=">"))
    (ts, linktype, data, origlen), = list(read_frames(path))
    assert ts == pytest.approx(START_TS + 0.75, abs=1e-6)
    assert linktype == LINKTYPE_ETHERNET
    assert len(data) == origlen == 14 + 20 + 20 + 12


def test_pcap_linktype_fcs_bits_are_ignored(tmp_path: Path) -> None:
    """The upper bits of the link type field carry an FCS length, not the type."""
    content = bytearray(pcap_bytes(frames(_exchange().packets)))
    struct.pack_into("<I", content, 20, LINKTYPE_ETHERNET | 0x10000000)
    events, _ = replay([write(tmp_path / "fcs.pcap", bytes(content))])
    assert summary(events) == MODBUS_EXCHANGE_EVENTS


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcapng_two_interfaces_with_different_link_types_and_resolutions(
    tmp_path: Path, endian: str
) -> None:
    """The client's packets come in on an Ethernet interface with µs stamps,
    the server's on a raw-IP interface with ns stamps (if_tsresol 9); they
    are one flow and every timestamp is right."""
    records = []
    for i, packet in enumerate(_exchange().packets):
        ts = START_TS + i * 0.001
        if client_side(packet):
            records.append((0, ts, link_frame(packet, "ethernet")))
        else:
            records.append((1, ts, link_frame(packet, "raw")))
    content = pcapng_bytes([(LINKTYPE_ETHERNET, None), (LINKTYPE_RAW, 9)], records,
                           endian=endian)
    path = write(tmp_path / "two.pcapng", content)

    assert [(round(ts, 6), linktype) for ts, linktype, _, _ in read_frames(path)][:3] == [
        (START_TS, LINKTYPE_ETHERNET),
        (round(START_TS + 0.001, 6), LINKTYPE_RAW),
        (round(START_TS + 0.002, 6), LINKTYPE_ETHERNET),
    ]
    events, stats = replay([path])
    assert summary(events) == MODBUS_EXCHANGE_EVENTS
    assert stats.counters["flows"] == 1
    assert [_iso(e.ts) for e in events] == [
        "2023-11-14T22:13:20.003000Z", "2023-11-14T22:13:20.004000Z",
        "2023-11-14T22:13:20.005000Z", "2023-11-14T22:13:20.006000Z",
    ]
    # Ethernet gave the server's MAC; the raw-IP interface has none.
    assert events[0].src_mac == "02:00:00:00:00:0a"


def test_pcapng_binary_timestamp_resolution(tmp_path: Path) -> None:
    """if_tsresol with the top bit set is a power of two: 2^-20 s per tick."""
    packets = _exchange().packets
    records = [(0, START_TS + i * 0.25, link_frame(p, "raw")) for i, p in enumerate(packets)]
    path = write(tmp_path / "bin.pcapng", pcapng_bytes([(LINKTYPE_IPV4, 0x80 | 20)], records))
    stamps = [ts for ts, _, _, _ in read_frames(path)]
    assert stamps == pytest.approx([START_TS + i * 0.25 for i in range(len(packets))], abs=1e-6)
    events, _ = replay([path])
    assert summary(events) == MODBUS_EXCHANGE_EVENTS


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_gzip_compressed_captures(tmp_path: Path, kind: str) -> None:
    packets = _exchange().packets
    if kind == "pcap":
        content = pcap_bytes(frames(packets))
    else:
        content = pcapng_bytes(
            [(LINKTYPE_ETHERNET, None)],
            [(0, ts, frame) for ts, frame in frames(packets)],
        )
    path = write(tmp_path / f"x.{kind}.gz", content, compress=True)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    CaptureFile(path).check()
    events, stats = replay([path])
    assert summary(events) == MODBUS_EXCHANGE_EVENTS
    assert stats.packets == 10


def test_files_written_by_scapy(tmp_path: Path) -> None:
    """An independent writer: scapy's pcap and pcapng output reads the same."""
    packets = []
    for i, packet in enumerate(_exchange().packets):
        ether = Ether(link_frame(packet, "ethernet"))
        ether.time = START_TS + i * 0.001
        packets.append(ether)
    wrpcap(str(tmp_path / "scapy.pcap"), packets)
    writer = PcapNgWriter(str(tmp_path / "scapy.pcapng"))
    for packet in packets:
        writer.write(packet)
    writer.close()
    for name in ("scapy.pcap", "scapy.pcapng"):
        events, _ = replay([tmp_path / name])
        assert summary(events) == MODBUS_EXCHANGE_EVENTS, name
        assert events[0].ts == pytest.approx(START_TS + 0.003, abs=1e-6)


def test_flow_continues_across_files(tmp_path: Path) -> None:
    """A ring of rotated files: the request is the last packet of one file,
    its response the first of the next; they pair, in one flow."""
    packets = _exchange().packets
    first = write_pcap(tmp_path / "ring-1.pcap", packets[:4])
    second = write(tmp_path / "ring-2.pcap",
                   pcap_bytes(frames(packets[4:], start=START_TS + 0.004)))

    events, stats = replay([first, second])

    # Packet numbers count within each file, as Wireshark shows them.
    assert summary(events) == [
        (4, "request", 3, 100, None, None),
        (1, "response", 3, 100, [0x1234, 0x5678], None),
        (2, "request", 6, 7, [99], None),
        (3, "response", 6, 7, [99], None),
    ]
    assert events[1].request_packet == 4
    assert events[1].response_time == pytest.approx(0.001, abs=1e-6)
    assert stats.packets == 10
    assert stats.counters["flows"] == 1
    assert stats.counters.get("flows_closed_fin") == 1


def test_adu_split_across_two_files_is_reassembled(tmp_path: Path) -> None:
    conversation = TcpConversation()
    conversation.handshake()
    request = read_holding(9, 40, 1)
    conversation.request(request[:5])
    conversation.request(request[5:])
    conversation.reply(read_holding_reply(9, [7]))
    packets = conversation.packets
    first = write_pcap(tmp_path / "a.pcap", packets[:4])
    second = write(tmp_path / "b.pcap", pcap_bytes(frames(packets[4:], start=START_TS + 1)))
    events, _ = replay([first, second])
    assert summary(events) == [
        (1, "request", 3, 40, None, None),
        (2, "response", 3, 40, [7], None),
    ]


# -- damaged and foreign files ---------------------------------------------------


def _cut(tmp_path: Path, content: bytes, keep: int, name: str = "cut.pcap") -> Path:
    return write(tmp_path / name, content[:keep])


def test_last_packet_cut_off_yields_the_frames_before_then_fails(tmp_path: Path) -> None:
    content = pcap_bytes(frames(_exchange().packets))
    path = _cut(tmp_path, content, len(content) - 10)
    got = []
    with pytest.raises(CaptureError) as caught:
        for frame in read_frames(path):
            got.append(frame)
    assert len(got) == 9
    assert caught.value.path == str(path)
    assert "cut short in the middle of packet 10 (after 9 packets)" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_record_header_cut_off(tmp_path: Path) -> None:
    content = pcap_bytes(frames(_exchange().packets[:2]))
    first_record_end = 24 + 16 + len(link_frame(_exchange().packets[0], "ethernet"))
    path = _cut(tmp_path, content, first_record_end + 7)
    with pytest.raises(CaptureError, match=r"cut short in the middle of packet 2 \(after 1"):
        list(read_frames(path))


def test_file_header_cut_off(tmp_path: Path) -> None:
    path = _cut(tmp_path, pcap_bytes([]), 12)
    CaptureFile(path).check()  # the magic is fine ...
    with pytest.raises(CaptureError, match="cut short in the pcap file header"):
        list(read_frames(path))  # ... the rest of the header is not there


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty file, not a capture"),
        (b"\xd4\xc3", "not a pcap or pcapng capture (file too short)"),
        (b"GET / HTTP/1.1\r\n\r\n", "not a pcap or pcapng capture (starts with 47455420)"),
        (gzip.compress(b"hello, world"), "not a pcap or pcapng capture (starts with 68656c6c)"),
    ],
    ids=["empty", "too-short", "text", "gzip-of-text"],
)
def test_not_a_capture(tmp_path: Path, content: bytes, problem: str) -> None:
    path = write(tmp_path / "not.pcap", content)
    with pytest.raises(CaptureError) as caught:
        CaptureFile(path).check()
    assert str(caught.value) == f"{path}: {problem}"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CaptureError) as caught:
        CaptureFile(tmp_path / "nope.pcap")
    assert str(caught.value) == f"{tmp_path / 'nope.pcap'}: No such file or directory"


def test_impossible_record_length(tmp_path: Path) -> None:
    content = bytearray(pcap_bytes(frames(_exchange().packets[:3])))
    struct.pack_into("<I", content, 24 + 8, 0x7FFFFFFF)  # caplen of packet 1
    with pytest.raises(CaptureError, match="packet 1 has an impossible length"):
        list(read_frames(write(tmp_path / "huge.pcap", bytes(content))))


def _pcapng(packets: list, endian: str = "<") -> bytes:
    return pcapng_bytes([(LINKTYPE_ETHERNET, None)],
                        [(0, ts, frame) for ts, frame in frames(packets)], endian=endian)


def test_pcapng_corrupt_block_length(tmp_path: Path) -> None:
    packets = _exchange().packets
    good = _pcapng(packets[:4])
    bad = pcapng_block(6, b"\0" * 40)
    bad = bad[:4] + struct.pack("<I", 0x13) + bad[8:]  # not a multiple of 4
    path = write(tmp_path / "corrupt.pcapng", good + bad + _pcapng(packets[4:])[28:])
    got = []
    with pytest.raises(CaptureError) as caught:
        for frame in read_frames(path):
            got.append(frame)
    assert len(got) == 4
    assert str(caught.value) == f"{path}: corrupt pcapng block (length 19) after 4 packets"


def test_pcapng_packet_on_undeclared_interface(tmp_path: Path) -> None:
    packets = _exchange().packets
    content = _pcapng(packets[:2]) + pcapng_bytes(
        [(LINKTYPE_ETHERNET, None), (LINKTYPE_ETHERNET, None)],
        [(1, START_TS, link_frame(packets[2], "ethernet"))],
    )[28 + 20 + 20:]  # the EPB alone: interface 1 was never described in this section
    with pytest.raises(CaptureError, match="packet 3: corrupt enhanced packet block"):
        list(read_frames(write(tmp_path / "if.pcapng", content)))


def test_pcapng_cut_in_the_middle_of_a_block(tmp_path: Path) -> None:
    content = _pcapng(_exchange().packets)
    path = _cut(tmp_path, content, len(content) - 30, "cut.pcapng")
    got = []
    with pytest.raises(CaptureError, match=r"cut short in the middle of packet 10 \(after 9"):
        for frame in read_frames(path):
            got.append(frame)
    assert len(got) == 9


def test_pcapng_bad_byte_order_magic(tmp_path: Path) -> None:
    content = bytearray(_pcapng(_exchange().packets))
    content[8:12] = b"\x01\x02\x03\x04"
    with pytest.raises(CaptureError, match="bad byte-order magic"):
        list(read_frames(write(tmp_path / "bom.pcapng", bytes(content))))


def test_gzip_cut_short(tmp_path: Path) -> None:
    compressed = gzip.compress(pcap_bytes(frames(_exchange().packets)))
    path = write(tmp_path / "cut.pcap.gz", compressed[: len(compressed) // 2 + 40])
    with pytest.raises(CaptureError) as caught:
        list(read_frames(path))
    assert caught.value.path == str(path)
    assert "\n" not in str(caught.value)


def test_gzip_with_corrupt_deflate_data(tmp_path: Path) -> None:
    """Damage inside the compressed stream (zlib.error, not an OSError) is a
    CaptureError too, whether the first bytes or later ones are hit."""
    compressed = bytearray(gzip.compress(pcap_bytes(frames(_exchange().packets)), mtime=0))
    for i in range(20, 60):
        compressed[i] ^= 0x5A
    early = write(tmp_path / "early.pcap.gz", bytes(compressed))
    with pytest.raises(CaptureError, match="unreadable: Error -3 while decompressing"):
        CaptureFile(early).check()
    with pytest.raises(CaptureError, match="read error: Error -3 while decompressing"):
        list(read_frames(early))
    late = write(tmp_path / "late.pcap.gz",
                 gzip.compress(pcap_bytes(frames(_exchange().packets)), mtime=0)
                 + gzip.compress(b"", mtime=0)[:10] + b"\xff" * 16)
    CaptureFile(late).check()
    with pytest.raises(CaptureError, match="read error: Error -3 while decompressing"):
        list(read_frames(late))


def test_pcapng_leading_and_trailing_block_lengths_disagree(tmp_path: Path) -> None:
    """A leading length that is plausible (a multiple of 4, inside the file)
    but wrong: caught by the trailing copy, not read as a shorter packet."""
    packets = _exchange().packets
    content = bytearray(_pcapng(packets))
    epb = 28 + 20  # after the SHB and the IDB
    (length,) = struct.unpack_from("<I", content, epb + 4)
    struct.pack_into("<I", content, epb + 4, length - 8)
    pattern = rf"corrupt pcapng block \(length {length - 8}, trailer says \d+\) after 0 packets$"
    with pytest.raises(CaptureError, match=pattern):
        list(read_frames(write(tmp_path / "lengths.pcapng", bytes(content))))


def test_pcapng_other_blocks_sections_and_tsoffset(tmp_path: Path) -> None:
    """Name-resolution, statistics and custom blocks are skipped; a second
    section (its own SHB) redefines the interfaces; if_tsoffset adds seconds."""
    packets = _exchange().packets
    records = frames(packets)
    nrb = pcapng_block(4, struct.pack("<HH", 0, 0))
    isb = pcapng_block(5, struct.pack("<III", 0, 0, 0))
    custom = pcapng_block(0x00000BAD, struct.pack("<I", 32473) + b"hello")
    offset_idb = pcapng_block(
        1,
        struct.pack("<HHI", LINKTYPE_RAW, 0, 65535)
        + struct.pack("<HHq", 14, 8, 1000)  # if_tsoffset: 1000 s
        + struct.pack("<HH", 0, 0),
    )
    first = _pcapng(packets[:5]) + nrb + isb + custom
    second = pcapng_shb() + offset_idb + b"".join(
        pcapng_epb(0, ts - 1000, link_frame(packet, "raw"))
        for (ts, _), packet in zip(records[5:], packets[5:], strict=True)
    )
    path = write(tmp_path / "sections.pcapng", first + second)
    stamps = [(round(ts, 6), linktype) for ts, linktype, _, _ in read_frames(path)]
    assert stamps == [(round(ts, 6), LINKTYPE_ETHERNET) for ts, _ in records[:5]] + [
        (round(ts, 6), LINKTYPE_RAW) for ts, _ in records[5:]
    ]
    events, _ = replay([path])
    assert summary(events) == MODBUS_EXCHANGE_EVENTS


def test_pcapng_simple_and_obsolete_packet_blocks(tmp_path: Path) -> None:
    packets = _exchange().packets
    blocks = [pcapng_shb(), pcapng_idb(LINKTYPE_ETHERNET)]
    for i, (ts, frame) in enumerate(frames(packets)):
        if i % 2:
            blocks.append(pcapng_block(3, struct.pack("<I", len(frame)) + frame))
        else:
            ticks = round(ts * 1_000_000)
            blocks.append(pcapng_block(2, struct.pack(
                "<HHIIII", 0, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame)
            ) + frame))
    path = write(tmp_path / "spb.pcapng", b"".join(blocks))
    got = list(read_frames(path))
    assert [len(data) for _, _, data, _ in got] == [len(f) for _, f in frames(packets)]
    # A simple packet block has no timestamp.
    assert [ts == 0.0 for ts, _, _, _ in got] == [False, True] * 5
    events, _ = replay([path])
    assert [row[1:] for row in summary(events)] == [row[1:] for row in MODBUS_EXCHANGE_EVENTS]
