"""pcap and pcapng readers (plain or gzip-compressed) that stream in bounded memory.

Frames come out as ``(timestamp, linktype, data, original_length)`` tuples;
the readers keep at most one read chunk plus one frame in memory. A file that
is not a capture, or that ends in the middle of a record, raises
`CaptureError` naming the file and the problem, after every complete frame
before the damage has been yielded (what tshark does too).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Final

CHUNK_SIZE: Final = 1 << 20
# Larger than any real snap length (Wireshark's maximum is 256 KiB; pcapng
# allows more for USB and D-Bus): a bigger record means a corrupt file.
MAX_FRAME: Final = 1 << 24

PCAP_MAGIC_US: Final = 0xA1B2C3D4
PCAP_MAGIC_NS: Final = 0xA1B23C4D
PCAPNG_SHB: Final = 0x0A0D0D0A
PCAPNG_BYTE_ORDER: Final = 0x1A2B3C4D

Frame = tuple[float, int, bytes, int]


class CaptureError(Exception):
    """A capture file that cannot be read; ``str()`` is one line for the user."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


class CaptureFile:
    """One capture file; ``position`` (bytes read of the file on disk) and
    ``size`` let a caller show progress."""

    def __init__(self, path: Path | str) -> None:
        self.path = path
        try:
            self._raw: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed in frames()
            self.size = os.fstat(self._raw.fileno()).st_size
        except OSError as exc:
            raise CaptureError(path, exc.strerror or str(exc)) from None
        head = self._raw.read(2)
        self._raw.seek(0)
        self._stream: BinaryIO = self._raw
        if head == b"\x1f\x8b":
            self._stream = gzip.GzipFile(fileobj=self._raw, mode="rb")  # type: ignore[assignment]

    @property
    def position(self) -> int:
        return self._raw.tell()

    def check(self) -> None:
        """Raise `CaptureError` now if the file does not start like a capture."""
        try:
            magic = self._stream.read(4)
        except (OSError, EOFError, zlib.error) as exc:
            raise CaptureError(self.path, f"unreadable: {exc}") from None
        finally:
            self._stream.seek(0)
        _format(self.path, magic)

    def close(self) -> None:
        """Release the file (`frames()` does so itself when it ends)."""
        self._stream.close()
        self._raw.close()

    def frames(self) -> Iterator[Frame]:
        """Yield every frame of the file, then close it."""
        path, stream = self.path, self._stream
        try:
            magic = stream.read(4)
            reader = _format(path, magic)
            yield from reader(path, stream, magic)
        except (OSError, EOFError, zlib.error) as exc:
            # gzip.BadGzipFile is an OSError; damage inside the deflate
            # stream surfaces as zlib.error, which is not.
            raise CaptureError(path, f"read error: {exc}") from None
        finally:
            stream.close()
            self._raw.close()


def read_frames(path: Path | str) -> Iterator[Frame]:
    """Yield every frame of a pcap or pcapng file, gzip or not."""
    return CaptureFile(path).frames()


Reader = Callable[[Path | str, BinaryIO, bytes], Iterator[Frame]]


def _format(path: Path | str, magic: bytes) -> Reader:
    if not magic:
        raise CaptureError(path, "empty file, not a capture")
    if len(magic) < 4:
        raise CaptureError(path, "not a pcap or pcapng capture (file too short)")
    for endian in ("<", ">"):
        (value,) = struct.unpack(endian + "I", magic)
        if value in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            return _pcap
    if struct.unpack("<I", magic)[0] == PCAPNG_SHB:
        return _pcapng
    raise CaptureError(path, f"not a pcap or pcapng capture (starts with {magic.hex()})")


def _pcap(path: Path | str, stream: BinaryIO, magic: bytes) -> Iterator[Frame]:
    endian = "<" if struct.unpack("<I", magic)[0] in (PCAP_MAGIC_US, PCAP_MAGIC_NS) else ">"
    scale = 1e-9 if struct.unpack(endian + "I", magic)[0] == PCAP_MAGIC_NS else 1e-6
    header = stream.read(20)
    if len(header) < 20:
        raise CaptureError(path, "cut short in the pcap file header")
    _major, _minor, _zone, _sigfigs, _snaplen, linktype = struct.unpack(endian + "HHiIII", header)
    linktype &= 0x0FFFFFFF  # the upper bits carry FCS length flags
    unpack_record = struct.Struct(endian + "IIII").unpack_from
    buf = b""
    off = 0
    number = 0
    while True:
        chunk = stream.read(CHUNK_SIZE)
        if not chunk:
            break
        buf = buf[off:] + chunk if off < len(buf) else chunk
        off = 0
        size = len(buf)
        while off + 16 <= size:
            sec, frac, caplen, origlen = unpack_record(buf, off)
            end = off + 16 + caplen
            if caplen > MAX_FRAME:
                raise CaptureError(
                    path, f"packet {number + 1} has an impossible length {caplen} (corrupt file)"
                )
            if end > size:
                break
            number += 1
            yield (sec + frac * scale, linktype, buf[off + 16 : end], origlen)
            off = end
    if off < len(buf):
        raise CaptureError(
            path, f"cut short in the middle of packet {number + 1} (after {number} packets)"
        )


