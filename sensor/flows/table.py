"""The flow table: finds or creates the flow of each packet, reassembles TCP
per direction, hands in-order bytes to the protocol session, and evicts idle,
closed and surplus flows.

Each flow is entered twice in a dict keyed by the packet's own
``(src, dst, sport, dport)``, once per direction, with the direction stored
beside it: the hot path does one dict look-up and no key normalisation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from sensor.flows.flow import TCP, UDP, Flow
from sensor.flows.tcp import MAX_PENDING_BYTES, MAX_PENDING_SEGMENTS, SEQ_MASK, TcpStream, seq_diff
from sensor.protocols.base import Emit, ProtocolSpec

FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
ACK: Final = 0x10

FlowKey = tuple[bytes, bytes, int, int]
Entry = tuple[Flow, bool]
PacketFilter = Callable[[int, bytes, bytes, int, int], bool]

PROBE_PACKETS: Final = 3


class FlowTable:
    """Bounded flow state. ``counters`` says what was shed and why."""

    def __init__(
        self,
        protocols: Iterable[ProtocolSpec],
        emit: Emit,
        *,
        max_flows: int = 50_000,
        max_buffered_bytes: int = 32 * 1024 * 1024,
        tcp_idle_timeout: float = 600.0,
        udp_idle_timeout: float = 120.0,
        packet_filter: PacketFilter | None = None,
    ) -> None:
        self.emit = emit
        self.max_flows = max_flows
        self.max_buffered_bytes = max_buffered_bytes
        self.tcp_idle_timeout = tcp_idle_timeout
        self.udp_idle_timeout = udp_idle_timeout
        self.packet_filter = packet_filter
        self.tcp: dict[FlowKey, Entry] = {}
        self.udp: dict[FlowKey, Entry] = {}
        self.flow_count = 0
        self.active = 0
        self.buffered_bytes = 0
        self.next_sweep = 0.0
        self.counters: dict[str, int] = {}
        self.protocol_flows: dict[str, int] = {}
        self.tcp_ports: dict[int, ProtocolSpec] = {}
        self.udp_ports: dict[int, ProtocolSpec] = {}
        self.tcp_probes: list[ProtocolSpec] = []
        self.udp_probes: list[ProtocolSpec] = []
        for spec in protocols:
            if "tcp" in spec.transport:
                self.tcp_probes.append(spec)
                for port in spec.ports:
                    self.tcp_ports.setdefault(port, spec)
            if "udp" in spec.transport:
                self.udp_probes.append(spec)
                for port in spec.ports:
                    self.udp_ports.setdefault(port, spec)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    # -- TCP ---------------------------------------------------------------

    def tcp_packet(
        self,
        ts: float,
        number: int,
        src: bytes,
        dst: bytes,
        sport: int,
        dport: int,
        seq: int,
        ack: int,
        flags: int,
        payload: bytes,
        frame: bytes,
        mac_offset: int,
    ) -> None:
        if ts >= self.next_sweep:
            # Before the look-up: a flow idle past its timeout is gone before
            # its next packet, which then starts a new flow.
            self._sweep(ts)
        entry = self.tcp.get((src, dst, sport, dport))
        if entry is not None and flags & SYN and self._reused(entry, seq, ts):
            entry = None
        if entry is None:
            if not payload and not flags & SYN:
                self.count("tcp_packets_without_flow")
                return
            entry = self._new_tcp_flow(ts, src, dst, sport, dport, flags, frame, mac_offset)
            if entry is None:
                return
        flow, from_initiator = entry
        flow.last_ts = ts
        if from_initiator:
            flow.packets_from_initiator += 1
            flow.bytes_from_initiator += len(payload)
            stream = flow.stream_from_initiator
            peer = flow.stream_from_responder
            if not flow.pass_from_initiator:
                return
        else:
            flow.packets_from_responder += 1
            flow.bytes_from_responder += len(payload)
            stream = flow.stream_from_responder
            peer = flow.stream_from_initiator
            if not flow.pass_from_responder:
                return
        assert stream is not None and peer is not None
        if flags & ACK:
            peer.acked = ack
        if flags & SYN:
            if seq != stream.syn_seq:  # not a retransmission: (re)start here
                stream.syn_seq = seq
                stream.next_seq = (seq + 1) & SEQ_MASK
            seq = (seq + 1) & SEQ_MASK
        if payload and (flow.session is not None or flow.probes_left):
            if stream.next_seq == seq and not stream.pending:
                stream.next_seq = (seq + len(payload)) & SEQ_MASK
                self._deliver(flow, from_initiator, payload, ts, number)
            else:
                self._segment(flow, stream, from_initiator, seq, payload, ts, number)
        if flags & (FIN | RST):
            self._fin_or_rst(flow, from_initiator, flags, ts)

    def _deliver(
        self, flow: Flow, from_initiator: bool, data: bytes, ts: float, number: int
    ) -> None:
        session = flow.session
        if session is None:
            if not flow.probes_left:
                return
            flow.probes_left -= 1
            probes = self.tcp_probes if flow.transport == TCP else self.udp_probes
            for spec in probes:
                if spec.probe(data, from_initiator):
                    self._attach(flow, spec)
                    break
            else:
                return
            session = flow.session
            assert session is not None
        session.feed(from_initiator, data, ts, number)

    def _segment(
        self,
        flow: Flow,
        stream: TcpStream,
        from_initiator: bool,
        seq: int,
        payload: bytes,
        ts: float,
        number: int,
    ) -> None:
        """The slow path: mid-stream pickup, retransmission, overlap, reordering."""
        if stream.next_seq < 0:
            # Mid-stream pickup: whatever came before this segment is unknown,
            # so it may start inside a PDU. Tell the session as for a gap (of
            # unknown size) so it resynchronises instead of decoding garbage.
            stream.next_seq = seq
            flow.midstream = True
            if flow.session is not None:
                flow.session.gap(from_initiator, 0)
        d = seq_diff(seq, stream.next_seq)
        if d < 0:
            if d + len(payload) <= 0:
                self.count("tcp_retransmitted_segments")
                return
            self.count("tcp_overlapping_segments")
            payload = payload[-d:]
            d = 0
        if d == 0:
            stream.next_seq = (stream.next_seq + len(payload)) & SEQ_MASK
            self._deliver(flow, from_initiator, payload, ts, number)
            self._drain(flow, stream, from_initiator, ts, number)
            return
        self.count("tcp_out_of_order_segments")
        self.buffered_bytes += stream.hold(seq, payload, number, ts)
        if (
            len(stream.pending) > MAX_PENDING_SEGMENTS
            or stream.pending_bytes > MAX_PENDING_BYTES
        ):
            self.count("tcp_gaps_stream_cap")
        elif self.buffered_bytes > self.max_buffered_bytes:
            self.count("tcp_gaps_global_cap")
        elif stream.acked >= 0 and seq_diff(stream.acked, seq) >= 0:
            # The peer acknowledged bytes up to this segment: the hole
            # was delivered to it but never reached the capture.
            self.count("tcp_gaps_acked")
        else:
            return
        self._skip_gap(flow, stream, from_initiator)
        self._drain(flow, stream, from_initiator)

    def _drain(
        self, flow: Flow, stream: TcpStream, from_initiator: bool, ts: float = 0.0,
        number: int = 0,
    ) -> None:
        """Deliver the held segments that now follow ``next_seq``. After a
        hole was filled by packet ``number`` they are stamped with it (that
        packet completed them); after a hole was given up on (``number`` 0)
        each keeps the number and time of the packet that brought it."""
        while stream.pending:
            before = stream.pending_bytes
            data = stream.pop_ready()
            self.buffered_bytes -= before - stream.pending_bytes
            if data is None:
                return
            if number:
                self._deliver(flow, from_initiator, data, ts, number)
            else:
                self._deliver(flow, from_initiator, data, stream.ready_ts, stream.ready_packet)

    def _skip_gap(self, flow: Flow, stream: TcpStream, from_initiator: bool) -> None:
        lost = stream.skip_gap()
        self.count("tcp_gap_bytes", lost)
        if flow.session is not None:
            flow.session.gap(from_initiator, lost)

    def _reused(self, entry: Entry, seq: int, ts: float) -> bool:
        """A SYN from a side that already sent something, with a sequence
        number other than its first SYN's, is a new connection on the same
        ports (the old one's FIN or RST was not seen): close the old flow so
        nothing of it (a partial PDU, held segments) leaks into the new one.
        A retransmitted SYN, even a late one, changes nothing."""
        flow, from_initiator = entry
        stream = flow.stream_from_initiator if from_initiator else flow.stream_from_responder
        if stream is None or stream.next_seq < 0 or seq == stream.syn_seq:
            return False
        self.count("flows_closed_reused")
        self._close(flow, ts)
        return True

    def _fin_or_rst(self, flow: Flow, from_initiator: bool, flags: int, ts: float) -> None:
        if flags & RST:
            self.count("flows_closed_rst")
            self._close(flow, ts)
            return
        if from_initiator:
            flow.fin_from_initiator = True
        else:
            flow.fin_from_responder = True
        if flow.fin_from_initiator and flow.fin_from_responder:
            self.count("flows_closed_fin")
            self._close(flow, ts)

    def _new_tcp_flow(
        self,
        ts: float,
        src: bytes,
        dst: bytes,
        sport: int,
        dport: int,
        flags: int,
        frame: bytes,
        mac_offset: int,
    ) -> Entry | None:
        if flags & SYN:
            sender_initiates = not flags & ACK
        else:
            sender_initiates = self._sender_is_client(self.tcp_ports, sport, dport)
        flow = self._create(TCP, ts, src, dst, sport, dport, sender_initiates, frame, mac_offset)
        if flow is None:
            return None
        flow.midstream = not flags & SYN
        flow.stream_from_initiator = TcpStream()
        flow.stream_from_responder = TcpStream()
        spec = self.tcp_ports.get(flow.responder_port)
        if spec is not None:
            self._attach(flow, spec)
        elif self.tcp_probes:
            flow.probes_left = PROBE_PACKETS
        entry = (flow, sender_initiates)
        self.tcp[(src, dst, sport, dport)] = entry
        self.tcp[(dst, src, dport, sport)] = (flow, not sender_initiates)
        return entry

    # -- UDP ---------------------------------------------------------------

    def udp_packet(
        self,
        ts: float,
        number: int,
        src: bytes,
        dst: bytes,
        sport: int,
        dport: int,
        payload: bytes,
        frame: bytes,
        mac_offset: int,
    ) -> None:
        if ts >= self.next_sweep:
            self._sweep(ts)
        entry = self.udp.get((src, dst, sport, dport))
        if entry is None:
            sender_initiates = self._sender_is_client(self.udp_ports, sport, dport)
            flow = self._create(
                UDP, ts, src, dst, sport, dport, sender_initiates, frame, mac_offset
            )
            if flow is None:
                return
            spec = self.udp_ports.get(flow.responder_port)
            if spec is not None:
                self._attach(flow, spec)
            elif self.udp_probes:
                flow.probes_left = PROBE_PACKETS
            entry = (flow, sender_initiates)
            self.udp[(src, dst, sport, dport)] = entry
            self.udp[(dst, src, dport, sport)] = (flow, not sender_initiates)
        flow, from_initiator = entry
        flow.last_ts = ts
        if from_initiator:
            flow.packets_from_initiator += 1
            flow.bytes_from_initiator += len(payload)
            if not flow.pass_from_initiator:
                return
        else:
            flow.packets_from_responder += 1
            flow.bytes_from_responder += len(payload)
            if not flow.pass_from_responder:
                return
        if payload:
            self._deliver(flow, from_initiator, payload, ts, number)

    # -- flow life ---------------------------------------------------------

    @staticmethod
    def _sender_is_client(ports: dict[int, ProtocolSpec], sport: int, dport: int) -> bool:
        """Judge who is the client of a flow first seen mid-stream: the side
        talking to a known service port, else the side with the higher port."""
        if dport in ports:
            return True
        if sport in ports:
            return False
        return sport >= dport

    def _create(
        self,
        transport: int,
        ts: float,
        src: bytes,
        dst: bytes,
        sport: int,
        dport: int,
        sender_initiates: bool,
        frame: bytes,
        mac_offset: int,
    ) -> Flow | None:
        if self.active >= self.max_flows:
            self._evict_oldest(ts)
        self.flow_count += 1
        self.active += 1
        if sender_initiates:
            flow = Flow(self.flow_count, transport, src, dst, sport, dport, ts)
        else:
            flow = Flow(self.flow_count, transport, dst, src, dport, sport, ts)
        if mac_offset >= 0:
            dst_mac = frame[mac_offset : mac_offset + 6].hex(":")
            src_mac = frame[mac_offset + 6 : mac_offset + 12].hex(":")
            if sender_initiates:
                flow.initiator_mac, flow.responder_mac = src_mac, dst_mac
            else:
                flow.initiator_mac, flow.responder_mac = dst_mac, src_mac
        packet_filter = self.packet_filter
        if packet_filter is not None:
            flow.pass_from_initiator = packet_filter(
                transport, flow.initiator_raw, flow.responder_raw,
                flow.initiator_port, flow.responder_port,
            )
            flow.pass_from_responder = packet_filter(
                transport, flow.responder_raw, flow.initiator_raw,
                flow.responder_port, flow.initiator_port,
            )
        return flow

    def _attach(self, flow: Flow, spec: ProtocolSpec) -> None:
        flow.protocol = spec.name
        flow.probes_left = 0
        flow.session = spec.session(flow, self.emit)
        self.protocol_flows[spec.name] = self.protocol_flows.get(spec.name, 0) + 1

    def _close(self, flow: Flow, ts: float) -> None:
        if flow.closed:
            return
        flow.closed = True
        self.active -= 1
        for stream, from_initiator in (
            (flow.stream_from_initiator, True),
            (flow.stream_from_responder, False),
        ):
            if stream is not None and stream.pending:
                # Whatever still waits behind a hole is delivered after it.
                while stream.pending:
                    self._skip_gap(flow, stream, from_initiator)
                    self._drain(flow, stream, from_initiator)
        if flow.session is not None:
            for name, value in flow.session.close(ts).items():
                self.count(name, value)
        table = self.tcp if flow.transport == TCP else self.udp
        table.pop((flow.initiator_raw, flow.responder_raw, flow.initiator_port,
                   flow.responder_port), None)
        table.pop((flow.responder_raw, flow.initiator_raw, flow.responder_port,
                   flow.initiator_port), None)

    def _flows(self) -> list[Flow]:
        seen: dict[int, Flow] = {}
        for table in (self.tcp, self.udp):
            for flow, _ in table.values():
                seen[flow.number] = flow
        return [seen[n] for n in sorted(seen)]

    def _sweep(self, now: float) -> None:
        """Close flows idle past their timeout; runs every few seconds of
        capture time, not per packet."""
        self.next_sweep = now + 5.0
        for flow in self._flows():
            timeout = self.tcp_idle_timeout if flow.transport == TCP else self.udp_idle_timeout
            if now - flow.last_ts > timeout:
                self.count("flows_evicted_idle")
                self._close(flow, now)

    def _evict_oldest(self, now: float) -> None:
        """At the flow cap, drop the least recently active sixteenth."""
        flows = sorted(self._flows(), key=lambda f: (f.last_ts, f.number))
        for flow in flows[: max(1, len(flows) // 16)]:
            self.count("flows_evicted_cap")
            self._close(flow, now)

    def close_all(self, ts: float) -> None:
        """End of input: close every flow, oldest first, so sessions flush."""
        for flow in self._flows():
            self._close(flow, ts)
