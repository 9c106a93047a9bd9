"""The durable spool: real files in a temporary directory, real crashes."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
)

from console.spool import (
    FRAME_BYTES,
    HEADER_BYTES,
    MAGIC,
    Batch,
    Position,
    Spool,
    SpoolError,
    SpoolFormatError,
    SpoolFull,
    SpoolLocked,
    TooLarge,
)

ROOT = Path(__file__).resolve().parents[2]


def alert(number: int, pad: int = 20) -> dict[str, Any]:
    return {"event": {"id": f"a-{number}", "kind": "alert"}, "message": "x" * pad,
            "rule": {"name": "写寄存器"}}


def ids(records: list[dict[str, Any]]) -> list[int]:
    return [int(record["event"]["id"][2:]) for record in records]


def frame_size(record: dict[str, Any]) -> int:
    payload = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
    return FRAME_BYTES + len(payload)


def drain(spool: Spool, max_records: int = 7) -> list[int]:
    """Everything pending, in order, acknowledged as it goes."""
    seen: list[int] = []
    while True:
        batch = spool.peek(max_records, 1 << 20)
        if not batch.payloads:
            return seen
        seen += ids(batch.records)
        spool.ack(batch)


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def record_offsets(path: Path) -> list[tuple[int, int]]:
    """(offset, framed size) of each record of a healthy segment file."""
    data = path.read_bytes()
    assert data[:HEADER_BYTES] == MAGIC
    offsets, offset = [], HEADER_BYTES
    while offset < len(data):
        (length,) = struct.unpack_from(">I", data, offset)
        offsets.append((offset, FRAME_BYTES + length))
        offset += FRAME_BYTES + length
    return offsets


def flip_bit(path: Path, offset: int) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)[0]
        handle.seek(offset)
        handle.write(bytes([byte ^ 0x10]))


# -- basics ----------------------------------------------------------------


def test_round_trip_keeps_records_and_their_compact_json(tmp_path: Path) -> None:
    records = [alert(0), {"event": {"id": "b"}, "nested": {"list": [1, 2.5, None, True]},
                          "text": "Modbus 写 \u2028 \"quoted\""}]
    with Spool(tmp_path) as spool:
        spool.append(records)
        assert spool.stats.records_pending == 2
        batch = spool.peek(10, 1 << 20)
        assert batch.records == records
        assert batch.payloads[0] == json.dumps(records[0], separators=(",", ":"),
                                               ensure_ascii=False).encode()
        spool.ack(batch)
        stats = spool.stats
    assert (stats.records_pending, stats.bytes_pending) == (0, 0)
    assert (stats.appended_total, stats.delivered_total) == (2, 2)


def test_peek_does_not_remove_and_respects_its_limits(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        spool.append([alert(i) for i in range(10)])
        assert ids(spool.peek(3, 1 << 20).records) == [0, 1, 2]
        assert ids(spool.peek(3, 1 << 20).records) == [0, 1, 2]
        size = len(spool.peek(1, 1 << 20).payloads[0])
        assert len(spool.peek(100, 2 * size + 1)) == 2
        # A record larger than max_bytes still comes out, alone: it must not block the spool.
        assert len(spool.peek(100, 1)) == 1


def test_order_is_kept_across_segment_rollover_and_drained_segments_go(tmp_path: Path) -> None:
    rng = random.Random(1)
    with Spool(tmp_path, segment_bytes=400, max_bytes=1 << 20) as spool:
        number = 0
        while number < 300:
            count = rng.randint(1, 20)
            spool.append([alert(i, pad=rng.randint(0, 150)) for i in range(number, number + count)])
            number += count
        assert len(segments(tmp_path)) > 20
        assert spool.stats.disk_bytes == sum(p.stat().st_size for p in segments(tmp_path))
        seen: list[int] = []
        while len(seen) < number:
            batch = spool.peek(rng.randint(1, 30), rng.randint(1, 3000))
            seen += ids(batch.records)
            spool.ack(batch)
        assert seen == list(range(number))
        assert len(segments(tmp_path)) == 1  # only the active segment is left
        assert spool.stats.disk_bytes == sum(p.stat().st_size for p in segments(tmp_path))


def test_an_oversize_record_gets_a_segment_of_its_own(tmp_path: Path) -> None:
    with Spool(tmp_path, segment_bytes=100, max_bytes=10_000) as spool:
        spool.append([alert(0), alert(1, pad=500), alert(2)])
        assert len(segments(tmp_path)) == 3
        assert drain(spool) == [0, 1, 2]


# -- acknowledgement and reopening ---------------------------------------------


def test_ack_survives_reopen_and_unacked_records_come_again(tmp_path: Path) -> None:
    with Spool(tmp_path, segment_bytes=300, max_bytes=10_000) as spool:
        spool.append([alert(i) for i in range(20)])
        spool.ack(spool.peek(8, 1 << 20))
        assert ids(spool.peek(5, 1 << 20).records) == [8, 9, 10, 11, 12]  # peeked, not acked
    with Spool(tmp_path, segment_bytes=300, max_bytes=10_000) as spool:
        assert spool.stats.records_pending == 12
        assert drain(spool) == list(range(8, 20))
    with Spool(tmp_path, segment_bytes=300, max_bytes=10_000) as spool:
        assert spool.stats.records_pending == 0
        assert spool.peek(10, 1 << 20).records == []
        spool.append([alert(20)])
    with Spool(tmp_path, segment_bytes=300, max_bytes=10_000) as spool:
        assert drain(spool) == [20]


def test_a_crash_between_cursor_and_segment_deletion_is_finished_on_open(tmp_path: Path) -> None:
    with Spool(tmp_path, segment_bytes=200, max_bytes=10_000) as spool:
        spool.append([alert(i) for i in range(20)])
        before = {p.name: p.read_bytes() for p in segments(tmp_path)}
        spool.ack(spool.peek(12, 1 << 20))
    for name, data in before.items():  # as if the process died before deleting them
        (tmp_path / name).write_bytes(data)
    with Spool(tmp_path, segment_bytes=200, max_bytes=10_000) as spool:
        assert spool.stats.records_pending == 8
        assert spool.stats.disk_bytes == sum(p.stat().st_size for p in segments(tmp_path))
        assert drain(spool) == list(range(12, 20))


def test_acking_twice_is_harmless_and_a_stale_batch_is_refused(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        spool.append([alert(i) for i in range(6)])
        first = spool.peek(2, 1 << 20)
        spool.ack(first)
        spool.ack(first)
        assert spool.stats.delivered_total == 2
        second = spool.peek(2, 1 << 20)
        spool.ack(spool.peek(1, 1 << 20))
        with pytest.raises(ValueError, match="peek again"):
            spool.ack(second)
        assert drain(spool) == [3, 4, 5]


def test_a_damaged_cursor_means_delivering_again_not_losing(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        spool.append([alert(i) for i in range(5)])
        spool.ack(spool.peek(3, 1 << 20))
    (tmp_path / "cursor").write_bytes(b"garbage")
    with Spool(tmp_path) as spool:
        assert drain(spool) == [0, 1, 2, 3, 4]


def test_other_files_in_the_directory_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / "rejected.jsonl").write_text("{}\n")
    (tmp_path / "notes.seg").write_text("not ours, not named like ours")
    with Spool(tmp_path) as spool:
        spool.append([alert(0)])
        assert drain(spool) == [0]
    assert (tmp_path / "rejected.jsonl").read_text() == "{}\n"
    assert (tmp_path / "notes.seg").exists()


# -- bounds ------------------------------------------------------------------


def test_a_full_spool_refuses_the_whole_batch_then_drains_and_takes_more(tmp_path: Path) -> None:
    with Spool(tmp_path, segment_bytes=500, max_bytes=2_000) as spool:
        number = 0
        with pytest.raises(SpoolFull, match="is full") as full:
            while True:
                spool.append([alert(number), alert(number + 1)])
                number += 2
                on_disk = sum(p.stat().st_size for p in segments(tmp_path))
                assert on_disk <= 2_000
        assert full.value.needed > full.value.available
        stats = spool.stats
        assert stats.full_rejections == 1
        assert stats.records_pending == number  # nothing of the refused batch was written
        with pytest.raises(SpoolFull):
            spool.append([alert(number)] * 5)
        assert spool.stats.full_rejections == 2
        spool.ack(spool.peek(number // 2, 1 << 20))
        spool.append([alert(number), alert(number + 1)])
        assert drain(spool) == list(range(number // 2, number + 2))


def test_room_is_made_by_recycling_a_drained_active_segment(tmp_path: Path) -> None:
    with Spool(tmp_path, segment_bytes=1_000, max_bytes=1_000) as spool:
        count = (1_000 - HEADER_BYTES) // frame_size(alert(0))
        spool.append([alert(i) for i in range(count)])
        with pytest.raises(SpoolFull):
            spool.append([alert(count)])
        assert drain(spool) == list(range(count))
        spool.append([alert(count)])  # the drained segment file made room for a new one
        assert drain(spool) == [count]
    with Spool(tmp_path, segment_bytes=1_000, max_bytes=1_000) as spool:
        assert spool.stats.records_pending == 0


def test_what_can_never_fit_is_a_different_error(tmp_path: Path) -> None:
    with Spool(tmp_path, segment_bytes=500, max_bytes=1_000) as spool:
        with pytest.raises(TooLarge):
            spool.append([alert(0, pad=2_000)])
        with pytest.raises(ValueError, match="split it"):
            spool.append([alert(i, pad=100) for i in range(10)])
        assert spool.stats.full_rejections == 0
        assert spool.stats.records_pending == 0


@pytest.mark.parametrize("bad", [math.nan, object(), "\ud800"])
def test_a_record_json_cannot_encode_is_refused_before_anything_is_written(
        tmp_path: Path, bad: object) -> None:
    with Spool(tmp_path) as spool:
        with pytest.raises((TypeError, ValueError)):
            spool.append([alert(0), {"event": {"id": "bad"}, "value": bad}])
        assert spool.stats.records_pending == 0
        spool.append([alert(1)])
        assert drain(spool) == [1]


# -- crashes and damage ----------------------------------------------------------


def test_a_torn_last_record_is_cut_off_wherever_the_crash_happened(tmp_path: Path) -> None:
    original = tmp_path / "original"
    with Spool(original, segment_bytes=400, max_bytes=10_000) as spool:
        for number in range(12):
            spool.append([alert(number, pad=number * 7)])
    last = segments(original)[-1]
    start, size = record_offsets(last)[-1]
    for cut in range(start, start + size):
        copy = tmp_path / f"cut{cut}"
        shutil.copytree(original, copy)
        os.truncate(copy / last.name, cut)
        with Spool(copy, segment_bytes=400, max_bytes=10_000) as spool:
            assert spool.stats.torn_records == (1 if cut > start else 0), cut
            assert spool.stats.corrupt_bytes == 0
            assert (copy / last.name).stat().st_size == start
            spool.append([alert(99)])  # appending goes on right after the last whole record
        with Spool(copy, segment_bytes=400, max_bytes=10_000) as spool:
            assert spool.stats.torn_records == 0
            assert drain(spool) == [*range(11), 99]
        shutil.rmtree(copy)


def test_a_segment_cut_short_while_being_created_is_removed(tmp_path: Path) -> None:
    original = tmp_path / "original"
    with Spool(original, segment_bytes=200, max_bytes=10_000) as spool:
        spool.append([alert(i) for i in range(6)])
    last = segments(original)[-1]
    head = last.read_bytes()
    before_last = sum(len(record_offsets(p)) for p in segments(original)[:-1])
    for cut in [*range(HEADER_BYTES), HEADER_BYTES + 3]:
        copy = tmp_path / f"cut{cut}"
        shutil.copytree(original, copy)
        (copy / last.name).write_bytes(head[:cut] if cut <= HEADER_BYTES else b"\0" * cut)
        with Spool(copy, segment_bytes=200, max_bytes=10_000) as spool:
            assert not (copy / last.name).exists()
            assert drain(spool) == list(range(before_last))
            assert spool.stats.torn_records == (1 if cut > HEADER_BYTES else 0)


def test_a_flipped_bit_costs_one_record_and_later_segments_still_drain(tmp_path: Path) -> None:
    with Spool(tmp_path, segment_bytes=300, max_bytes=10_000) as spool:
        spool.append([alert(i) for i in range(30)])
    files = segments(tmp_path)
    assert len(files) >= 4
    victim = files[1]
    offset, size = record_offsets(victim)[1]
    flip_bit(victim, offset + FRAME_BYTES + 5)
    lost = len(record_offsets(files[0])) + 1
    with Spool(tmp_path, segment_bytes=300, max_bytes=10_000) as spool:
        assert spool.stats.corrupt_bytes == size
        assert spool.stats.records_pending == 29
        assert drain(spool) == [i for i in range(30) if i != lost]
        assert spool.stats.corrupt_bytes == size  # counted once, not again while draining


def test_a_broken_length_skips_the_rest_of_its_segment_only(tmp_path: Path) -> None:
    with Spool(tmp_path, segment_bytes=300, max_bytes=10_000) as spool:
        spool.append([alert(i) for i in range(30)])
    files = segments(tmp_path)
    victim = files[1]
    records = record_offsets(victim)
    offset, _ = records[1]
    flip_bit(victim, offset + 2)  # the length field
    first = len(record_offsets(files[0]))
    lost = set(range(first + 1, first + len(records)))
    with Spool(tmp_path, segment_bytes=300, max_bytes=10_000) as spool:
        assert spool.stats.corrupt_bytes == victim.stat().st_size - offset
        assert drain(spool) == [i for i in range(30) if i not in lost]


def test_damage_found_while_draining_is_skipped_and_counted_once(tmp_path: Path) -> None:
    with Spool(tmp_path, segment_bytes=10_000, max_bytes=100_000) as spool:
        spool.append([alert(i) for i in range(10)])
        (path,) = segments(tmp_path)
        offset, size = record_offsets(path)[4]
        flip_bit(path, offset + FRAME_BYTES + 1)  # after the spool checked it on open
        assert ids(spool.peek(100, 1 << 20).records) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
        batch = spool.peek(100, 1 << 20)
        stats = spool.stats
        assert (stats.corrupt_bytes, stats.records_pending) == (size, 9)
        spool.ack(batch)
        assert spool.stats.records_pending == 0


CHILD = textwrap.dedent("""
    import sys
    from console.spool import Spool

    spool = Spool(sys.argv[1], segment_bytes=4096, max_bytes=1 << 30, fsync=True)
    batch_size, number = int(sys.argv[2]), 0
    while True:
        spool.append([{"event": {"id": f"a-{i}"}, "message": "m" * (i % 300)}
                      for i in range(number, number + batch_size)])
        number += batch_size
        print(number, flush=True)
