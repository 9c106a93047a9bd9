"""How fast the durable spool (console/spool.py) appends and drains.

    python bench/spool_rates.py [--records 100000] [--batch 500] [--dir DIR] [--no-fsync]

Alert-sized records (an ECS alert document of about 2 KB of JSON) are
appended in batches, one fsync per batch as the Elasticsearch sink does,
then drained with peek + ack (one atomic cursor write per batch). Prints
records/s and MB/s (JSON bytes) for:
  - append                     (encode + frame + write + fsync)
  - reopen                     (the scan that checks every pending record)
  - drain, payloads only       (what a sink forwarding raw JSON pays)
  - drain, records decoded     (peek + json.loads + ack)
  - append and drain at once   (a producer thread and a drainer thread)
and the JSON encoding cost alone, to show how much of append is the disk.
The spool lives in a temporary directory under DIR (default: the system
temporary directory), so put DIR on the disk you mean to measure. Never run
by CI as a pass/fail test: figures depend on the machine and its disk.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from console.spool import Spool, SpoolFull

MB = 1e6


def alert(number: int) -> dict[str, Any]:
    """An alert document shaped like `detectors.alert.alert_document` output."""
    return {
        "@timestamp": f"2024-05-01T10:{number // 60 % 60:02d}:{number % 60:02d}.123456Z",
        "event": {"id": f"{number:016x}c0ffee{number:016x}", "kind": "alert",
                  "category": ["intrusion_detection"], "type": ["info"], "severity": 73,
                  "dataset": "icswatch.alert", "module": "icswatch"},
        "rule": {"id": "ICS-MODBUS-0007", "name": "Modbus write to a holding register block "
                 "outside the engineering window", "ruleset": "builtin-modbus",
                 "version": "3", "category": "unauthorized-command"},
        "threat": {"framework": "MITRE ATT&CK for ICS",
                   "technique": {"id": ["T0855", "T0836"],
                                 "name": ["Unauthorized Command Message", "Modify Parameter"]},
                   "tactic": {"id": ["TA0106"], "name": ["Impair Process Control"]}},
        "source": {"ip": "10.20.30.41", "port": 50212, "mac": "00:1b:1b:4e:12:9a"},
        "destination": {"ip": "10.20.30.5", "port": 502, "mac": "00:0e:8c:ab:cd:ef"},
        "network": {"protocol": "modbus", "transport": "tcp",
                    "community_id": "1:LQU9qZlK+B5F3KDmev6m5PMibrg="},
        "observer": {"name": "sensor-plant-a-01", "type": "ids", "vendor": "icswatch"},
        "organization": {"id": "ent-0042", "name": "某某水务集团有限公司"},
        "ics": {
            "alert": {"severity": "high", "status": "new", "province": "zj",
                      "events": [f"{number:016x}{k:04x}" for k in range(5)],
                      "assets": ["10.20.30.5", "10.20.30.41"]},
            "modbus": {"trans_id": number % 65536, "unit_id": 1, "func_code": 16,
                       "reference_num": 40100, "word_cnt": 12,
                       "register_values": [number % 997 + k for k in range(12)]},
        },
        "message": ("10.20.30.41 wrote 12 holding registers from 40100 on unit 1 of 10.20.30.5 "
                    "outside the engineering window (Mon-Fri 08:00-17:00); the last write from "
                    "this source was 41 days ago. 写入保持寄存器, 超出工程维护时间窗口。"
                    " Setpoints in this block drive the chlorine dosing pump; check the change "
                    "against the work order before acknowledging."),
        "labels": {"site": "plant-a", "zone": "level-1", "line": "dosing"},
    }


def rate(count: int, nbytes: int, seconds: float) -> str:
    return f"{count / seconds:>10,.0f} records/s  {nbytes / seconds / MB:>7.1f} MB/s"


def append_all(spool: Spool, batches: list[list[dict[str, Any]]]) -> list[float]:
    """Append every batch; the latency of each append call, in seconds."""
    latencies = []
    for batch in batches:
        started = time.perf_counter()
        spool.append(batch)
        latencies.append(time.perf_counter() - started)
    return latencies


def drain_all(spool: Spool, batch: int, *, decode: bool) -> int:
    count = 0
    while True:
        peeked = spool.peek(batch, 64 * 1024 * 1024)
        if not peeked.payloads:
            return count
        if decode:
            count += len(peeked.records)
        else:
            count += len(peeked.payloads)
        spool.ack(peeked)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--no-fsync", action="store_true")
    args = parser.parse_args(argv)
    fsync = not args.no_fsync

    documents = [alert(n) for n in range(args.records)]
    batches = [documents[i:i + args.batch] for i in range(0, len(documents), args.batch)]
    encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    started = time.perf_counter()
    nbytes = sum(len(encode(d).encode()) for d in documents)
    encoding = time.perf_counter() - started
    print(f"{args.records:,} records of {nbytes / args.records:,.0f} bytes of JSON on average, "
          f"{nbytes / MB:,.0f} MB; batches of {args.batch}; fsync {'on' if fsync else 'off'}")
    print(f"  json encoding alone      {rate(args.records, nbytes, encoding)}")

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="spool-bench-") as temp:
        directory = Path(temp) / "spool"
        with Spool(directory, max_bytes=4 << 30, fsync=fsync) as spool:
            started = time.perf_counter()
            latencies = append_all(spool, batches)
            seconds = time.perf_counter() - started
            segments = spool.stats.segments
        print(f"  append                   {rate(args.records, nbytes, seconds)}"
              f"  ({len(batches) / seconds:,.0f} batches/s; per batch p50 "
              f"{statistics.median(latencies) * 1e3:.1f} ms, max {max(latencies) * 1e3:.1f} ms; "
              f"{segments} segment files)")

        started = time.perf_counter()
        spool = Spool(directory, max_bytes=4 << 30, fsync=fsync)
        seconds = time.perf_counter() - started
        print(f"  reopen (checks it all)   {rate(spool.stats.records_pending, nbytes, seconds)}"
              f"  ({seconds:.2f} s)")
        half = batches[: len(batches) // 2]
        half_bytes = sum(len(encode(d).encode()) for b in half for d in b)
        with spool:
            started = time.perf_counter()
            count = drain_all(spool, args.batch, decode=False)
            seconds = time.perf_counter() - started
            print(f"  drain, payloads only     {rate(count, nbytes, seconds)}")
            append_all(spool, half)
            started = time.perf_counter()
            count = drain_all(spool, args.batch, decode=True)
            seconds = time.perf_counter() - started
            print(f"  drain, records decoded   {rate(count, half_bytes, seconds)}")

        with Spool(Path(temp) / "both", max_bytes=64 << 20, fsync=fsync) as spool:
            done = threading.Event()

            def produce() -> None:
                for batch in batches:
                    while True:
                        try:
                            spool.append(batch)
                            break
                        except SpoolFull:
                            time.sleep(0.001)
                done.set()

            producer = threading.Thread(target=produce)
            started = time.perf_counter()
            producer.start()
            drained = 0
            while drained < args.records:
                peeked = spool.peek(args.batch, 64 * 1024 * 1024)
                if not peeked.payloads:
                    time.sleep(0.0005)
                    continue
                drained += len(peeked.payloads)
                spool.ack(peeked)
            producer.join()
            seconds = time.perf_counter() - started
            print(f"  append and drain at once {rate(args.records, nbytes, seconds)}"
                  f"  (64 MB bound, {spool.stats.full_rejections} full refusals)")


if __name__ == "__main__":
    main()
