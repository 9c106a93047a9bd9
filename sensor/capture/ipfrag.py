"""IPv4 and IPv6 fragment reassembly, bounded in datagrams, bytes and time."""

from __future__ import annotations

from typing import Final

MAX_DATAGRAM: Final = 65535 + 8
FRAGMENT_TIMEOUT: Final = 30.0

FragmentKey = tuple[bytes, bytes, int, int]


class _Partial:
    __slots__ = ("first_ts", "fragments", "size", "total")

    def __init__(self, ts: float) -> None:
        self.first_ts = ts
        self.fragments: dict[int, bytes] = {}
        self.total = -1
        self.size = 0


class FragmentReassembler:
    """Collects fragments by (src, dst, id, protocol) until a datagram is whole.

    Where fragments overlap, the bytes come from the fragment with the lower
    offset (at equal offsets, the longer one), whatever order they arrived
    in, so a replay gives the same datagram every time; datagrams that had
    overlaps are counted (``ip_fragment_overlaps``: retransmissions, or an
    evasion attempt when the overlapping bytes differ). Caps on pending
    datagrams and bytes shed the oldest; ``counters`` records why.
    """

    def __init__(self, max_datagrams: int = 4096, max_bytes: int = 16 * 1024 * 1024) -> None:
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self.pending: dict[FragmentKey, _Partial] = {}
        self.bytes = 0
        self.counters: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def add(
        self, ts: float, key: FragmentKey, offset: int, more: bool, data: bytes
    ) -> bytes | None:
        """Add one fragment; return the whole payload once every byte is there."""
        partial = self.pending.get(key)
        if partial is None:
            if len(self.pending) >= self.max_datagrams or self.bytes > self.max_bytes:
                self._shed(ts)
            partial = self.pending[key] = _Partial(ts)
        end = offset + len(data)
        if end > MAX_DATAGRAM:
            self._count("ip_fragments_oversized")
            self._drop(key)
            return None
        if not more:
            partial.total = end
        if offset not in partial.fragments or len(partial.fragments[offset]) < len(data):
            old = partial.fragments.get(offset)
            partial.size += len(data) - (len(old) if old else 0)
            self.bytes += len(data) - (len(old) if old else 0)
            partial.fragments[offset] = data
        if partial.total < 0 or partial.size < partial.total:
            return None
        out = bytearray(partial.total)
        covered = 0
        overlaps = False
        for frag_offset in sorted(partial.fragments):
            frag = partial.fragments[frag_offset]
            if frag_offset > covered:
                return None  # a hole: overlaps made size look complete
            if frag_offset < covered:
                overlaps = True
            tail = frag_offset + len(frag) - covered
            if tail > 0:
                out[covered : covered + tail] = frag[len(frag) - tail :]
                covered += tail
        if covered < partial.total:
            return None
        self._drop(key)
        self._count("ip_datagrams_reassembled")
        if overlaps:
            self._count("ip_fragment_overlaps")
        return bytes(out[: partial.total])

    def _drop(self, key: FragmentKey) -> None:
        partial = self.pending.pop(key, None)
        if partial is not None:
            self.bytes -= partial.size

    def _shed(self, now: float) -> None:
        for key in [k for k, p in self.pending.items() if now - p.first_ts > FRAGMENT_TIMEOUT]:
            self._count("ip_fragments_timed_out")
            self._drop(key)
        while self.pending and (
            len(self.pending) >= self.max_datagrams or self.bytes > self.max_bytes
        ):
            oldest = min(self.pending, key=lambda k: self.pending[k].first_ts)
            self._count("ip_fragments_cap")
            self._drop(oldest)