""")


@pytest.mark.parametrize("seed", range(6))
def test_records_whose_append_returned_survive_sigkill_exactly_once(
        tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    directory = tmp_path / "spool"
    batch_size = rng.choice([1, 7, 50])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, str(script), str(directory), str(batch_size)],
                             stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None
    first = child.stdout.readline()
    assert first, "the child did not start"
    time.sleep(rng.uniform(0.0, 0.3))
    child.send_signal(signal.SIGKILL)
    child.wait()
    reported = int([first, *child.stdout.read().split()][-1])
    child.stdout.close()
    with Spool(directory, segment_bytes=4096) as spool:
        found = drain(spool, max_records=1000)
    assert found[:reported] == list(range(reported))  # all of them, once, in order
    # Beyond those, at most a prefix of the batch in flight, never anything twice.
    assert found == list(range(len(found)))
    assert len(found) - reported <= batch_size


FAILING_WRITES = textwrap.dedent("""
    import resource, signal, sys
    from console.spool import Spool

    # A real failing disk: writes past 3000 bytes in any file fail (EFBIG),
    # after a short write of what still fits.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))
    spool = Spool(sys.argv[1], segment_bytes=4096, max_bytes=1 << 20)
    failures = 0
    for number in range(0, 300, 6):
        batch = [{"event": {"id": f"a-{i}"}, "message": "m" * 90}
                 for i in range(number, number + 6)]
        try:
            spool.append(batch)
        except OSError:
            failures += 1
            spool.append(batch)  # the retry goes to a fresh segment file
    spool.close()
    print(failures)
