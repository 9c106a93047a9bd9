"""`LiveCapture`: frame building from the kernel's ancillary data, and (as
root) a real capture on the loopback interface."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

import pytest

from sensor.capture import live
from sensor.capture.live import LiveCapture, LiveCaptureError

ETHERNET = bytes.fromhex("ffffffffffff" "020000000001" "0800") + b"\x45" + bytes(19)


def _timestamp(seconds: int, nanoseconds: int) -> tuple[int, int, bytes]:
    return socket.SOL_SOCKET, live.SO_TIMESTAMPNS, struct.pack("@qq", seconds, nanoseconds)


def _auxdata(status: int, length: int, tci: int = 0, tpid: int = 0) -> tuple[int, int, bytes]:
    return live.SOL_PACKET, live.PACKET_AUXDATA, struct.pack(
        "@IIIHHHH", status, length, length, 0, 14, tci, tpid)


def test_frame_takes_the_kernel_timestamp_in_microseconds() -> None:
    buf = bytearray(ETHERNET)
    ts, linktype, data, length = live._frame(
        buf, len(buf), [_timestamp(1_700_000_000, 123_456_789)], live.ARPHRD_ETHER, 256)
    assert ts == 1_700_000_000_123_456 * 1e-6
    assert (linktype, data, length) == (1, ETHERNET, len(ETHERNET))


def test_frame_puts_back_the_vlan_tag_the_kernel_took_off() -> None:
    buf = bytearray(ETHERNET)
    status = live.TP_STATUS_VLAN_VALID | live.TP_STATUS_VLAN_TPID_VALID
    _, _, data, length = live._frame(
        buf, len(buf), [_auxdata(status, len(buf), tci=0x2064, tpid=0x88A8)],
        live.ARPHRD_ETHER, 256)
    assert data == ETHERNET[:12] + bytes.fromhex("88a82064") + ETHERNET[12:]
    assert length == len(ETHERNET) + 4


def test_frame_keeps_the_original_length_of_a_cut_packet() -> None:
    buf = bytearray(ETHERNET[:16])  # the snap length
    _, _, data, length = live._frame(buf, 1500, [_auxdata(0, 1500)], live.ARPHRD_ETHER, 16)
    assert data == ETHERNET[:16] and length == 1500


def test_frame_without_ethernet_header_is_raw_ip() -> None:
    buf = bytearray(ETHERNET[14:])
    _, linktype, data, _ = live._frame(buf, len(buf), [], live.ARPHRD_NONE, 256)
    assert linktype == live.LINKTYPE_RAW and data == ETHERNET[14:]


def test_unknown_interface_is_one_line() -> None:
    with pytest.raises(LiveCaptureError, match="no such interface"):
        LiveCapture("icsw-nonesuch0").open()


@pytest.mark.skipif(os.geteuid() != 0, reason="a packet socket needs CAP_NET_RAW (root)")
def test_capture_on_loopback_sees_a_datagram_and_stops() -> None:
    marker = b"icswatch-live-capture-test"
    capture = LiveCapture("lo", duration=5, tick=0.05)
    with capture:

        def send() -> None:
            time.sleep(0.1)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.sendto(marker, ("127.0.0.1", 9))

        sender = threading.Thread(target=send)
        sender.start()
        ticks = 0
        found = None
        for item in capture.frames():
            if item is None:
                ticks += 1
                continue
            if marker in item[2]:
                found = item
                capture.stop()
        sender.join()
    assert found is not None and ticks >= 1
    ts, linktype, data, length = found
    assert linktype == 1 and length == len(data) and abs(ts - time.time()) < 5
    assert capture.kernel_packets >= 1 and capture.kernel_drops == 0
