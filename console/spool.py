"""A durable on-disk spool: alerts wait here while their destination is away.

DESIGN.md promises that no alert is lost while Elasticsearch (or the tier
above) is unreachable. This module keeps that promise on the local disk: a
producer appends records, a drainer takes the oldest ones, delivers them and
acknowledges them. Records are JSON-able dicts (ECS documents); the spool
does not look inside them.

Contract
--------
* **Durable when append returns.** `Spool.append` writes a batch and fsyncs
  once per batch (and the directory when it creates a segment file). Once it
  returns, the records survive a crash of the process or of the machine.
  If it raises, none of the batch is promised: the caller retries the batch.
  A crash in the middle of an append may leave part or all of the batch on
  disk (killed during the fsync), so a batch can be spooled twice.
* **At-least-once, exactly-once with ids.** `Spool.peek` returns the oldest
  records without removing them; `Spool.ack` removes them once the
  destination has them. A crash between delivery and ack delivers the batch
  again. Records therefore must carry a deterministic id (``event.id`` for
  alerts) that the destination uses as its document id (``_id``): a
  re-delivery, a retried append or a replay overwrites the same document,
  so what the destination holds is exactly one copy of each alert.
* **Bounded, with backpressure.** The segment files never take more than
  ``max_bytes`` on disk. An append that would go over raises `SpoolFull`
  (and counts it); nothing of that batch is written. A full disk (ENOSPC)
  is reported the same way. The caller decides what to do: the
  Elasticsearch sink waits and retries, slowing the producer rather than
  dropping alerts. Room is freed a segment file at a time, when every
  record in it is acknowledged, so ``max_bytes`` should be many
  ``segment_bytes`` (the defaults give 64 segments). A record or batch that
  could never fit raises `TooLarge` (a ValueError) instead: waiting would
  never help. A record json cannot encode (NaN, an object, a lone
  surrogate) is refused before anything is written, so a record that could
  never be delivered does not block the spool.
* **Crash safe.** Records are framed with their length and a CRC. On open,
  a torn record at the end of the last segment (a crash during a write) is
  cut off and counted (``torn_records``). Damage anywhere else (a bad CRC, a
  broken length) is skipped and its size counted (``corrupt_bytes``): one
  record when its length still leads to a valid record, otherwise the rest
  of that segment. The records in damaged bytes are gone (counted in bytes:
  their number is unknowable), but draining never stops at damage and
  opening never fails on it; only a file that is not a spool segment at all
  is refused.
* **One owner.** One process owns a spool directory at a time (an exclusive
  ``flock`` on ``lock``); a second opener gets `SpoolLocked`. The directory
  must be on a local filesystem.
* **Threads.** Any thread may call any method. Appends are serialized
  among themselves, and so are peeks and acks; the two sides share only a
  short critical section, so a producer never waits for the drainer's
  reads and cursor fsyncs, nor the drainer for the producer's fsync (the
  sink appends from the sensor's thread). With several drainers, each
  peek sees the same oldest records: use one.

On-disk format (format 1)
-------------------------
``NNNNNNNNNN.seg``
    Append-only segment files, numbered in order. Each starts with the
    8-byte magic ``ICSWSPL1``, then records: a 4-byte big-endian payload
    length, a 4-byte big-endian CRC-32 of the length bytes and the payload,
    and the payload (compact UTF-8 JSON). A segment is closed ("sealed")
    when the next record would take it past ``segment_bytes``.
``cursor``
    The read position (segment number, byte offset) of the oldest record not
    yet acknowledged, with a magic and a CRC; replaced atomically (write a
    temporary file, fsync, rename, fsync the directory). A missing or
    damaged cursor means "from the oldest segment": re-delivery, never loss.
``lock``
    Holds the flock and the owner's pid.

Counters (`SpoolStats`) count since this `Spool` was opened; pending
figures describe what is on disk.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import struct
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Any, Final, NamedTuple

log = logging.getLogger("icswatch.spool")

KiB: Final = 1024
MiB: Final = 1024 * KiB
GiB: Final = 1024 * MiB

MAGIC: Final = b"ICSWSPL1"
_MAGIC_FAMILY: Final = MAGIC[:-1]
HEADER_BYTES: Final = len(MAGIC)
_FRAME: Final = struct.Struct(">II")  # payload length, CRC-32 of (length bytes + payload)
_LENGTH: Final = struct.Struct(">I")
FRAME_BYTES: Final = _FRAME.size
MAX_PAYLOAD: Final = 2**32 - 1

_CURSOR_MAGIC: Final = b"ICSWCUR1"
_CURSOR: Final = struct.Struct(">8sQQI")  # magic, segment, offset, CRC-32 of what precedes
_CURSOR_FILE: Final = "cursor"
_CURSOR_TEMP: Final = "cursor.tmp"
_LOCK_FILE: Final = "lock"
_SEGMENT_NAME: Final = re.compile(r"(\d{10})\.seg")
_READ_CHUNK: Final = 1 * MiB
_DISK_FULL: Final = frozenset({errno.ENOSPC, errno.EDQUOT})

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


class SpoolError(Exception):
    """The spool cannot do what was asked; ``str()`` is one line for the operator."""


class SpoolFull(SpoolError):
    """The batch does not fit now (``max_bytes`` reached or the disk is full).
    Nothing of it was written; retry once the drainer has made room."""

    def __init__(self, message: str, *, needed: int, available: int) -> None:
        super().__init__(message)
        self.needed = needed
        self.available = available


class TooLarge(SpoolError, ValueError):
    """A record or batch larger than the spool can ever hold: split it.
    Separate from `SpoolFull` because waiting would never help."""


class SpoolLocked(SpoolError):
    """Another process (or another `Spool` object) owns the directory."""


class SpoolFormatError(SpoolError):
    """The directory holds a file named like a segment that is not one of
    ours (another program's, or another format version)."""


class Position(NamedTuple):
    """A place in the spool: segment number and byte offset. Opaque to
    callers; ordered, so later positions compare greater."""

    segment: int
    offset: int


@dataclass(frozen=True, eq=False)
class Batch:
    """The oldest undelivered records, as `Spool.peek` found them.

    ``payloads`` are the records' JSON bytes exactly as spooled (a sink may
    send them on without decoding and encoding again); ``records`` decodes
    them. ``start`` and ``end`` are opaque positions `Spool.ack` uses."""

    payloads: tuple[bytes, ...]
    start: Position
    end: Position

    @cached_property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(payload) for payload in self.payloads]

    @property
    def nbytes(self) -> int:
        """Payload bytes (the JSON), what a bulk request will carry."""
        return sum(len(payload) for payload in self.payloads)

    def __len__(self) -> int:
        return len(self.payloads)


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """What the spool holds and what happened to it since it was opened.

    ``bytes_pending`` counts on-disk bytes (framing included) from the read
    position to the end; ``disk_bytes`` is the size of all segment files,
    the figure ``max_bytes`` bounds."""

    records_pending: int
    bytes_pending: int
    disk_bytes: int
    segments: int
    appended_total: int
    delivered_total: int
    full_rejections: int
    torn_records: int
    corrupt_bytes: int


