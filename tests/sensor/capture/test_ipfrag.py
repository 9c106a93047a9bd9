"""Fragment reassembly on its own: overlap policy, holes, caps and timeouts."""

from __future__ import annotations

from itertools import permutations

import pytest

from sensor.capture.ipfrag import FragmentReassembler

KEY = (b"\x0a\0\0\x01", b"\x0a\0\0\x02", 7, 6)

# (offset, more fragments, data); A and B disagree on bytes 16-23.
CONFLICTING = [(0, True, b"A" * 24), (16, True, b"B" * 16), (32, False, b"C" * 8)]


@pytest.mark.parametrize("order", list(permutations(range(3))))
def test_overlapping_bytes_do_not_depend_on_arrival_order(order: tuple[int, ...]) -> None:
    reassembler = FragmentReassembler()
    results = [reassembler.add(0.0, KEY, *CONFLICTING[i]) for i in order]
    assert results[:2] == [None, None]
    assert results[2] == b"A" * 24 + b"B" * 8 + b"C" * 8
    assert reassembler.counters == {"ip_datagrams_reassembled": 1, "ip_fragment_overlaps": 1}
    assert reassembler.pending == {} and reassembler.bytes == 0


def test_no_overlap_no_overlap_count() -> None:
    reassembler = FragmentReassembler()
    assert reassembler.add(0.0, KEY, 8, False, b"b" * 4) is None
    assert reassembler.add(0.0, KEY, 0, True, b"a" * 8) == b"a" * 8 + b"b" * 4
    assert reassembler.counters == {"ip_datagrams_reassembled": 1}


def test_overlaps_that_hide_a_hole_do_not_complete() -> None:
    """Bytes received add up to the total, but 24-31 never came."""
    reassembler = FragmentReassembler()
    assert reassembler.add(0.0, KEY, 0, True, b"a" * 16) is None
    assert reassembler.add(0.0, KEY, 8, True, b"b" * 16) is None
    assert reassembler.add(0.0, KEY, 32, False, b"c" * 8) is None
    assert reassembler.add(0.0, KEY, 24, True, b"d" * 8) == (
        b"a" * 16 + b"b" * 8 + b"d" * 8 + b"c" * 8
    )


def test_datagrams_are_kept_apart_by_key() -> None:
    reassembler = FragmentReassembler()
    other = (KEY[0], KEY[1], 8, 6)
    assert reassembler.add(0.0, KEY, 0, True, b"1" * 8) is None
    assert reassembler.add(0.0, other, 0, True, b"2" * 8) is None
    assert reassembler.add(0.0, other, 8, False, b"2") == b"2" * 9
    assert reassembler.add(0.0, KEY, 8, False, b"1") == b"1" * 9


def test_oversized_datagram_is_dropped() -> None:
    reassembler = FragmentReassembler()
    assert reassembler.add(0.0, KEY, 0, True, b"x" * 8) is None
    assert reassembler.add(0.0, KEY, 65528, False, b"x" * 100) is None
    assert reassembler.counters == {"ip_fragments_oversized": 1}
    assert reassembler.pending == {} and reassembler.bytes == 0


def test_pending_datagram_cap_sheds_the_oldest() -> None:
    reassembler = FragmentReassembler(max_datagrams=2)
    for ident in range(3):
        reassembler.add(float(ident), (KEY[0], KEY[1], ident, 6), 0, True, b"x" * 8)
    assert reassembler.counters == {"ip_fragments_cap": 1}
    assert sorted(key[2] for key in reassembler.pending) == [1, 2]
    assert reassembler.bytes == 16


def test_stale_fragments_time_out() -> None:
    reassembler = FragmentReassembler(max_datagrams=2)
    reassembler.add(0.0, (KEY[0], KEY[1], 1, 6), 0, True, b"x" * 8)
    reassembler.add(1.0, (KEY[0], KEY[1], 2, 6), 0, True, b"x" * 8)
    reassembler.add(100.0, (KEY[0], KEY[1], 3, 6), 0, True, b"x" * 8)
    assert reassembler.counters == {"ip_fragments_timed_out": 2}
    assert [key[2] for key in reassembler.pending] == [3]
