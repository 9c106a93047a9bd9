"""Live capture from one Linux network interface (a SPAN/mirror port or a TAP).

An ``AF_PACKET`` raw socket bound to the interface, in promiscuous mode,
yields frames in the shape `CaptureFile.frames()` does —
``(timestamp, linktype, data, original_length)`` — so the sensor runs the
same loop over a live port as over a file. Timestamps are the kernel's
receive time of the packet (``SO_TIMESTAMPNS``), cut to microseconds as
libpcap's default is (dumpcap, whose ring stamps the moment it is handed
each packet, differs from them by microseconds). VLAN tags the kernel took
off into the packet's auxiliary data are put back, as libpcap does.

While no packet comes, `LiveCapture.frames()` yields ``None`` every
``tick`` seconds (and at least that often under load) so the caller can do
its periodic work; `stop()` — safe from a signal handler — ends it.
"""

from __future__ import annotations

import errno
import socket
import struct
import time
from collections.abc import Iterator
from typing import Final

from sensor.capture.reader import Frame

ETH_P_ALL: Final = 0x0003
SOL_PACKET: Final = 263
PACKET_ADD_MEMBERSHIP: Final = 1
PACKET_STATISTICS: Final = 6
PACKET_AUXDATA: Final = 8
PACKET_MR_PROMISC: Final = 1
PACKET_OUTGOING: Final = 4
SO_TIMESTAMPNS: Final = 35  # SO_TIMESTAMPNS_OLD: a native struct timespec
SO_RCVBUFFORCE: Final = 33
TP_STATUS_VLAN_VALID: Final = 0x10
TP_STATUS_VLAN_TPID_VALID: Final = 0x40
ETH_P_8021Q: Final = 0x8100

# ARPHRD_* → pcap link type
ARPHRD_ETHER: Final = 1
ARPHRD_LOOPBACK: Final = 772
ARPHRD_NONE: Final = 0xFFFE
LINKTYPE_ETHERNET: Final = 1
LINKTYPE_RAW: Final = 101

DEFAULT_SNAPLEN: Final = 262_144
DEFAULT_BUFFER: Final = 32 << 20

_TIMESPEC = struct.Struct("@qq")
_AUXDATA = struct.Struct("@IIIHHHH")  # struct tpacket_auxdata
_STATS = struct.Struct("@II")  # struct tpacket_stats
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size) + socket.CMSG_SPACE(_AUXDATA.size)


class LiveCaptureError(Exception):
    """The interface cannot be captured from; ``str()`` is one line for the user."""