""")


def test_a_failed_write_leaves_nothing_behind_and_the_retry_lands_once(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(FAILING_WRITES)
    directory = tmp_path / "spool"
    child = subprocess.run([sys.executable, str(script), str(directory)], capture_output=True,
                           text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    assert int(child.stdout) > 5  # each segment file hit the limit once
    with Spool(directory) as spool:
        assert (spool.stats.torn_records, spool.stats.corrupt_bytes) == (0, 0)
        assert drain(spool, max_records=50) == list(range(300))


# -- threads and owners ---------------------------------------------------------------


def test_a_producer_and_a_drainer_move_100_000_records_once_in_order(tmp_path: Path) -> None:
    total = 100_000
    spool = Spool(tmp_path, segment_bytes=64 * 1024, max_bytes=512 * 1024)
    received: list[int] = []
    failures: list[BaseException] = []

    def produce() -> None:
        rng = random.Random(2)
        try:
            number = 0
            while number < total:
                count = min(rng.randint(1, 500), total - number)
                batch = [{"event": {"id": f"a-{i}"}} for i in range(number, number + count)]
                while True:
                    try:
                        spool.append(batch)
                        break
                    except SpoolFull:
                        time.sleep(0.001)  # backpressure
                number += count
        except BaseException as exc:
            failures.append(exc)

    def consume() -> None:
        rng = random.Random(3)
        try:
            deadline = time.monotonic() + 120
            while len(received) < total and time.monotonic() < deadline:
                batch = spool.peek(rng.randint(1, 1000), 1 << 20)
                received.extend(ids(batch.records))
                spool.ack(batch)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = spool.stats
    spool.close()
    assert not failures
    assert received == list(range(total))
    assert (stats.appended_total, stats.delivered_total, stats.records_pending) == (
        total, total, 0)
    assert stats.disk_bytes <= 512 * 1024


def test_one_owner_at_a_time(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    with pytest.raises(SpoolLocked, match=f"pid {os.getpid()}"):
        Spool(tmp_path)
    other = subprocess.run(
        [sys.executable, "-c", "import sys; from console.spool import Spool; Spool(sys.argv[1])",
         str(tmp_path)], capture_output=True, text=True, env={**os.environ,
                                                             "PYTHONPATH": str(ROOT)})
    assert other.returncode != 0
    assert "SpoolLocked" in other.stderr and "in use" in other.stderr
    spool.close()
    Spool(tmp_path).close()


def test_a_closed_spool_says_so(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.close()
    spool.close()
    somewhere = Position(1, HEADER_BYTES)
    for call in (lambda: spool.append([alert(0)]), lambda: spool.peek(1, 1),
                 lambda: spool.ack(Batch((), somewhere, somewhere))):
        with pytest.raises(SpoolError, match="closed"):
            call()


def test_a_foreign_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    (tmp_path / "0000000001.seg").write_bytes(b"PK\x03\x04 a zip file, not a spool")
    with pytest.raises(SpoolFormatError, match="not an icswatch spool segment"):
        Spool(tmp_path)
    assert (tmp_path / "0000000001.seg").read_bytes().startswith(b"PK")
    other = tmp_path / "other"
    other.mkdir()
    (other / "0000000001.seg").write_bytes(b"ICSWSPL2" + b"\0" * 40)
    with pytest.raises(SpoolFormatError, match=r"format '2'.*another icswatch version"):
        Spool(other)
    Spool(other / "fresh").close()  # and the lock was released after the refusal
    with pytest.raises(SpoolFormatError):
        Spool(other)


def test_settings_that_could_not_work_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="smaller than segment_bytes"):
        Spool(tmp_path, segment_bytes=1_000, max_bytes=500)
    with pytest.raises(ValueError, match="too small"):
        Spool(tmp_path, segment_bytes=10)


# -- a model of the spool, driven at random -----------------------------------------------


class SpoolMachine(RuleBasedStateMachine):
    """Whatever the sequence of appends, peeks, acks, refusals and reopenings,
    the spool delivers exactly the model's queue, in order."""

    batches = Bundle("batches")

    def __init__(self) -> None:
        super().__init__()
        self.temp = tempfile.TemporaryDirectory()
        self.directory = Path(self.temp.name)
        self.options: dict[str, Any] = {"segment_bytes": 300, "max_bytes": 1_500, "fsync": False}
        self.spool = Spool(self.directory, **self.options)
        self.queue: list[int] = []  # the model: ids not yet acknowledged
        self.number = 0

    @rule(count=st.integers(1, 6), pad=st.integers(0, 120))
    def append(self, count: int, pad: int) -> None:
        records = [alert(i, pad) for i in range(self.number, self.number + count)]
        try:
            self.spool.append(records)
        except SpoolFull:
            most = sum(map(frame_size, records)) + HEADER_BYTES * count
            assert self.spool.stats.disk_bytes + most > 1_500
            return
        self.queue += ids(records)
        self.number += count

    @rule(target=batches, max_records=st.integers(1, 10), max_bytes=st.integers(1, 800))
    def peek(self, max_records: int, max_bytes: int) -> Batch:
        batch = self.spool.peek(max_records, max_bytes)
        assert ids(batch.records) == self.queue[:len(batch)]
        assert len(batch) <= max_records
        assert len(batch) == 1 or batch.nbytes <= max_bytes
        assert len(batch) > 0 or not self.queue
        return batch

    @rule(batch=consumes(batches))
    def ack(self, batch: Batch) -> None:
        try:
            self.spool.ack(batch)
        except ValueError:
            return  # stale: another batch was acknowledged since
        if batch.payloads and ids(batch.records)[0] in self.queue:
            assert ids(batch.records) == self.queue[:len(batch)]
            del self.queue[:len(batch)]

    @rule()
    def reopen(self) -> None:
        self.spool.close()
        self.spool = Spool(self.directory, **self.options)

    @invariant()
    def counts_match(self) -> None:
        stats = self.spool.stats
        assert stats.records_pending == len(self.queue)
        assert stats.disk_bytes == sum(p.stat().st_size for p in segments(self.directory))
        assert stats.disk_bytes <= 1_500
        assert (stats.torn_records, stats.corrupt_bytes) == (0, 0)

    def teardown(self) -> None:
        try:
            assert drain(self.spool) == self.queue
        finally:
            self.spool.close()
            self.temp.cleanup()


SpoolMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_spool_behaves_like_a_queue = SpoolMachine.TestCase
