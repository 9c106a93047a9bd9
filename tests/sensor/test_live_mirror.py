"""`icswatch sensor` on a real mirror port gives what a replay of dumpcap's capture gives.

Three network namespaces: ``iw-master`` (10.77.0.1) and ``iw-plc``
(10.77.0.2) joined by a veth pair, and ``iw-mon`` holding the monitor end of
a second veth pair whose other end is in ``iw-plc``. tc mirrors every
packet entering and leaving the plc's port onto that pair (``mirred egress
mirror``), as a switch's SPAN port would. In ``iw-mon`` the sensor and
dumpcap capture the monitor interface at the same time while a pymodbus
client in ``iw-master`` reads, writes and forces the pymodbus server in
``iw-plc`` into listen-only mode (ICSW-MODBUS-002). The sensor's JSON lines
must equal those of ``icswatch replay`` on dumpcap's file, line for line.

Needs root, ``ip`` and ``tc`` (iproute2), dumpcap and pymodbus. Skipped
without them, except in CI (``CI`` set): there, as root with ``ip`` and
``tc``, anything missing fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRAFFIC = Path(__file__).with_name("live_traffic.py")
NAMESPACES = ("iw-master", "iw-plc", "iw-mon")
MONITOR = "iwmon0"
MASTER_IP, PLC_IP = "10.77.0.1", "10.77.0.2"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"CI runs the live-capture test as root with ip and tc: {reason}",
                    pytrace=False)
    pytest.skip(reason)


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=10)


def _ns(namespace: str, *command: str) -> list[str]:
    return ["ip", "netns", "exec", namespace, *command]


def _delete_namespaces() -> None:
    for namespace in NAMESPACES:  # deleting a namespace deletes its veth ends
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=10)


def _build_mirror_port() -> None:
    for namespace in NAMESPACES:
        _run("ip", "netns", "add", namespace)
        for key in ("all", "default"):  # no IPv6 chatter (router solicitations, MLD)
            _run(*_ns(namespace, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1"))
        _run(*_ns(namespace, "ip", "link", "set", "lo", "up"))
    _run("ip", "link", "add", "iwm0", "netns", "iw-master", "type", "veth",
         "peer", "name", "iwp0", "netns", "iw-plc")
    _run("ip", "link", "add", "iwmir0", "netns", "iw-plc", "type", "veth",
         "peer", "name", MONITOR, "netns", "iw-mon")
    _run(*_ns("iw-master", "ip", "addr", "add", f"{MASTER_IP}/24", "dev", "iwm0"))
    _run(*_ns("iw-plc", "ip", "addr", "add", f"{PLC_IP}/24", "dev", "iwp0"))
    _run(*_ns("iw-master", "ip", "link", "set", "iwm0", "up"))
    _run(*_ns("iw-plc", "ip", "link", "set", "iwp0", "up"))
    _run(*_ns("iw-plc", "ip", "link", "set", "iwmir0", "up"))
    _run(*_ns("iw-mon", "ip", "link", "set", MONITOR, "up"))
    # The SPAN port: both directions of the plc's port copied to the monitor pair.
    _run(*_ns("iw-plc", "tc", "qdisc", "add", "dev", "iwp0", "clsact"))
    # u32 matching everything: matchall (cls_matchall) is not in every kernel.
    for direction in ("ingress", "egress"):
        _run(*_ns("iw-plc", "tc", "filter", "add", "dev", "iwp0", direction, "protocol", "all",
                  "u32", "match", "u32", "0", "0",
                  "action", "mirred", "egress", "mirror", "dev", "iwmir0"))


@pytest.fixture
def mirror_port() -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, veth, tc and a packet socket)")
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs iproute2: {', '.join(missing)} not found")
    if shutil.which("dumpcap") is None:
        _unavailable("dumpcap not found (apt-get install tshark)")
    try:
        import pymodbus  # noqa: F401
    except ImportError:
        _unavailable("pymodbus not installed (pip install -e '.[test]')")
    _delete_namespaces()  # a run killed before its cleanup
    try:
        try:
            _build_mirror_port()
        except subprocess.CalledProcessError as exc:
            stderr = exc.stderr.decode(errors="replace").strip()
            _unavailable(f"cannot build the mirror port: {' '.join(exc.cmd)}: {stderr}")
        yield
    finally:
        _delete_namespaces()


def _wait_for(path: Path, text: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"{what} did not start: {path.read_text(errors='replace')}")


def _start(command: Sequence[str], stderr: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(stderr, "wb") as err:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=err)


def _stop(process: subprocess.Popen[bytes], signum: int = signal.SIGTERM) -> int:
    if process.poll() is None:
        process.send_signal(signum)
    try:
        return process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def test_live_capture_equals_replay_of_the_same_traffic(
    mirror_port: None, tmp_path: Path
) -> None:
    live = tmp_path / "live.jsonl"
    pcap = tmp_path / "mirror.pcapng"
    replayed = tmp_path / "replay.jsonl"
    rules = str(ROOT / "rules")
    python = sys.executable
    common = ["--format", "jsonl", "--store", "none", "--rules", rules, "--no-progress"]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        sensor = _start(_ns("iw-mon", python, "-m", "console.cli", "sensor",
                            "--interface", MONITOR, "--duration", "25", "-o", str(live),
                            *common), tmp_path / "sensor.err")
        processes.append(sensor)
        dumpcap = _start(_ns("iw-mon", "dumpcap", "-q", "-i", MONITOR, "-w", str(pcap)),
                         tmp_path / "dumpcap.err")
        processes.append(dumpcap)
        server = _start(_ns("iw-plc", python, str(TRAFFIC), "server", PLC_IP),
                        tmp_path / "server.err")
        processes.append(server)
        _wait_for(tmp_path / "sensor.err", "capturing on", sensor, "the sensor")
        _wait_for(tmp_path / "dumpcap.err", "Capturing on", dumpcap, "dumpcap")
        assert server.stdout is not None
        assert server.stdout.readline().strip() == b"ready", (
            (tmp_path / "server.err").read_text())
        time.sleep(0.3)  # dumpcap reports before its ring is mapped

        client = subprocess.run(
            _ns("iw-master", python, str(TRAFFIC), "client", PLC_IP),
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True, timeout=20,
        )
        assert client.returncode == 0, client.stderr.decode(errors="replace")
        _stop(server, signal.SIGKILL)  # no goodbye traffic: the connection is closed
        time.sleep(0.5)  # the last packets reach both captures
        assert _stop(sensor) == 0, (tmp_path / "sensor.err").read_text()
        assert _stop(dumpcap, signal.SIGINT) == 0, (tmp_path / "dumpcap.err").read_text()
    finally:
        for process in processes:
            _stop(process, signal.SIGKILL)

    summary = (tmp_path / "sensor.err").read_text()
    assert "kernel" in summary and "0 dropped" in summary, summary
    replay = subprocess.run(
        [python, "-m", "console.cli", "replay", str(pcap), "-o", str(replayed), *common],
        cwd=ROOT, capture_output=True, timeout=30,
    )
    assert replay.returncode == 0, replay.stderr.decode(errors="replace")
    # The same packets, counted alike: the sensor's first line equals the replay's
    # but for the time taken.
    live_packets = summary.split("capturing on")[1].split(" packets,")[0].split()[-1]
    replay_packets = replay.stderr.decode().split(" packets,")[0].split()[-1]
    assert live_packets == replay_packets, (summary, replay.stderr)

    documents = [json.loads(line) for line in live.read_text().splitlines()]
    replay_documents = [json.loads(line) for line in replayed.read_text().splitlines()]
    kinds = [doc["event"]["kind"] for doc in documents]
    assert kinds.count("event") >= 20, kinds
    rules_raised = {doc["rule"]["id"] for doc in documents if doc["event"]["kind"] == "alert"}
    assert "ICSW-MODBUS-002" in rules_raised, rules_raised
    assert len(documents) == len(replay_documents)
    for number, (ours, theirs) in enumerate(zip(documents, replay_documents, strict=True)):
        if ours["event"]["kind"] == "alert":
            assert ours["event"].pop("id") and theirs["event"].pop("id")
        differences = _differences(ours, theirs, "")
        assert not differences, f"record {number}: {differences}\n{ours}\n{theirs}"


# Each packet socket stamps a packet when the kernel hands it over: the
# sensor's socket and dumpcap's ring get the same packet microseconds apart.
# These fields, and an alert's id (a hash of its first event's time), may
# differ by that much; everything else must be equal.
TIMESTAMPS = {"@timestamp", "start", "end"}
TOLERANCE = 0.002


def _differences(ours: object, theirs: object, path: str) -> list[str]:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        if ours.keys() != theirs.keys():
            return [f"{path}: keys {sorted(ours)} != {sorted(theirs)}"]
        found: list[str] = []
        for key in ours:
            where = f"{path}.{key}"
            if key in TIMESTAMPS and isinstance(ours[key], str):
                if abs(_seconds(ours[key]) - _seconds(theirs[key])) > TOLERANCE:
                    found.append(f"{where}: {ours[key]} != {theirs[key]}")
            elif key == "response_time":
                if abs(float(ours[key]) - float(theirs[key])) > 2 * TOLERANCE:
                    found.append(f"{where}: {ours[key]} != {theirs[key]}")
            else:
                found.extend(_differences(ours[key], theirs[key], where))
        return found
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        return [found for index, (a, b) in enumerate(zip(ours, theirs, strict=True))
                for found in _differences(a, b, f"{path}[{index}]")]
    return [] if ours == theirs else [f"{path}: {ours!r} != {theirs!r}"]


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
