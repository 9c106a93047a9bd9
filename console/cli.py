"""The `icswatch` command.

Exit status: 0 done, 1 failure while running, 2 bad usage or unreadable
input — with one line on stderr naming the problem.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import time
from collections.abc import Callable, Sequence
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
from console.serve_cli import add_serve_commands, run_serve, run_user_command
from console.stores.base import StoreError
from detectors.alert import Alert
from detectors.inventory import Inventory
from detectors.rules.engine import RuleEngine
from detectors.rules.yamlsource import YamlError
from sensor.capture.filter import FilterError, compile_filter
from sensor.capture.reader import CaptureError, CaptureFile
from sensor.event import IcsEvent
from sensor.runtime import Consumer, Sensor, Stats

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
    replay.add_argument(
        "--format", choices=("table", "alerts", "jsonl", "none"), default="table",
        help="table (default: events and alerts), alerts (alerts only), jsonl (one ECS "
             "document per line, events and alerts) or none (summary only)",
    )
    replay.add_argument("--rules", action="append", metavar="PATH",
                        help="rule pack file or folder (repeatable; default: the built-in rules/)")
    replay.add_argument("--no-rules", action="store_true", help="decode only, no rules")
    replay.add_argument("--groups", metavar="FILE",
                        help="the site's host groups (YAML: name -> addresses/networks)")
    replay.add_argument("--filter", "-f", metavar="EXPR",
                        help="BPF-style filter, e.g. 'tcp port 502 and host 10.0.0.5'")
    replay.add_argument("--output", "-o", metavar="PATH", help="write records here, not stdout")
    replay.add_argument("--no-summary", action="store_true", help="no summary on stderr")
    replay.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    replay.add_argument(
        "--store", metavar="PATH|URL|none",
        help="where alerts are stored for `icswatch serve`: an embedded store file (default: "
             "$ICSWATCH_DB, else $XDG_DATA_HOME/icswatch/icswatch.db), an Elasticsearch URL "
             "(http[s]://host:9200; credentials from ICSWATCH_ES_USERNAME/_PASSWORD or "
             "ICSWATCH_ES_API_KEY, CA file from ICSWATCH_ES_CA_CERTS), or 'none'",
    )
    replay.add_argument(
        "--spool", metavar="DIR",
        help="with an Elasticsearch --store: where alerts wait while the cluster is slow or "
             "down (default: $XDG_DATA_HOME/icswatch/spool)")
    replay.add_argument("--store-events", action="store_true",
                        help="store the events too, not only the alerts (large)")
    replay.add_argument("--sensor-name", metavar="NAME", default=socket.gethostname(),
                        help="the name this run is stored under in the console's sensor "
                             "list (default: the host name)")
    add_rules_commands(commands)
    add_serve_commands(commands)
    return parser


class _ProgressBar:
    """A one-line progress bar on stderr for long files (only on a terminal)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = time.perf_counter()
        self.last = 0.0
        self.shown = False

    def __call__(self, capture: CaptureFile, packets: int) -> None:
        now = time.perf_counter()
        if now - self.last < 0.25:
            return
        self.last = now
        share = capture.position / capture.size if capture.size else 0.0
        filled = int(share * 30)
        rate = packets / (now - self.started) if now > self.started else 0.0
        self.out.write(
            f"\r{capture.path}: [{'#' * filled}{'.' * (30 - filled)}] {share:4.0%} "
            f"{packets} packets {rate:,.0f}/s"
        )
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
             stored: str | None = None) -> None:
    flows = stats.counters.get("flows", 0)
    out.write(
        f"icswatch: {stats.packets} packets, {stats.bytes} bytes, {flows} flows, "
        f"{stats.events} events ({stats.malformed} malformed) in {stats.elapsed:.2f} s, "
        f"{stats.packets_per_second:,.0f} packets/s\n"
    )
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


def _replay(args: argparse.Namespace) -> int:
    packet_filter = None
    if args.filter:
        try:
            packet_filter = compile_filter(args.filter)
        except FilterError as exc:
            raise UsageError(f"--filter: {exc}") from None
    for path in args.files:  # every input readable before any output
        capture = CaptureFile(path)
        try:
            capture.check()
        finally:
            capture.close()
    out: TextIO = sys.stdout
    if args.output:
        try:
            out = open(args.output, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise UsageError(f"cannot write {args.output}: {exc.strerror}") from None
    engine = None if args.no_rules else load_for_replay(args.rules, args.groups, sys.stderr)
    sink = None
    if engine is not None or args.store_events:
        try:
            sink = open_store(args.store, args.spool)
        except UsageError:
            if out is not sys.stdout:
                out.close()
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
    printing = not isinstance(writer, NullWriter)
    write_event: Callable[[IcsEvent], object] | None = writer.event if printing else None
    write_alert: Callable[[Alert], object] | None = writer.alert if printing else None
    inventory = None
    if sink is not None:
        write_alert = _both(write_alert, sink.alert)
        if args.store_events:
            write_event = _both(write_event, sink.event)
        inventory = Inventory()
        write_event = _both(write_event, inventory.observe)
    sensor = Sensor(_consumer(engine, write_event, write_alert), packet_filter=packet_filter)
    bar = None
    if not args.no_progress and sys.stderr.isatty():
        bar = _ProgressBar(sys.stderr)
    reloader = None
    if engine is not None:
        reloader = RuleReloader(engine, args.rules, args.groups, sys.stderr)
        reloader.install_sighup()

    def tick(capture: CaptureFile, packets: int) -> None:
        if bar is not None:
            bar(capture, packets)
        if reloader is not None:
            reloader.maybe_reload()
        if sink is not None:
            sink.tick()

    try:
        stats = sensor.replay(args.files, tick)
    except BaseException:
        if sink is not None:
            sink.abandon()
        raise
    finally:
        if bar is not None:
            bar.done()
        writer.close()
        if out is not sys.stdout:
            out.close()
    if sink is not None:
        try:
            if inventory is not None:
                alerts = sum(raised for raised, _ in engine.statistics().values()) \
                    if engine is not None else 0
                store_inventory(sink, inventory, args.sensor_name, stats, alerts, args.files)
        except BaseException:
            sink.abandon()
            raise
        sink.close()
    if not args.no_summary:
        _summary(stats, engine, sys.stderr, sink.summary() if sink is not None else None)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    # Background parts (the Elasticsearch sink) report in one line each.
    logging.basicConfig(level=logging.WARNING, format="icswatch: %(message)s", stream=sys.stderr)
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            raise UsageError("a command is required: replay, rules, serve or user")
        if args.command == "rules":
            return run_rules_command(args, sys.stdout, sys.stderr)
        if args.command == "serve":
            return run_serve(args, sys.stderr)
        if args.command == "user":
            return run_user_command(args, sys.stdout)
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