class LiveCapture:
    """Frames from one interface. Open it with `open()` (or as a context
    manager) before `frames()`; the kernel's counters are in
    `kernel_packets` and `kernel_drops` (updated by `update_stats()`)."""

    def __init__(
        self,
        interface: str,
        *,
        snaplen: int = DEFAULT_SNAPLEN,
        buffer_size: int = DEFAULT_BUFFER,
        promiscuous: bool = True,
        skip_outgoing: bool = False,
        duration: float | None = None,
        count: int | None = None,
        tick: float = 0.5,
    ) -> None:
        if snaplen < 64:
            raise LiveCaptureError(f"{interface}: snap length {snaplen} is below 64 bytes")
        self.interface = interface
        self.path = f"interface {interface}"  # what a progress line or a sensor record names
        self.snaplen = snaplen
        self.buffer_size = buffer_size
        self.promiscuous = promiscuous
        self.skip_outgoing = skip_outgoing
        self.duration = duration
        self.count = count
        self.tick = tick
        self.kernel_packets = 0
        self.kernel_drops = 0
        self.received = 0
        self._sock: socket.socket | None = None
        self._stopping = False

    def __enter__(self) -> LiveCapture:
        self.open()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Create and bind the socket; raise `LiveCaptureError` with one line
        (unknown interface, missing CAP_NET_RAW, …)."""
        name = self.interface
        try:
            index = socket.if_nametoindex(name)
        except OSError:
            raise LiveCaptureError(f"{name}: no such interface") from None
        try:
            # Protocol 0: nothing is queued until bind() names the interface.
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise LiveCaptureError(
                f"{name}: capture not permitted (needs CAP_NET_RAW: run as root or "
                "`setcap cap_net_raw,cap_net_admin+eip` on the interpreter)"
            ) from None
        except OSError as exc:
            raise LiveCaptureError(f"{name}: cannot open a packet socket: {exc.strerror}") from None
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.buffer_size)
            except OSError:  # without CAP_NET_ADMIN: capped by net.core.rmem_max
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.buffer_size)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            sock.bind((name, ETH_P_ALL))  # the socket module does the htons
            if self.promiscuous:
                mreq = struct.pack("@iHH8s", index, PACKET_MR_PROMISC, 0, b"")
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            sock.settimeout(self.tick)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.ENODEV:
                raise LiveCaptureError(f"{name}: no such interface") from None
            if exc.errno == errno.ENETDOWN:
                raise LiveCaptureError(f"{name}: interface is down") from None
            raise LiveCaptureError(f"{name}: {exc.strerror or exc}") from None
        self._sock = sock
        self.update_stats()
        self.kernel_packets = self.kernel_drops = 0

    def close(self) -> None:
        if self._sock is not None:
            self.update_stats()
            self._sock.close()
            self._sock = None

    def stop(self) -> None:
        """End `frames()` at its next packet or tick (safe in a signal handler)."""
        self._stopping = True

    @property
    def stopping(self) -> bool:
        return self._stopping

    def update_stats(self) -> None:
        """Add the kernel's counters since the last call (reading resets them)."""
        sock = self._sock
        if sock is None:
            return
        try:
            raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size)
        except OSError:
            return
        packets, drops = _STATS.unpack(raw)
        self.kernel_packets += packets  # the kernel counts drops in tp_packets too
        self.kernel_drops += drops

    def frames(self) -> Iterator[Frame | None]:
        """Frames until `stop()`, the duration or the count; ``None`` now and
        then (every ``tick`` seconds) so the caller can do periodic work."""
        sock = self._sock
        if sock is None:
            raise LiveCaptureError(f"{self.interface}: not open")
        buf = bytearray(self.snaplen)
        view = memoryview(buf)
        recv = sock.recvmsg_into
        monotonic = time.monotonic
        skip_outgoing = self.skip_outgoing
        count = self.count
        started = monotonic()
        deadline = started + self.duration if self.duration is not None else None
        next_tick = started + self.tick
        received = 0
        try:
            while not self._stopping:
                if count is not None and received >= count:
                    break
                now = monotonic()
                if deadline is not None and now >= deadline:
                    break
                if now >= next_tick:
                    next_tick = now + self.tick
                    self.update_stats()
                    yield None
                    continue
                try:
                    length, ancillary, _flags, address = recv([view], _ANCILLARY, socket.MSG_TRUNC)
                except (TimeoutError, InterruptedError):
                    continue
                except OSError as exc:  # the interface went away or down
                    raise LiveCaptureError(
                        f"{self.interface}: capture failed: {exc.strerror or exc}") from None
                if skip_outgoing and address[2] == PACKET_OUTGOING:
                    continue
                received += 1
                yield _frame(buf, length, ancillary, address[3], self.snaplen)
        finally:
            self.received += received
            self.update_stats()


def _frame(
    buf: bytearray, length: int, ancillary: list[tuple[int, int, bytes]], hatype: int,
    snaplen: int,
) -> Frame:
    ts: float | None = None
    vlan: bytes | None = None
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            # Microseconds, as a pcap file's default resolution; a float's
            # 52 bits hold no more than that for today's epoch seconds anyway.
            ts = (seconds * 1_000_000 + nanoseconds // 1000) * 1e-6
        elif level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= _AUXDATA.size:
            status, tp_len, _snap, _mac, _net, tci, tpid = _AUXDATA.unpack_from(data)
            length = tp_len
            if status & TP_STATUS_VLAN_VALID or tci:
                if not status & TP_STATUS_VLAN_TPID_VALID:
                    tpid = ETH_P_8021Q
                vlan = struct.pack("!HH", tpid, tci)
    if ts is None:
        ts = round(time.time() * 1_000_000) * 1e-6
    captured = min(length, len(buf))
    if hatype == ARPHRD_NONE:
        return ts, LINKTYPE_RAW, bytes(buf[:captured]), length
    if vlan is not None and captured >= 12:
        data = bytes(buf[:12]) + vlan + bytes(buf[12:captured])
        return ts, LINKTYPE_ETHERNET, data[:snaplen], length + 4
    return ts, LINKTYPE_ETHERNET, bytes(buf[:captured]), length

