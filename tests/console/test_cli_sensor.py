"""`icswatch sensor`: bad usage exits 2 with one line (the live capture
itself is tested on a real mirror port in tests/sensor/test_live_mirror.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def icswatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "console.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_unknown_interface_exits_2_with_one_line() -> None:
    result = icswatch("sensor", "--interface", "icsw-nonesuch0", "--store", "none")
    assert result.returncode == 2
    assert result.stderr == "icswatch: icsw-nonesuch0: no such interface\n"
    assert result.stdout == ""


def test_interface_is_required() -> None:
    result = icswatch("sensor", "--store", "none")
    assert result.returncode == 2
    assert "--interface" in result.stderr and len(result.stderr.splitlines()) == 1


def test_bad_snap_length_and_filter_exit_2() -> None:
    for args in (("--snaplen", "0"), ("--snaplen", "10"), ("--filter", "tcp port")):
        result = icswatch("sensor", "-i", "lo", "--store", "none", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.splitlines()) == 1, result.stderr
