"""The sensor runtime: capture → packets → flows → protocol sessions → consumers.

`Sensor` owns the flow table and decoders and counts what it saw; whoever
runs it (the CLI, a live capture loop) passes a consumer that receives every
`IcsEvent` in order — detectors and sinks live above this layer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sensor.capture.packet import PacketDecoder
from sensor.capture.reader import CaptureFile, Frame
from sensor.event import IcsEvent
from sensor.flows.table import FlowTable, PacketFilter
from sensor.protocols import registry
from sensor.protocols.base import ProtocolSpec

# Whatever a consumer returns (a rule engine returns its alerts) is ignored.
Consumer = Callable[[IcsEvent], object]


class FrameSource(Protocol):
    """A capture file or a live interface: frames as
    ``(timestamp, linktype, data, original_length)``; ``None`` items only
    give the runner a moment for periodic work."""

    @property
    def path(self) -> Path | str: ...

    def frames(self) -> Iterator[Frame | None]: ...


Progress = Callable[[FrameSource, int], None]


@dataclass(slots=True)
class Stats:
    """What a run saw; the replay summary prints it."""

    packets: int = 0
    bytes: int = 0
    events: int = 0
    malformed: int = 0
    elapsed: float = 0.0
    operations: dict[str, dict[str, int]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def packets_per_second(self) -> float:
        return self.packets / self.elapsed if self.elapsed > 0 else 0.0


class Sensor:
    def __init__(
        self,
        consumer: Consumer,
        *,
        protocols: Iterable[ProtocolSpec] | None = None,
        packet_filter: PacketFilter | None = None,
        max_flows: int = 50_000,
    ) -> None:
        self.consumer = consumer
        self.stats = Stats()
        self.flows = FlowTable(
            registry() if protocols is None else protocols,
            self._emit,
            packet_filter=packet_filter,
            max_flows=max_flows,
        )
        self.decoder = PacketDecoder(self.flows)
        self.last_ts = 0.0

    def _emit(self, event: IcsEvent) -> None:
        """Count the event (``Stats.events`` is summed from these counts at
        the end) and hand it on."""
        by_operation = self.stats.operations.get(event.protocol)
        if by_operation is None:
            by_operation = self.stats.operations[event.protocol] = {}
        operation = event.operation
        by_operation[operation] = by_operation.get(operation, 0) + 1
        if event.malformed is not None:
            self.stats.malformed += 1
        self.consumer(event)

    def replay(
        self, paths: Iterable[Path | str], progress: Progress | None = None
    ) -> Stats:
        """Decode each file in turn (one flow table across them, as for a
        ring of rotated files), then close every flow."""
        return self.run((CaptureFile(path) for path in paths), progress)

    def run(self, sources: Iterable[FrameSource], progress: Progress | None = None) -> Stats:
        """Decode each source in turn — capture files or a live interface —
        with one flow table, then close every flow (also when stopped by an
        exception: whatever was decoded reaches the consumer)."""
        started = time.perf_counter()
        try:
            for source in sources:
                self.feed(source, progress)
        finally:
            self.finish()
            self.stats.elapsed = time.perf_counter() - started
        return self.stats

    def feed(self, source: FrameSource, progress: Progress | None = None) -> None:
        """Decode one source's frames; ``progress`` is called every 16384
        packets and whenever the source yields ``None`` (a live source does
        so while idle), for periodic work."""
        frame = self.decoder.frame
        packets = 0
        size = 0
        ts = self.last_ts
        try:
            for item in source.frames():
                if item is None:
                    if progress is not None:
                        progress(source, packets)
                    continue
                ts, linktype, data, _origlen = item
                packets += 1
                size += len(data)
                frame(ts, linktype, data, packets)
                if progress is not None and not packets & 0x3FFF:
                    progress(source, packets)
        finally:
            self.last_ts = ts
            self.stats.packets += packets
            self.stats.bytes += size

    def finish(self) -> None:
        self.flows.close_all(self.last_ts)
        self.stats.events = sum(sum(ops.values()) for ops in self.stats.operations.values())
        counters = self.stats.counters
        counters.clear()
        for source in (self.decoder.counters, self.decoder.fragments.counters,
                       self.flows.counters):
            for name, value in source.items():
                counters[name] = counters.get(name, 0) + value
        counters["flows"] = self.flows.flow_count
        for name, flows in self.flows.protocol_flows.items():
            counters[f"{name}_flows"] = flows