@dataclass(slots=True)
class _Segment:
    number: int
    path: Path
    end: int  # bytes [HEADER_BYTES, end) are committed (fsynced) records
    sealed: bool = False


@dataclass(slots=True)
class _Step:
    """Part of a planned append: frames going to one segment file."""

    number: int
    new: bool
    frames: list[bytes]
    nbytes: int = 0


class _Reader:
    """Buffered positional reads of one segment file, never past ``end``:
    bytes beyond the committed end may be a write in progress."""

    def __init__(self, path: Path, end: int) -> None:
        self.fd = os.open(path, os.O_RDONLY)
        self.end = end
        self._base = 0
        self._buffer = b""

    def read(self, offset: int, size: int) -> bytes:
        size = max(0, min(size, self.end - offset))
        start = offset - self._base
        if start >= 0 and start + size <= len(self._buffer):
            return self._buffer[start:start + size]
        self._buffer = os.pread(self.fd, min(max(size, _READ_CHUNK), self.end - offset), offset)
        self._base = offset
        return self._buffer[:size]

    def close(self) -> None:
        os.close(self.fd)


def _frame(payload: bytes) -> bytes:
    length = _LENGTH.pack(len(payload))
    return length + _LENGTH.pack(zlib.crc32(payload, zlib.crc32(length))) + payload


