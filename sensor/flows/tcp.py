"""Per-direction TCP stream state: the next expected sequence number and the
out-of-order segments waiting for the bytes before them."""

from __future__ import annotations

from typing import Final

SEQ_MASK: Final = 0xFFFFFFFF
# Segments held per direction while waiting for a hole to fill.
MAX_PENDING_SEGMENTS: Final = 256
MAX_PENDING_BYTES: Final = 256 * 1024


def seq_diff(a: int, b: int) -> int:
    """``a - b`` in 32-bit sequence space (RFC 793 modular arithmetic)."""
    d = (a - b) & SEQ_MASK
    return d - 0x100000000 if d & 0x80000000 else d


class TcpStream:
    """Reassembly state of one direction. ``next_seq`` is -1 until the first
    SYN or data segment sets it; ``acked`` is the highest ACK the peer sent,
    which tells bytes the capture missed (the peer got them) from bytes still
    in flight; ``syn_seq`` tells a retransmitted SYN from a new connection
    on the same ports. A held segment keeps the number and time of the packet that
    brought it; `pop_ready` leaves them in ``ready_packet`` and ``ready_ts``."""

    __slots__ = (
        "acked", "gap_bytes", "gaps", "next_seq", "pending", "pending_bytes", "ready_packet",
        "ready_ts", "syn_seq",
    )

    def __init__(self) -> None:
        self.next_seq = -1
        self.acked = -1
        self.pending: dict[int, tuple[bytes, int, float]] = {}
        self.pending_bytes = 0
        self.gaps = 0
        self.gap_bytes = 0
        self.ready_packet = 0
        self.ready_ts = 0.0
        self.syn_seq = -1  # sequence number of this side's SYN, once seen

    def hold(self, seq: int, payload: bytes, packet: int, ts: float) -> int:
        """Keep a segment that arrived ahead of ``next_seq``; returns the bytes
        added to the buffer (negative when a shorter copy was replaced)."""
        old = self.pending.get(seq)
        if old is not None and len(old[0]) >= len(payload):
            return 0
        self.pending[seq] = (payload, packet, ts)
        added = len(payload) - (len(old[0]) if old is not None else 0)
        self.pending_bytes += added
        return added

    def earliest(self) -> int:
        """Sequence number of the pending segment closest to ``next_seq``."""
        base = self.next_seq
        return min(self.pending, key=lambda s: (s - base) & SEQ_MASK)

    def pop_ready(self) -> bytes | None:
        """Remove and return the pending bytes that now follow ``next_seq``
        (trimmed of what was already delivered), advancing ``next_seq``;
        None when the hole before the pending segments is still open."""
        while self.pending:
            for seq in self.pending:
                d = seq_diff(seq, self.next_seq)
                if d <= 0:
                    data, self.ready_packet, self.ready_ts = self.pending.pop(seq)
                    self.pending_bytes -= len(data)
                    if d + len(data) <= 0:
                        break  # wholly old: a retransmission; look again
                    data = data[-d:] if d else data
                    self.next_seq = (self.next_seq + len(data)) & SEQ_MASK
                    return data
            else:
                return None
        return None

    def skip_gap(self) -> int:
        """Give up on the hole: jump ``next_seq`` to the earliest pending
        segment and return the number of bytes lost."""
        target = self.earliest()
        lost = seq_diff(target, self.next_seq)
        self.next_seq = target
        self.gaps += 1
        self.gap_bytes += lost
        return lost
