"""The `icswatch` command.

Exit status: 0 done, 1 failure while running, 2 bad usage or unreadable
input — with one line on stderr naming the problem.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import NoReturn, TextIO, TypeVar

from console.errors import UsageError
from console.output import AlertsOnlyWriter, EventWriter, JsonLinesWriter, NullWriter, TableWriter
from console.replay_store import open_store, store_inventory
from console.rules_cli import (
    RuleReloader,
    add_rules_commands,
    load_for_replay,
    run_rules_command,
)
from console.serve_cli import add_serve_commands, run_serve, run_tier_command, run_user_command
from console.stores.base import StoreError
from detectors.alert import Alert
from detectors.inventory import Inventory
from detectors.rules.engine import RuleEngine
from detectors.rules.yamlsource import YamlError
from sensor.capture.filter import FilterError, compile_filter
from sensor.capture.live import DEFAULT_BUFFER, DEFAULT_SNAPLEN, LiveCapture, LiveCaptureError
from sensor.capture.reader import CaptureError, CaptureFile
from sensor.event import IcsEvent
from sensor.flows.table import PacketFilter
from sensor.runtime import Consumer, FrameSource, Sensor, Stats

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

T = TypeVar("T")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="icswatch", description="Passive security monitor for ICS networks.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    replay = commands.add_parser(
        "replay", help="decode pcap/pcapng files and print events and alerts"
    )
    replay.add_argument("files", nargs="+", metavar="FILE", help="pcap or pcapng, gzip or not")
    _add_run_options(replay)
    live = commands.add_parser(
        "sensor", help="capture from a network interface (a SPAN/mirror port) and print "
                       "events and alerts until stopped"
    )
    live.add_argument("--interface", "-i", required=True, metavar="IFACE",
                      help="the interface to capture from (Linux; needs CAP_NET_RAW)")
    live.add_argument("--snaplen", type=_positive_int, default=DEFAULT_SNAPLEN, metavar="BYTES",
                      help=f"bytes kept of each packet (default {DEFAULT_SNAPLEN})")
    live.add_argument("--buffer-size", type=_positive_int, default=DEFAULT_BUFFER >> 20,
                      metavar="MIB",
                      help=f"kernel receive buffer in MiB (default {DEFAULT_BUFFER >> 20})")
    live.add_argument("--duration", type=_positive_float, metavar="SECONDS",
                      help="stop after this many seconds (default: until SIGINT/SIGTERM)")
    live.add_argument("--count", type=_positive_int, metavar="PACKETS",
                      help="stop after this many packets")
    live.add_argument("--no-promiscuous", action="store_true",
                      help="do not put the interface in promiscuous mode")
    live.add_argument("--skip-outgoing", action="store_true",
                      help="ignore packets this host sends (on a mirror port all are incoming)")
    _add_run_options(live)
    add_rules_commands(commands)
    add_serve_commands(commands)
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options replay and sensor share: output, rules, filter, stores."""
    parser.add_argument(
        "--format", choices=("table", "alerts", "jsonl", "none"), default="table",
        help="table (default: events and alerts), alerts (alerts only), jsonl (one ECS "
             "document per line, events and alerts) or none (summary only)",
    )
    parser.add_argument("--rules", action="append", metavar="PATH",
                        help="rule pack file or folder (repeatable; default: the built-in rules/)")
    parser.add_argument("--no-rules", action="store_true", help="decode only, no rules")
    parser.add_argument("--groups", metavar="FILE",
                        help="the site's host groups (YAML: name -> addresses/networks)")
    parser.add_argument("--filter", "-f", metavar="EXPR",
                        help="BPF-style filter, e.g. 'tcp port 502 and host 10.0.0.5'")
    parser.add_argument("--output", "-o", metavar="PATH", help="write records here, not stdout")
    parser.add_argument("--no-summary", action="store_true", help="no summary on stderr")
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    parser.add_argument(
        "--store", metavar="PATH|URL|none",
        help="where alerts are stored for `icswatch serve`: an embedded store file (default: "
             "$ICSWATCH_DB, else $XDG_DATA_HOME/icswatch/icswatch.db), an Elasticsearch URL "
             "(http[s]://host:9200; credentials from ICSWATCH_ES_USERNAME/_PASSWORD or "
             "ICSWATCH_ES_API_KEY, CA file from ICSWATCH_ES_CA_CERTS), or 'none'",
    )
    parser.add_argument(
        "--spool", metavar="DIR",
        help="with an Elasticsearch --store: where alerts wait while the cluster is slow or "
             "down (default: $XDG_DATA_HOME/icswatch/spool)")
    parser.add_argument("--store-events", action="store_true",
                        help="store the events too, not only the alerts (large)")
    parser.add_argument("--sensor-name", metavar="NAME", default=socket.gethostname(),
                        help="the name this run is stored under in the console's sensor "
                             "list (default: the host name)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


class _ProgressBar:
    """A one-line progress bar on stderr for long files (only on a terminal)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = time.perf_counter()
        self.last = 0.0
        self.shown = False

    def __call__(self, source: FrameSource, packets: int) -> None:
        now = time.perf_counter()
        if now - self.last < 0.25:
            return
        self.last = now
        rate = packets / (now - self.started) if now > self.started else 0.0
        if isinstance(source, CaptureFile):
            share = source.position / source.size if source.size else 0.0
            filled = int(share * 30)
            self.out.write(
                f"\r{source.path}: [{'#' * filled}{'.' * (30 - filled)}] {share:4.0%} "
                f"{packets} packets {rate:,.0f}/s"
            )
        else:
            self.out.write(f"\r{source.path}: {packets} packets {rate:,.0f}/s\033[K")
        self.out.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            self.out.write("\r\033[K")
            self.out.flush()


def _both(
    first: Callable[[T], object] | None, second: Callable[[T], object]
) -> Callable[[T], object]:
    """Both writers in turn (the second alone when there is no first)."""
    if first is None:
        return second

    def both(record: T) -> None:
        first(record)
        second(record)

    return both


def _consumer(
    engine: RuleEngine | None,
    write_event: Callable[[IcsEvent], object] | None,
    write_alert: Callable[[Alert], object] | None,
) -> Consumer:
    """The function the sensor calls per event, with no call it does not need."""
    if engine is None:
        return write_event or _ignore
    process = engine.process
    if write_event is None and write_alert is None:
        return process  # alerts are only counted, by the engine
    if write_alert is None:
        return _both(write_event, process)
    if write_event is None:
        alert_only = write_alert

        def alerts(event: IcsEvent) -> None:
            for alert in process(event):
                alert_only(alert)

        return alerts
    on_event, on_alert = write_event, write_alert

    def consumer(event: IcsEvent) -> None:
        on_event(event)
        for alert in process(event):
            on_alert(alert)

    return consumer


def _ignore(event: IcsEvent) -> None:
    return None


def _summary(stats: Stats, engine: RuleEngine | None, out: TextIO,
             stored: str | None = None, capture: str | None = None) -> None:
    flows = stats.counters.get("flows", 0)
    out.write(
        f"icswatch: {stats.packets} packets, {stats.bytes} bytes, {flows} flows, "
        f"{stats.events} events ({stats.malformed} malformed) in {stats.elapsed:.2f} s, "
        f"{stats.packets_per_second:,.0f} packets/s\n"
    )
    if capture is not None:
        out.write(capture)
    for protocol in sorted(stats.operations):
        operations = stats.operations[protocol]
        total = sum(operations.values())
        out.write(f"  {protocol}: {total} events\n")
        for operation, count in sorted(operations.items(), key=lambda item: (-item[1], item[0])):
            out.write(f"    {operation:<40} {count}\n")
    if engine is not None:
        raised = {rule: counts for rule, counts in engine.statistics().items() if any(counts)}
        total = sum(alerts for alerts, _ in raised.values())
        out.write(f"  alerts: {total} from {len(engine.rules)} active rules\n")
        for rule_id, (alerts, suppressed) in sorted(raised.items()):
            note = f" ({suppressed} more suppressed)" if suppressed else ""
            out.write(f"    {rule_id:<40} {alerts}{note}\n")
    if stored is not None:
        out.write(stored)
    shed = {k: v for k, v in sorted(stats.counters.items()) if k != "flows" and v}
    if shed:
        out.write("  counters: " + ", ".join(f"{k}={v}" for k, v in shed.items()) + "\n")


def _compile_filter(expression: str | None) -> PacketFilter | None:
    if not expression:
        return None
    try:
        return compile_filter(expression)
    except FilterError as exc:
        raise UsageError(f"--filter: {exc}") from None


class _Pipeline:
    """What replay and sensor share once their input is known to be readable:
    the output and its writer, the rule engine and its reloader, the store,
    the inventory, and the `Sensor` that feeds them."""

    def __init__(self, args: argparse.Namespace, packet_filter: PacketFilter | None) -> None:
        self.args = args
        out: TextIO = sys.stdout
        if args.output:
            try:
                out = open(args.output, "w", encoding="utf-8")  # noqa: SIM115
            except OSError as exc:
                raise UsageError(f"cannot write {args.output}: {exc.strerror}") from None
        self.out = out
        try:
            self.engine = None if args.no_rules else load_for_replay(
                args.rules, args.groups, sys.stderr)
            self.sink = None
            if self.engine is not None or args.store_events:
                self.sink = open_store(args.store, args.spool)
        except BaseException:
            self._close_out()
            raise
        writer: EventWriter
        if args.format == "jsonl":
            writer = JsonLinesWriter(out)
        elif args.format == "table":
            writer = TableWriter(out)
        elif args.format == "alerts":
            writer = AlertsOnlyWriter(out)
        else:
            writer = NullWriter()
        self.writer = writer
        printing = not isinstance(writer, NullWriter)
        write_event: Callable[[IcsEvent], object] | None = writer.event if printing else None
        write_alert: Callable[[Alert], object] | None = writer.alert if printing else None
        self.inventory = None
        if self.sink is not None:
            write_alert = _both(write_alert, self.sink.alert)
            if args.store_events:
                write_event = _both(write_event, self.sink.event)
            self.inventory = Inventory()
            write_event = _both(write_event, self.inventory.observe)
        self.sensor = Sensor(_consumer(self.engine, write_event, write_alert),
                             packet_filter=packet_filter)
        self.bar = None
        if not args.no_progress and sys.stderr.isatty():
            self.bar = _ProgressBar(sys.stderr)
        self.reloader = None
        if self.engine is not None:
            self.reloader = RuleReloader(self.engine, args.rules, args.groups, sys.stderr)
            self.reloader.install_sighup()

    def _close_out(self) -> None:
        if self.out is not sys.stdout:
            self.out.close()

    def tick(self, source: FrameSource, packets: int) -> None:
        if self.bar is not None:
            self.bar(source, packets)
        if self.reloader is not None:
            self.reloader.maybe_reload()
        if self.sink is not None:
            self.sink.tick()

    def run(self, sources: Iterable[FrameSource], captures: Sequence[str], kind: str,
            capture_summary: Callable[[], str] | None = None) -> int:
        """Decode every source, then store the run and print the summary."""
        sink, engine = self.sink, self.engine
        try:
            stats = self.sensor.run(sources, self.tick)
        except BaseException:
            if sink is not None:
                sink.abandon()
            raise
        finally:
            if self.bar is not None:
                self.bar.done()
            self.writer.close()
            self._close_out()
        if sink is not None:
            try:
                if self.inventory is not None:
                    alerts = sum(raised for raised, _ in engine.statistics().values()) \
                        if engine is not None else 0
                    store_inventory(sink, self.inventory, self.args.sensor_name, stats, alerts,
                                    captures, kind)
            except BaseException:
                sink.abandon()
                raise
            sink.close()
        if not self.args.no_summary:
            _summary(stats, engine, sys.stderr, sink.summary() if sink is not None else None,
                     capture_summary() if capture_summary is not None else None)
        return EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    packet_filter = _compile_filter(args.filter)
    for path in args.files:  # every input readable before any output
        capture = CaptureFile(path)
        try:
            capture.check()
        finally:
            capture.close()
    pipeline = _Pipeline(args, packet_filter)
    return pipeline.run((CaptureFile(path) for path in args.files), args.files, "replay")


def _sensor(args: argparse.Namespace) -> int:
    packet_filter = _compile_filter(args.filter)
    try:
        capture = LiveCapture(
            args.interface, snaplen=args.snaplen, buffer_size=args.buffer_size << 20,
            promiscuous=not args.no_promiscuous, skip_outgoing=args.skip_outgoing,
            duration=args.duration, count=args.count,
        )
        capture.open()  # the interface and the permission checked before any output
    except LiveCaptureError as exc:
        raise UsageError(str(exc)) from None
    try:
        pipeline = _Pipeline(args, packet_filter)

        def stop(_signum: int, _frame: object) -> None:
            capture.stop()

        previous = {signum: signal.signal(signum, stop)
                    for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            if not args.no_summary:
                sys.stderr.write(f"icswatch: capturing on {args.interface}\n")
                sys.stderr.flush()
            return pipeline.run([capture], [capture.path], "live",
                                lambda: _kernel_summary(capture))
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    finally:
        capture.close()


def _kernel_summary(capture: LiveCapture) -> str:
    capture.update_stats()
    return (f"  {capture.path}: kernel {capture.kernel_packets} packets, "
            f"{capture.kernel_drops} dropped\n")


def main(argv: Sequence[str] | None = None) -> int:
    # Background parts (the Elasticsearch sink) report in one line each.
    logging.basicConfig(level=logging.WARNING, format="icswatch: %(message)s", stream=sys.stderr)
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            raise UsageError("a command is required: replay, sensor, rules, serve or user")
        if args.command == "rules":
            return run_rules_command(args, sys.stdout, sys.stderr)
        if args.command == "serve":
            return run_serve(args, sys.stderr)
        if args.command == "user":
            return run_user_command(args, sys.stdout)
        if args.command == "tier":
            return run_tier_command(args, sys.stdout)
        if args.command == "sensor":
            return _sensor(args)
        return _replay(args)
    except UsageError as exc:
        print(f"icswatch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except YamlError as exc:
        print(f"icswatch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CaptureError as exc:
        sys.stdout.flush()
        print(f"icswatch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LiveCaptureError as exc:
        sys.stdout.flush()
        print(f"icswatch: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except StoreError as exc:
        sys.stdout.flush()
        print(f"icswatch: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        print("icswatch: interrupted", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