def _record_at(reader: _Reader, offset: int) -> bytes | None:
    """The payload of the record at ``offset``, or None when there is no
    whole record with a matching CRC there."""
    head = reader.read(offset, FRAME_BYTES)
    if len(head) < FRAME_BYTES:
        return None
    length, crc = _FRAME.unpack(head)
    if offset + FRAME_BYTES + length > reader.end:
        return None
    payload = reader.read(offset + FRAME_BYTES, length)
    if len(payload) != length or zlib.crc32(payload, zlib.crc32(head[:4])) != crc:
        return None
    return payload


def _resume_after_bad(reader: _Reader, offset: int) -> int:
    """Where reading goes on after a bad record at ``offset``.

    A flipped bit in a payload leaves the length intact: if the length leads
    to a valid record, only this record is lost. Otherwise the framing is
    gone and nothing later in the file can be trusted to be a record
    boundary, so the rest of the segment is skipped (a false resync would
    need a 32-bit CRC to match by chance)."""
    head = reader.read(offset, _LENGTH.size)
    if len(head) < _LENGTH.size:
        return reader.end
    following = offset + FRAME_BYTES + int(_LENGTH.unpack(head)[0])
    if following >= reader.end or _record_at(reader, following) is None:
        return reader.end
    return following


@dataclass(slots=True)
class _Scan:
    records: int = 0
    corrupt_bytes: int = 0
    torn_at: int | None = None  # last segment only: where a torn tail begins


def _scan(reader: _Reader, start: int, *, last: bool) -> _Scan:
    """Count the valid records from ``start``; in the last segment, damage
    that runs to the end of the file is a torn tail, not corruption."""
    result = _Scan()
    offset = start
    while offset < reader.end:
        payload = _record_at(reader, offset)
        if payload is not None:
            result.records += 1
            offset += FRAME_BYTES + len(payload)
            continue
        resume = _resume_after_bad(reader, offset)
        if last and resume >= reader.end:
            result.torn_at = offset
            break
        result.corrupt_bytes += resume - offset
        offset = resume
    return result


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _torn_header(head: bytes) -> bool:
    """A segment whose creation was cut short: its header is a prefix of the
    magic, possibly followed by zeros (a file extended but not written)."""
    return MAGIC.startswith(head.rstrip(b"\0"))


