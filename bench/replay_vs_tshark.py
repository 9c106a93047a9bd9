"""Replay throughput and peak memory of icswatch against tshark on the same capture.

    python bench/replay_vs_tshark.py [--packets 200000] [--capture FILE] [--repeat 3]

Builds a Modbus capture (bench/make_modbus_capture.py) unless one is given,
then times, best of N runs, each as a separate process:
  - tshark -r FILE -T fields -e modbus.func_code            (the reference)
  - icswatch replay --format none --no-rules FILE           (full decode)
  - icswatch replay --format none FILE                      (decode + built-in rules)
  - icswatch replay --format jsonl FILE > /dev/null         (decode + rules + ECS JSON)
and prints packets/s, peak RSS, the ratio to tshark and the cost of the
rules over decode alone. Never run by CI as a
pass/fail test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_modbus_capture import build


def _count_packets(path: Path) -> int:
    out = subprocess.run(["capinfos", "-c", "-M", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return int(out.strip().splitlines()[-1].split()[-1])


def _run(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process."""
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
    return elapsed, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description="icswatch vs tshark replay benchmark")
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--capture", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("tshark") is None:
        raise SystemExit("tshark is not installed (apt-get install tshark)")
    icswatch = shutil.which("icswatch") or "icswatch"
    with tempfile.TemporaryDirectory() as tmp:
        capture = args.capture
        if capture is None:
            capture = Path(tmp) / "modbus-bench.pcap"
            build(capture, args.packets, 64)
        packets = _count_packets(capture)
        base = [icswatch, "replay", "--no-summary", "--no-progress"]
        runs: dict[str, list[str]] = {
            "tshark -T fields -e modbus.func_code": [
                "tshark", "-n", "-r", str(capture), "-T", "fields", "-e", "modbus.func_code"],
            "icswatch decode only (--no-rules)": [
                *base, "--format", "none", "--no-rules", str(capture)],
            "icswatch decode + built-in rules": [*base, "--format", "none", str(capture)],
            "icswatch decode + rules + jsonl": [*base, "--format", "jsonl", str(capture)],
        }
        results: dict[str, tuple[float, float]] = {}
        for name, command in runs.items():
            best = min((_run(command) for _ in range(args.repeat)), key=lambda r: r[0])
            results[name] = best
        reference = packets / results["tshark -T fields -e modbus.func_code"][0]
        print(f"capture: {capture} ({packets} packets, {capture.stat().st_size} bytes)")
        print(f"{'run':<42} {'seconds':>8} {'packets/s':>11} {'peak MiB':>9} {'x tshark':>9}")
        for name, (seconds, rss) in results.items():
            rate = packets / seconds
            print(f"{name:<42} {seconds:8.2f} {rate:11,.0f} {rss:9.1f} {rate / reference:9.2f}")
        decode = results["icswatch decode only (--no-rules)"][0]
        rules = results["icswatch decode + built-in rules"][0]
        print(f"rules cost over decode alone: {(rules / decode - 1) * 100:+.1f} %")


if __name__ == "__main__":
    main()