class _Interface:
    __slots__ = ("linktype", "offset", "scale")

    def __init__(self, linktype: int, scale: float, offset: int) -> None:
        self.linktype = linktype
        self.scale = scale
        self.offset = offset


def _if_options(body: bytes, endian: str) -> tuple[float, int]:
    """Read if_tsresol (9) and if_tsoffset (14) from an IDB's options."""
    scale, offset = 1e-6, 0
    pos = 8
    while pos + 4 <= len(body):
        code, length = struct.unpack_from(endian + "HH", body, pos)
        pos += 4
        if code == 0:
            break
        value = body[pos : pos + length]
        if code == 9 and length >= 1:
            res = value[0]
            scale = 2.0 ** -(res & 0x7F) if res & 0x80 else 10.0 ** -(res & 0x7F)
        elif code == 14 and length == 8:
            (offset,) = struct.unpack(endian + "q", value)
        pos += (length + 3) & ~3
    return scale, offset


def _pcapng(path: Path | str, stream: BinaryIO, first: bytes) -> Iterator[Frame]:
    endian = "<"
    interfaces: list[_Interface] = []
    buf = first
    off = 0
    number = 0
    eof = False
    while True:
        # Make sure one whole block is in the buffer.
        if len(buf) - off < 12 and not eof:
            chunk = stream.read(CHUNK_SIZE)
            eof = not chunk
            buf = buf[off:] + chunk
            off = 0
            continue
        if len(buf) - off < 12:
            if off < len(buf):
                raise CaptureError(path, f"cut short after {number} packets (partial block)")
            return
        block_type = struct.unpack_from(endian + "I", buf, off)[0]
        if block_type == PCAPNG_SHB:
            (bom,) = struct.unpack_from("<I", buf, off + 8)
            if bom == PCAPNG_BYTE_ORDER:
                endian = "<"
            elif bom == 0x4D3C2B1A:
                endian = ">"
            else:
                raise CaptureError(path, "not a pcapng capture (bad byte-order magic)")
            interfaces = []
        (block_len,) = struct.unpack_from(endian + "I", buf, off + 4)
        if block_len < 12 or block_len % 4 or block_len > MAX_FRAME:
            raise CaptureError(
                path, f"corrupt pcapng block (length {block_len}) after {number} packets"
            )
        if len(buf) - off < block_len:
            if eof:
                raise CaptureError(
                    path, f"cut short in the middle of packet {number + 1} (after {number} packets)"
                )
            chunk = stream.read(max(CHUNK_SIZE, block_len))
            eof = not chunk
            buf = buf[off:] + chunk
            off = 0
            continue
        (trailer,) = struct.unpack_from(endian + "I", buf, off + block_len - 4)
        if trailer != block_len:
            # Both ends of a block carry its length; a mismatch means the
            # leading one is corrupt and everything after it would be misread.
            raise CaptureError(
                path, f"corrupt pcapng block (length {block_len}, trailer says {trailer}) "
                f"after {number} packets"
            )
        body_start = off + 8
        if block_type == 6:  # Enhanced Packet Block
            if_id, ts_high, ts_low, caplen, origlen = struct.unpack_from(
                endian + "IIIII", buf, body_start
            )
            if if_id >= len(interfaces) or 20 + caplen > block_len - 12:
                raise CaptureError(path, f"packet {number + 1}: corrupt enhanced packet block")
            iface = interfaces[if_id]
            number += 1
            start = body_start + 20
            ts = ((ts_high << 32) | ts_low) * iface.scale + iface.offset
            yield (ts, iface.linktype, buf[start : start + caplen], origlen)
        elif block_type == 3:  # Simple Packet Block
            if not interfaces:
                raise CaptureError(path, "simple packet block before any interface")
            (origlen,) = struct.unpack_from(endian + "I", buf, body_start)
            caplen = min(origlen, block_len - 16)
            number += 1
            start = body_start + 4
            yield (0.0, interfaces[0].linktype, buf[start : start + caplen], origlen)
        elif block_type == 1:  # Interface Description Block
            linktype = struct.unpack_from(endian + "H", buf, body_start)[0]
            scale, ts_offset = _if_options(buf[body_start : off + block_len - 4], endian)
            interfaces.append(_Interface(linktype, scale, ts_offset))
        elif block_type == 2:  # obsolete Packet Block
            if_id, _drops, ts_high, ts_low, caplen, origlen = struct.unpack_from(
                endian + "HHIIII", buf, body_start
            )
            if if_id >= len(interfaces):
                raise CaptureError(path, f"packet {number + 1}: unknown interface {if_id}")
            iface = interfaces[if_id]
            number += 1
            start = body_start + 20
            ts = ((ts_high << 32) | ts_low) * iface.scale + iface.offset
            yield (ts, iface.linktype, buf[start : start + caplen], origlen)
        off += block_len