class Spool:
    """A durable, bounded, append-only spool of JSON records in ``directory``.

    See the module documentation for the contract. ``fsync=False`` keeps
    everything but the fsyncs: a crash of the process still loses nothing
    (the page cache survives it), a power cut may; for tests and benchmarks.
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        max_bytes: int = 1 * GiB,
        segment_bytes: int = 16 * MiB,
        fsync: bool = True,
    ) -> None:
        if segment_bytes <= HEADER_BYTES + FRAME_BYTES:
            raise ValueError(f"segment_bytes={segment_bytes} is too small")
        if max_bytes < segment_bytes:
            raise ValueError(
                f"max_bytes={max_bytes} is smaller than segment_bytes={segment_bytes}: room is "
                "freed a whole segment at a time")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        # Lock order: _write_lock, then _read_lock, then _lock. _lock guards
        # the shared state below and is never held across a write or fsync.
        self._write_lock = threading.Lock()  # serializes appends
        self._read_lock = threading.Lock()  # serializes peeks and acks
        self._lock = threading.Lock()
        self._segments: dict[int, _Segment] = {}  # in ascending order
        self._active: _Segment | None = None  # the last segment, open for appending
        self._active_fd: int | None = None
        self._next_number = 1
        self._cursor = Position(1, HEADER_BYTES)
        self._counted_upto = Position(0, 0)  # damage before this is already counted
        self._disk_bytes = 0
        self._records_pending = 0
        self._appended_total = 0
        self._delivered_total = 0
        self._full_rejections = 0
        self._torn_records = 0
        self._corrupt_bytes = 0
        self._closed = False
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._take_lock()
        self._dir_fd = -1
        try:
            self._dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
            self._recover()
        except BaseException:
            self._release_fds()
            raise

    # -- opening -----------------------------------------------------------

    def _take_lock(self) -> int:
        fd = os.open(self.directory / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise SpoolLocked(
                f"spool {self.directory} is in use by another owner (pid {owner}); "
                "one process at a time may own a spool directory") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        return fd

    def _path(self, number: int) -> Path:
        return self.directory / f"{number:010d}.seg"

    def _recover(self) -> None:
        """Rebuild the state from the files: refuse foreign segments before
        touching anything, drop torn segment files, read the cursor, delete
        what it says is delivered, then scan what is pending (counting it,
        cutting a torn tail off the last segment)."""
        numbers = sorted(
            int(match.group(1)) for name in os.listdir(self.directory)
            if (match := _SEGMENT_NAME.fullmatch(name)))
        heads: dict[int, bytes] = {}
        for number in numbers:
            with self._path(number).open("rb") as handle:
                heads[number] = handle.read(HEADER_BYTES)
        for number, head in heads.items():
            if head != MAGIC and not _torn_header(head):
                raise SpoolFormatError(self._foreign_message(self._path(number), head))
        self._next_number = (numbers[-1] + 1) if numbers else 1
        for number in list(numbers):
            if heads[number] != MAGIC:
                self._drop_torn_segment(number, last=number == numbers[-1])
                numbers.remove(number)

        cursor = self._read_cursor()
        if cursor is None:
            cursor = Position(numbers[0] if numbers else self._next_number, HEADER_BYTES)
        else:  # new segments must come after the one the cursor names
            self._next_number = max(self._next_number, cursor.segment + 1)
        for number in numbers:
            size = self._path(number).stat().st_size
            last = number == numbers[-1]
            delivered = number < cursor.segment or (
                number == cursor.segment and cursor.offset >= size and not last)
            if delivered:
                self._path(number).unlink()
            else:
                self._segments[number] = _Segment(number, self._path(number), size,
                                                  sealed=not last)
        if cursor.segment in self._segments:
            segment = self._segments[cursor.segment]
            cursor = Position(cursor.segment,
                              min(max(cursor.offset, HEADER_BYTES), segment.end))
        self._cursor = cursor

        for segment in self._segments.values():
            start = cursor.offset if segment.number == cursor.segment else HEADER_BYTES
            reader = _Reader(segment.path, segment.end)
            try:
                scan = _scan(reader, start, last=not segment.sealed)
            finally:
                reader.close()
            self._records_pending += scan.records
            self._corrupt_bytes += scan.corrupt_bytes
            if scan.corrupt_bytes:
                log.warning("spool %s: %d damaged bytes skipped in %s", self.directory,
                            scan.corrupt_bytes, segment.path.name)
            if not segment.sealed:
                self._active = segment
                self._active_fd = os.open(segment.path, os.O_WRONLY | os.O_APPEND)
                if scan.torn_at is not None:
                    log.warning("spool %s: torn record at the end of %s cut off (%d bytes); "
                                "its append never returned", self.directory, segment.path.name,
                                segment.end - scan.torn_at)
                    os.ftruncate(self._active_fd, scan.torn_at)
                    self._sync(self._active_fd)
                    segment.end = scan.torn_at
                    self._torn_records += 1
            self._disk_bytes += segment.end
        if self._segments:
            last_segment = next(reversed(self._segments.values()))
            self._counted_upto = Position(last_segment.number, last_segment.end)
        (self.directory / _CURSOR_TEMP).unlink(missing_ok=True)

    def _foreign_message(self, path: Path, head: bytes) -> str:
        if head.startswith(_MAGIC_FAMILY):
            version = head[len(_MAGIC_FAMILY):].decode("ascii", "replace")
            return (f"{path} is spool format {version!r} (another icswatch version); this one "
                    f"reads format {MAGIC[-1:].decode()}: drain it with the version that wrote "
                    "it, or move it away")
        return (f"{path} is not an icswatch spool segment (it starts with {head!r}); refusing "
                f"to use {self.directory} as a spool")

    def _drop_torn_segment(self, number: int, *, last: bool) -> None:
        """Delete a segment whose header never reached the disk whole. The
        header goes out in the same write as its first records and is fsynced
        with them, so no append that returned had a record in it."""
        path = self._path(number)
        size = path.stat().st_size
        log.warning("spool %s: %s was cut short while being created (%d bytes); removed",
                    self.directory, path.name, size)
        if size > HEADER_BYTES:
            if last:
                self._torn_records += 1
            else:
                self._corrupt_bytes += size
        path.unlink()

    def _read_cursor(self) -> Position | None:
        try:
            data = (self.directory / _CURSOR_FILE).read_bytes()
        except FileNotFoundError:
            return None
        if len(data) == _CURSOR.size:
            magic, segment, offset, crc = _CURSOR.unpack(data)
            if magic == _CURSOR_MAGIC and zlib.crc32(data[:-4]) == crc:
                return Position(segment, offset)
        log.warning("spool %s: damaged cursor file; delivering again from the oldest segment "
                    "(the destination drops duplicates by id)", self.directory)
        return None

    # -- appending ---------------------------------------------------------

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        """Spool a batch of records durably (one fsync for the batch).

        Raises `SpoolFull` (nothing written) when the batch does not fit
        now, `TooLarge` when it never could, and TypeError/ValueError when a
        record is not JSON (nothing written either)."""
        self.append_payloads([_encode(record).encode("utf-8") for record in records])

    def append_payloads(self, payloads: Sequence[bytes]) -> None:
        """`append` for a caller that encodes its records itself (UTF-8 JSON
        objects, e.g. with a faster encoder); nothing checks they are JSON."""
        frames = [_frame(payload) for payload in payloads]
        for frame in frames:
            if len(frame) - FRAME_BYTES > MAX_PAYLOAD or HEADER_BYTES + len(frame) > self.max_bytes:
                raise TooLarge(f"a {len(frame) - FRAME_BYTES}-byte record can never fit in spool "
                               f"{self.directory} (max_bytes={self.max_bytes})")
        with self._write_lock:
            with self._lock:
                self._check_open()
                if not frames:
                    return
                steps, needed = self._plan(frames, self._active)
                if self._disk_bytes + needed > self.max_bytes:
                    self._make_room()
                    steps, needed = self._plan(frames, self._active)
                if self._disk_bytes + needed > self.max_bytes:
                    if self._plan(frames, None)[1] > self.max_bytes:
                        raise TooLarge(f"a batch of {len(frames)} records ({needed} bytes) can "
                                       f"never fit in spool {self.directory} "
                                       f"(max_bytes={self.max_bytes}): split it")
                    self._full_rejections += 1
                    available = self.max_bytes - self._disk_bytes
                    raise SpoolFull(
                        f"spool {self.directory} is full: {needed} bytes needed, {available} "
                        f"free of max_bytes={self.max_bytes} ({self._records_pending} records "
                        "wait for delivery)", needed=needed, available=available)
                active_fd = self._active_fd
            try:
                fds = self._write(steps, active_fd)
            except BaseException as exc:  # an interrupt too: the files must match the state
                with self._lock:
                    self._abandon(steps)
                    if not isinstance(exc, OSError) or exc.errno not in _DISK_FULL:
                        raise
                    self._full_rejections += 1
                    raise SpoolFull(f"spool {self.directory}: the disk is full ({exc.strerror})",
                                    needed=needed, available=0) from exc
            with self._lock:
                self._commit(steps, fds, len(frames))

    def _plan(self, frames: list[bytes], active: _Segment | None) -> tuple[list[_Step], int]:
        """Which frames go to which segment file, and how many bytes that
        adds on disk. A segment takes a record while it stays within
        ``segment_bytes``, or when it has none yet (an oversize record gets
        a segment of its own)."""
        steps: list[_Step] = []
        current = _Step(active.number, False, []) if active is not None else None
        size = active.end if active is not None else 0
        number = self._next_number
        needed = 0
        for frame in frames:
            if current is None or (size > HEADER_BYTES and size + len(frame) > self.segment_bytes):
                if current is not None and current.frames:
                    steps.append(current)
                current = _Step(number, True, [])
                number += 1
                size = HEADER_BYTES
                needed += HEADER_BYTES
            current.frames.append(frame)
            current.nbytes += len(frame)
            size += len(frame)
            needed += len(frame)
        if current is not None and current.frames:
            steps.append(current)
        return steps, needed

    def _write(self, steps: list[_Step], active_fd: int | None) -> list[int]:
        """Write the planned frames; returns the fds of the new segments.
        A segment is fsynced before the next one is created, so after a
        crash only the last segment can end in a torn record."""
        fds: list[int] = []
        fd = active_fd
        try:
            for step in steps:
                data = b"".join(step.frames)
                if step.new:
                    if fd is not None:
                        self._sync(fd)
                    fd = os.open(self._path(step.number),
                                 os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
                    fds.append(fd)
                    data = MAGIC + data
                assert fd is not None
                _write_all(fd, data)
            if fd is not None:
                self._sync(fd)
            if fds:
                self._sync(self._dir_fd)
        except BaseException:
            for new_fd in fds:
                os.close(new_fd)
            raise
        return fds

    def _abandon(self, steps: list[_Step]) -> None:
        """After a failed write: remove the new segment files, cut the
        active one back to what was committed and seal it. After a failed
        fsync the kernel may have dropped the unwritten pages while keeping
        the file, so appending to it again could not be trusted."""
        for step in steps:
            if step.new:
                self._path(step.number).unlink(missing_ok=True)
                self._next_number = max(self._next_number, step.number + 1)
        if self._active is not None and self._active_fd is not None:
            try:
                os.ftruncate(self._active_fd, self._active.end)
            except OSError:
                log.warning("spool %s: could not cut %s back after a failed write",
                            self.directory, self._active.path.name)
            os.close(self._active_fd)
            self._active.sealed = True
            self._active, self._active_fd = None, None

    def _commit(self, steps: list[_Step], fds: list[int], count: int) -> None:
        new_fds = iter(fds)
        for step in steps:
            if not step.new:
                assert self._active is not None
                self._active.end += step.nbytes
                self._disk_bytes += step.nbytes
                continue
            segment = _Segment(step.number, self._path(step.number), HEADER_BYTES + step.nbytes)
            self._segments[step.number] = segment
            self._disk_bytes += segment.end
            if self._active is not None and self._active_fd is not None:
                self._active.sealed = True
                os.close(self._active_fd)
            self._active, self._active_fd = segment, next(new_fds)
            self._next_number = step.number + 1
        self._records_pending += count
        self._appended_total += count

    def _make_room(self) -> None:
        """Called when an append does not fit: delete delivered segments an
        ack has not removed yet, and the active segment if everything in it
        is delivered (it would otherwise only go once it fills up)."""
        active = self._active
        if (active is not None and active.end > HEADER_BYTES
                and self._cursor >= Position(active.number, active.end)):
            assert self._active_fd is not None
            os.close(self._active_fd)
            active.sealed = True
            self._active, self._active_fd = None, None
        for segment in self._take_delivered():
            segment.path.unlink(missing_ok=True)

    # -- draining ----------------------------------------------------------

    def peek(self, max_records: int = 1000, max_bytes: int = 8 * MiB) -> Batch:
        """The oldest undelivered records, without removing them: at most
        ``max_records`` and ``max_bytes`` of JSON, but always at least one
        record when any is pending (a large record cannot block the spool).
        Peeking again before `ack` returns the same records."""
        if max_records < 1 or max_bytes < 1:
            raise ValueError("peek needs max_records >= 1 and max_bytes >= 1")
        with self._read_lock:
            with self._lock:
                self._check_open()
                start = self._cursor
                segments = [(s.number, s.path, s.end) for s in self._segments.values()
                            if s.number >= start.segment]
            payloads: list[bytes] = []
            size = 0
            position = start
            damage: list[tuple[Position, int]] = []
            for number, path, end in segments:
                if len(payloads) >= max_records or size >= max_bytes:
                    break
                offset = HEADER_BYTES
                if number == start.segment:
                    offset = max(start.offset, HEADER_BYTES)
                if offset < end:
                    reader = _Reader(path, end)
                    try:
                        while offset < end and len(payloads) < max_records:
                            payload = _record_at(reader, offset)
                            if payload is None:
                                resume = _resume_after_bad(reader, offset)
                                damage.append((Position(number, offset), resume - offset))
                                offset = resume
                                continue
                            if payloads and size + len(payload) > max_bytes:
                                break
                            payloads.append(payload)
                            size += len(payload)
                            offset += FRAME_BYTES + len(payload)
                    finally:
                        reader.close()
                position = Position(number, offset)
                if offset < end:
                    break
            if damage:
                self._count_damage(damage)
            return Batch(tuple(payloads), start, position)

    def _count_damage(self, damage: list[tuple[Position, int]]) -> None:
        """Count damage found while draining, once, and recount what is
        pending (the damaged bytes held records that were counted)."""
        with self._lock:
            fresh = [(where, size) for where, size in damage if where >= self._counted_upto]
            for where, size in fresh:
                log.warning("spool %s: %d damaged bytes skipped in segment %d", self.directory,
                            size, where.segment)
                self._corrupt_bytes += size
                self._counted_upto = Position(where.segment, where.offset + size)
            if not fresh:
                return
            cursor = self._cursor
            segments = [(s.number, s.path, s.end) for s in self._segments.values()
                        if s.number >= cursor.segment]
            appended = self._appended_total
        records = 0
        for number, path, end in segments:
            reader = _Reader(path, end)
            try:
                start = cursor.offset if number == cursor.segment else HEADER_BYTES
                records += _scan(reader, max(start, HEADER_BYTES), last=False).records
            finally:
                reader.close()
        with self._lock:
            self._records_pending = records + self._appended_total - appended

    def ack(self, batch: Batch) -> None:
        """Mark a peeked batch delivered: persist the read position
        atomically and delete segment files that are wholly delivered.
        Acknowledging a batch twice is harmless; acknowledging one that
        does not start at the read position is a mistake (ValueError)."""
        with self._read_lock:
            with self._lock:
                self._check_open()
                if batch.end <= self._cursor:
                    return
                if batch.start != self._cursor:
                    raise ValueError(f"batch starts at {batch.start}, the spool's read position "
                                     f"is {self._cursor}: peek again")
            self._write_cursor(batch.end)
            with self._lock:
                self._cursor = batch.end
                self._records_pending -= len(batch.payloads)
                self._delivered_total += len(batch.payloads)
                delivered = self._take_delivered()
            for segment in delivered:
                segment.path.unlink(missing_ok=True)

    def _take_delivered(self) -> list[_Segment]:
        """Remove from the table the segments entirely behind the cursor
        (caller holds ``_lock`` and deletes the files)."""
        cursor = self._cursor
        taken = [s for s in self._segments.values() if s is not self._active and (
            s.number < cursor.segment or (s.number == cursor.segment and cursor.offset >= s.end))]
        for segment in taken:
            del self._segments[segment.number]
            self._disk_bytes -= segment.end
        return taken

    def _write_cursor(self, position: Position) -> None:
        data = _CURSOR.pack(_CURSOR_MAGIC, position.segment, position.offset, 0)
        data = data[:-4] + _LENGTH.pack(zlib.crc32(data[:-4]))
        temp = self.directory / _CURSOR_TEMP
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, data)
            self._sync(fd)
        finally:
            os.close(fd)
        os.replace(temp, self.directory / _CURSOR_FILE)
        self._sync(self._dir_fd)

    # -- the rest ----------------------------------------------------------

    @property
    def stats(self) -> SpoolStats:
        with self._lock:
            cursor = self._cursor
            pending = sum(
                max(0, s.end - (cursor.offset if s.number == cursor.segment else HEADER_BYTES))
                for s in self._segments.values() if s.number >= cursor.segment)
            return SpoolStats(
                records_pending=self._records_pending,
                bytes_pending=pending,
                disk_bytes=self._disk_bytes,
                segments=len(self._segments),
                appended_total=self._appended_total,
                delivered_total=self._delivered_total,
                full_rejections=self._full_rejections,
                torn_records=self._torn_records,
                corrupt_bytes=self._corrupt_bytes,
            )

    def _sync(self, fd: int) -> None:
        if self.fsync:
            os.fsync(fd)

    def _check_open(self) -> None:
        if self._closed:
            raise SpoolError(f"spool {self.directory} is closed")

    def _release_fds(self) -> None:
        for fd in (self._active_fd, self._dir_fd, self._lock_fd):
            if fd is not None and fd >= 0:
                os.close(fd)
        self._active_fd = None
        self._dir_fd = self._lock_fd = -1

    def close(self) -> None:
        """Release the files and the directory lock; what is not delivered
        stays on disk for the next owner. Idempotent."""
        with self._write_lock, self._read_lock, self._lock:
            if not self._closed:
                self._closed = True
                self._release_fds()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Spool({str(self.directory)!r}, max_bytes={self.max_bytes})"
