"""Replay throughput and peak memory of icswatch against tshark on the same capture.

    python bench/replay_vs_tshark.py [--protocol NAME|all] [--packets 200000]
                                     [--capture FILE] [--repeat 3]

Builds a capture of the protocol (bench/make_<protocol>_capture.py; Modbus
by default, ``all`` runs every protocol in turn and ends with a table of the
ratios) unless one is given, then times, best of N runs, each as a separate
process:
  - tshark -r FILE -T fields -e <a field of the protocol>   (the reference)
  - icswatch replay --format none --no-rules FILE           (full decode)
  - icswatch replay --format none FILE                      (decode + built-in rules)
  - icswatch replay --format jsonl FILE > /dev/null         (decode + rules + ECS JSON)
  - icswatch replay --format none --store DB FILE           (decode + rules + SQLite store)
(all but the last with --store none, so the rules' cost is measured alone)
and prints packets/s, peak RSS, the ratio to tshark and the cost of the
rules over decode alone. Never run by CI as a
pass/fail test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# The tshark field each protocol's reference run prints (one per PDU).
TSHARK_FIELDS = {
    "modbus": "modbus.func_code", "dnp3": "dnp3.al.func", "enip": "enip.command",
    "iec104": "iec60870_asdu.typeid", "s7comm": "s7comm.header.rosctr",
}


def _count_packets(path: Path) -> int:
    out = subprocess.run(["capinfos", "-c", "-M", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return int(out.strip().splitlines()[-1].split()[-1])


def _run(command: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MiB) of one
    child process. CPU time is the steadier figure on a shared machine."""
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.execvp(command[0], command)
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"{' '.join(command)} failed with status {status}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def bench(protocol: str, capture: Path | None, packets_wanted: int, repeat: int,
          tmp: Path) -> dict[str, tuple[float, float, float]]:
    """Time every run on one protocol's capture; print its table."""
    if capture is None:
        capture = tmp / f"{protocol}-bench.pcap"
        maker = importlib.import_module(f"make_{protocol}_capture")
        maker.build(capture, packets_wanted, 64)
    packets = _count_packets(capture)
    icswatch = shutil.which("icswatch") or "icswatch"
    base = [icswatch, "replay", "--no-summary", "--no-progress", "--store", "none"]
    reference = f"tshark -T fields -e {TSHARK_FIELDS[protocol]}"
    runs: dict[str, list[str]] = {
        reference: ["tshark", "-n", "-r", str(capture), "-T", "fields",
                    "-e", TSHARK_FIELDS[protocol]],
        "icswatch decode only (--no-rules)": [
            *base, "--format", "none", "--no-rules", str(capture)],
        "icswatch decode + built-in rules": [*base, "--format", "none", str(capture)],
        "icswatch decode + rules + jsonl": [*base, "--format", "jsonl", str(capture)],
        "icswatch decode + rules + embedded store": [
            *base[:-2], "--store", str(tmp / f"{protocol}-bench.db"), "--format", "none",
            str(capture)],
    }
    results: dict[str, tuple[float, float, float]] = {}
    for name, command in runs.items():
        samples = [_run(command) for _ in range(repeat)]
        results[name] = (min(r[0] for r in samples), min(r[1] for r in samples),
                         max(r[2] for r in samples))
    tshark_wall = results[reference][0]
    print(f"{protocol}: {capture} ({packets} packets, {capture.stat().st_size} bytes), "
          f"best of {repeat}")
    print(f"{'run':<40} {'wall s':>7} {'cpu s':>7} {'packets/s':>10} {'peak MiB':>9} "
          f"{'x tshark':>9}")
    for name, (wall, cpu, rss) in results.items():
        print(f"{name:<40} {wall:7.2f} {cpu:7.2f} {packets / wall:10,.0f} {rss:9.1f} "
              f"{tshark_wall / wall:9.2f}")
    decode = results["icswatch decode only (--no-rules)"]
    rules = results["icswatch decode + built-in rules"]
    print(f"rules cost over decode alone: wall {(rules[0] / decode[0] - 1) * 100:+.1f} %, "
          f"cpu {(rules[1] / decode[1] - 1) * 100:+.1f} %\n")
    results["(packets)"] = (float(packets), 0.0, 0.0)
    results["(reference)"] = (tshark_wall, 0.0, 0.0)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="icswatch vs tshark replay benchmark")
    parser.add_argument("--protocol", default="modbus", choices=[*TSHARK_FIELDS, "all"])
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--capture", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("tshark") is None:
        raise SystemExit("tshark is not installed (apt-get install tshark)")
    if args.protocol == "all" and args.capture is not None:
        raise SystemExit("--capture needs one --protocol")
    protocols = list(TSHARK_FIELDS) if args.protocol == "all" else [args.protocol]
    with tempfile.TemporaryDirectory() as tmp:
        summary = {protocol: bench(protocol, args.capture, args.packets, args.repeat,
                                   Path(tmp)) for protocol in protocols}
    if len(summary) > 1:
        print(f"{'protocol':<10} {'packets':>8} {'tshark s':>9} {'decode s':>9} "
              f"{'x tshark':>9} {'+rules x':>9}")
        for protocol, results in summary.items():
            reference = results["(reference)"][0]
            decode = results["icswatch decode only (--no-rules)"][0]
            rules = results["icswatch decode + built-in rules"][0]
            print(f"{protocol:<10} {int(results['(packets)'][0]):>8} {reference:9.2f} "
                  f"{decode:9.2f} {reference / decode:9.2f} {reference / rules:9.2f}")


if __name__ == "__main__":
    main()
