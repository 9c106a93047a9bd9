"""`icswatch replay` as a user runs it: exit status, stdout records, and one
clear line on stderr for every kind of bad input — never a traceback."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from builders import (
    LINKTYPE_ETHERNET,
    TcpConversation,
    frames,
    modbus_exchange,
    pcap_bytes,
    pcapng_block,
    pcapng_bytes,
    write,
)

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def icswatch(*args: str | Path, entry_point: bool = False) -> subprocess.CompletedProcess[str]:
    if entry_point:
        command = [shutil.which("icswatch") or "icswatch"]
    else:
        command = [sys.executable, "-m", "console.cli"]
    return subprocess.run(
        [*command, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def _packets() -> list:
    conversation = TcpConversation()
    modbus_exchange(conversation)
    return conversation.packets


@pytest.fixture()
def capture(tmp_path: Path) -> Path:
    return write(tmp_path / "modbus.pcap", pcap_bytes(frames(_packets())))


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("icswatch: ")
    return lines[0]


# -- good input ---------------------------------------------------------------------


def test_table_output_and_summary(capture: Path) -> None:
    result = icswatch("replay", capture)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    assert "10.0.0.10:49152 ->" in lines[0] and "10.0.0.20:502" in lines[0]
    assert "read_holding_registers" in lines[0] and "reference_num=100" in lines[0]
    assert "regval_uint16=[4660,22136]" in lines[1]
    assert "write_single_register" in lines[2]
    assert result.stderr.startswith("icswatch: 10 packets, ")
    assert "1 flows, 4 events (0 malformed)" in result.stderr


def test_jsonl_records_follow_ecs(capture: Path) -> None:
    result = icswatch("replay", "--format", "jsonl", "--no-summary", capture)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(documents) == 4
    for document in documents:
        assert ISO_UTC.match(document["@timestamp"]), document["@timestamp"]
        assert document["event"]["kind"] == "event"
        assert document["network"]["protocol"] == "modbus"
        assert document["network"]["transport"] == "tcp"
        assert document["network"]["community_id"].startswith("1:")
        for side in ("source", "destination"):
            assert set(document[side]) >= {"ip", "port"}
    request, response = documents[0], documents[1]
    assert request["@timestamp"] == "2023-11-14T22:13:20.003000Z"
    assert (request["source"]["ip"], request["source"]["port"]) == ("10.0.0.10", 49152)
    assert (request["destination"]["ip"], request["destination"]["port"]) == ("10.0.0.20", 502)
    assert request["source"]["mac"] == "02-00-00-00-00-0A"
    assert request["ics"]["modbus"]["func_code"] == 3
    assert request["ics"]["modbus"]["reference_num"] == 100
    assert request["ics"]["direction"] == "request"
    assert request["ics"]["packet"] == 4
    assert response["source"]["port"] == 502
    assert response["ics"]["modbus"]["regval_uint16"] == [0x1234, 0x5678]
    assert response["ics"]["request_packet"] == 4
    assert [d["ics"]["modbus"]["func_code"] for d in documents] == [3, 3, 6, 6]
    assert len({d["network"]["community_id"] for d in documents}) == 1


def test_jsonl_is_byte_for_byte_reproducible(capture: Path) -> None:
    first = icswatch("replay", "--format", "jsonl", "--no-summary", capture)
    second = icswatch("replay", "--format", "jsonl", "--no-summary", capture)
    assert first.stdout == second.stdout != ""


def test_output_file_format_none_and_filter(tmp_path: Path, capture: Path) -> None:
    out = tmp_path / "events.jsonl"
    result = icswatch("replay", "-f", "tcp port 502 and src host 10.0.0.10",
                      "--format", "jsonl", "-o", out, capture)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert [json.loads(line)["ics"]["direction"] for line in out.read_text().splitlines()] == [
        "request", "request",
    ]
    result = icswatch("replay", "--format", "none", capture)
    assert (result.returncode, result.stdout) == (0, "")
    assert "4 events" in result.stderr


def test_several_files_and_gzip(tmp_path: Path) -> None:
    packets = _packets()
    first = write(tmp_path / "a.pcap.gz", pcap_bytes(frames(packets[:4])), compress=True)
    second = write(tmp_path / "b.pcapng", pcapng_bytes(
        [(LINKTYPE_ETHERNET, None)],
        [(0, ts + 0.004, frame) for ts, frame in frames(packets[4:])],
    ))
    result = icswatch("replay", "--format", "jsonl", "--no-summary", first, second)
    assert result.returncode == 0, result.stderr
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["ics"]["modbus"]["func_code"] for d in documents] == [3, 3, 6, 6]
    assert documents[1]["ics"]["request_packet"] == 4


def test_entry_point(capture: Path) -> None:
    if shutil.which("icswatch") is None:
        pytest.skip("the icswatch script is not installed")
    result = icswatch("replay", "--format", "none", "--no-summary", capture, entry_point=True)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


# -- bad input: exit 2, one line ----------------------------------------------------


def test_not_a_capture(tmp_path: Path) -> None:
    path = write(tmp_path / "notes.txt", b"these are my notes\n")
    line = _one_error_line(icswatch("replay", path))
    assert line == f"icswatch: {path}: not a pcap or pcapng capture (starts with 74686573)"


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.pcap", b"")
    line = _one_error_line(icswatch("replay", path))
    assert line == f"icswatch: {path}: empty file, not a capture"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.pcap"
    line = _one_error_line(icswatch("replay", path))
    assert line == f"icswatch: {path}: No such file or directory"


def test_a_directory(tmp_path: Path) -> None:
    line = _one_error_line(icswatch("replay", tmp_path))
    assert line.startswith(f"icswatch: {tmp_path}: ")


def test_truncated_file_header(tmp_path: Path) -> None:
    path = write(tmp_path / "short.pcap", pcap_bytes([])[:10])
    result = icswatch("replay", path)
    assert _one_error_line(result) == f"icswatch: {path}: cut short in the pcap file header"
    assert result.stdout == ""


def test_last_packet_cut_off_keeps_the_events_before(tmp_path: Path) -> None:
    content = pcap_bytes(frames(_packets()[:7]))
    path = write(tmp_path / "cut.pcap", content[:-5])
    result = icswatch("replay", "--format", "jsonl", path)
    line = _one_error_line(result)
    assert line == (f"icswatch: {path}: cut short in the middle of packet 7 "
                    "(after 6 packets)")
    # Packets 4-6 (request, response, request) were whole: their events are out.
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(d["ics"]["packet"], d["ics"]["modbus"]["func_code"]) for d in documents] == [
        (4, 3), (5, 3), (6, 6),
    ]


def test_corrupt_pcapng_block(tmp_path: Path) -> None:
    packets = _packets()
    good = pcapng_bytes([(LINKTYPE_ETHERNET, None)],
                        [(0, ts, frame) for ts, frame in frames(packets[:5])])
    bad = bytearray(pcapng_block(6, b"\0" * 40))
    bad[4:8] = (0xFFFFFFF0).to_bytes(4, "little")
    path = write(tmp_path / "corrupt.pcapng", good + bytes(bad))
    result = icswatch("replay", "--format", "jsonl", path)
    line = _one_error_line(result)
    assert line == (f"icswatch: {path}: corrupt pcapng block (length 4294967280) "
                    "after 5 packets")
    assert len(result.stdout.splitlines()) == 2


def test_corrupt_gzip_at_the_start(tmp_path: Path) -> None:
    compressed = bytearray(gzip.compress(pcap_bytes(frames(_packets() * 20)), mtime=0))
    for i in range(40, 200):
        compressed[i] ^= 0x5A
    path = write(tmp_path / "corrupt.pcap.gz", bytes(compressed))
    line = _one_error_line(icswatch("replay", path))
    assert line.startswith(f"icswatch: {path}: unreadable: Error -3 while decompressing")


def test_corrupt_gzip_after_the_start(tmp_path: Path) -> None:
    """A second gzip member whose deflate data is invalid (block type 3)."""
    damaged = gzip.compress(pcap_bytes(frames(_packets())), mtime=0) + (
        gzip.compress(b"", mtime=0)[:10] + b"\xff" * 16
    )
    path = write(tmp_path / "corrupt.pcap.gz", damaged)
    line = _one_error_line(icswatch("replay", path))
    assert line.startswith(f"icswatch: {path}: read error: Error -3 while decompressing")


def test_gzip_that_is_not_gzip(tmp_path: Path) -> None:
    path = write(tmp_path / "fake.pcap.gz", b"\x1f\x8b" + b"\0" * 30)
    line = _one_error_line(icswatch("replay", path))
    assert line.startswith(f"icswatch: {path}: ")


def test_bad_second_file_stops_before_any_output(tmp_path: Path, capture: Path) -> None:
    bad = write(tmp_path / "bad.pcap", b"nope")
    result = icswatch("replay", capture, bad)
    line = _one_error_line(result)
    assert line == f"icswatch: {bad}: not a pcap or pcapng capture (starts with 6e6f7065)"
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("tcp port", "--filter: filter ends too early"),
        ("prot 502", "--filter: unknown filter keyword 'prot'"),
        ("(tcp", "--filter: missing ')' in filter"),
        ("host 300.1.1.1", "--filter: bad host address '300.1.1.1' in filter"),
    ],
)
def test_bad_filter(capture: Path, expression: str, message: str) -> None:
    result = icswatch("replay", "--filter", expression, capture)
    assert _one_error_line(result) == f"icswatch: {message}"
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "a command is required"),
        (("serve-all",), "invalid choice: 'serve-all'"),
        (("replay",), "the following arguments are required: FILE"),
        (("replay", "--format", "xml", "x.pcap"), "invalid choice: 'xml'"),
        (("replay", "--bogus", "x.pcap"), "unrecognized arguments: --bogus"),
    ],
    ids=["no-args", "unknown-command", "no-files", "bad-format", "unknown-option"],
)
def test_bad_usage(args: tuple[str, ...], message: str) -> None:
    line = _one_error_line(icswatch(*args))
    assert message in line


def test_unwritable_output(tmp_path: Path, capture: Path) -> None:
    line = _one_error_line(icswatch("replay", "-o", tmp_path / "no" / "such" / "dir", capture))
    assert "cannot write" in line
