"""Record packet captures with ``dumpcap`` while some traffic is being generated.

This helper is protocol-agnostic: the Modbus recorder uses it today, and the
DNP3, IEC 60870-5-104 and S7 recorders are meant to reuse it.  Typical use::

    from pcaps.record.capture import record

    with record(Path("pcaps/foo/bar.pcapng"), "tcp port 20000"):
        generate_some_traffic()

or, when the traffic (and the server answering it) runs on the current
asyncio event loop, the asynchronous twin :func:`arecord`, which keeps the
loop running while it waits for the last packets::

    async with arecord(Path("pcaps/foo/bar.pcapng"), "tcp port 20000"):
        await generate_some_traffic()

The output format follows the file name: ``.pcap`` gives classic libpcap
(``dumpcap -P``), anything else gives pcapng.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

__all__ = ["Capture", "CaptureError", "arecord", "record"]

#: Seconds to wait for dumpcap to report that it is capturing.
START_TIMEOUT = 10.0
#: Extra pause after dumpcap reported "Capturing on", before traffic starts.
START_SETTLE = 0.2
#: Seconds to keep capturing after the traffic generator returned (last ACKs, FINs).
STOP_SETTLE = 0.5
#: Seconds to wait for dumpcap to exit after SIGINT before terminating it.
STOP_TIMEOUT = 5.0


class CaptureError(RuntimeError):
    """dumpcap is missing, failed to start, or failed while capturing."""


def find_dumpcap(dumpcap: str | None = None) -> str:
    """Return the path of the ``dumpcap`` executable or raise :class:`CaptureError`.

    Args:
        dumpcap: explicit executable to use; defaults to ``$DUMPCAP`` or ``dumpcap`` on PATH.
    """
    candidate = dumpcap or os.environ.get("DUMPCAP") or "dumpcap"
    found = shutil.which(candidate)
    if found is None:
        raise CaptureError(
            f"dumpcap executable {candidate!r} not found on PATH. Install Wireshark's "
            "capture tool (Debian/Ubuntu: `apt-get install wireshark-common` or `tshark`) "
            "or point $DUMPCAP at it."
        )
    return found


class Capture:
    """One running ``dumpcap`` process writing a single capture file.

    Prefer the :func:`record` / :func:`arecord` context managers; this class is
    the shared machinery behind them.
    """

    def __init__(
        self,
        path: Path,
        bpf_filter: str,
        interface: str = "lo",
        *,
        dumpcap: str | None = None,
    ) -> None:
        """Prepare (but do not start) a capture of ``interface`` into ``path``.

        Args:
            path: output file; ``.pcap`` selects libpcap format, anything else pcapng.
            bpf_filter: capture (BPF) filter, e.g. ``"tcp port 502"``.
            interface: capture interface name.
            dumpcap: explicit dumpcap executable (default: found on PATH).
        """
        self.path = Path(path)
        self.bpf_filter = bpf_filter
        self.interface = interface
        self.executable = find_dumpcap(dumpcap)
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: list[str] = []
        self._capturing = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def command(self) -> list[str]:
        """The dumpcap command line used for this capture."""
        cmd = [self.executable, "-i", self.interface, "-f", self.bpf_filter, "-q"]
        if self.path.suffix.lower() == ".pcap":
            cmd.append("-P")
        cmd += ["-w", str(self.path)]
        return cmd

    @property
    def stderr(self) -> str:
        """Everything dumpcap wrote to stderr so far."""
        return "".join(self._stderr)

    def _read_stderr(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stderr is not None
        for line in proc.stderr:
            self._stderr.append(line)
            if line.startswith("Capturing on"):
                self._capturing.set()

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start dumpcap and block until it is really capturing.

        Raises:
            CaptureError: dumpcap exited early or did not start capturing in time.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        self._proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        # Wait for "Capturing on ..." and for the output file.  dumpcap prints that
        # line just before it opens the interface and compiles the filter, so a bad
        # interface or filter makes it exit right afterwards: keep watching the
        # process until the file exists, then pause briefly so the BPF filter is
        # surely attached before the first packet of interest (the SYN).
        while not (self._capturing.is_set() and self.path.exists()):
            if self._proc.poll() is not None:
                self._reader.join(1.0)
                raise CaptureError(
                    f"dumpcap exited with status {self._proc.returncode} before capturing:\n"
                    f"  {shlex.join(self.command)}\n{self.stderr}"
                )
            if time.monotonic() > deadline:
                self._kill()
                raise CaptureError(
                    f"dumpcap did not start capturing within {timeout} s:\n"
                    f"  {shlex.join(self.command)}\n{self.stderr}"
                )
            time.sleep(0.05)
        time.sleep(START_SETTLE)
        if self._proc.poll() is not None:
            self._reader.join(1.0)
            raise CaptureError(
                f"dumpcap exited with status {self._proc.returncode} right after starting:\n"
                f"  {shlex.join(self.command)}\n{self.stderr}"
            )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop dumpcap with SIGINT (terminate/kill as fallbacks) and check the result.

        Raises:
            CaptureError: dumpcap failed or left no output file.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill()
        if self._reader is not None:
            self._reader.join(1.0)
        self._proc = None
        if proc.returncode not in (0, -signal.SIGINT):
            raise CaptureError(f"dumpcap failed with status {proc.returncode}:\n{self.stderr}")
        if not self.path.exists():
            raise CaptureError(f"dumpcap left no capture file at {self.path}:\n{self.stderr}")
        # dumpcap creates 0600 files; captures are meant to be shared and committed.
        self.path.chmod(0o644)

    def _kill(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def record(
    path: Path,
    bpf_filter: str,
    interface: str = "lo",
    *,
    settle: float = STOP_SETTLE,
    dumpcap: str | None = None,
) -> Iterator[Capture]:
    """Capture ``interface`` into ``path`` while the ``with`` body runs.

    dumpcap is started and confirmed to be capturing before the body runs.
    After the body, the capture keeps running for ``settle`` seconds (with this
    thread sleeping) so the last segments get recorded, then dumpcap is stopped.
    If whatever answers the traffic runs on this thread's asyncio loop, use
    :func:`arecord` instead so that the loop keeps running during the pause.

    Args:
        path: output file; ``.pcap`` selects libpcap format, anything else pcapng.
        bpf_filter: capture (BPF) filter, e.g. ``"tcp port 502"``.
        interface: capture interface name (default loopback).
        settle: seconds to keep capturing after the body finished.
        dumpcap: explicit dumpcap executable (default: found on PATH).

    Raises:
        CaptureError: dumpcap is missing, could not start, or failed.
    """
    capture = Capture(path, bpf_filter, interface, dumpcap=dumpcap)
    capture.start()
    try:
        yield capture
        time.sleep(settle)
    finally:
        capture.stop()


@asynccontextmanager
async def arecord(
    path: Path,
    bpf_filter: str,
    interface: str = "lo",
    *,
    settle: float = STOP_SETTLE,
    dumpcap: str | None = None,
) -> AsyncIterator[Capture]:
    """Asynchronous twin of :func:`record` that never blocks the running event loop.

    Starting and stopping dumpcap happen in a worker thread and the final pause
    is an ``asyncio.sleep``, so servers and clients on the same loop keep
    exchanging packets (e.g. the FIN/ACK of a connection close) meanwhile.
    """
    capture = Capture(path, bpf_filter, interface, dumpcap=dumpcap)
    await asyncio.to_thread(capture.start)
    try:
        yield capture
        await asyncio.sleep(settle)
    finally:
        await asyncio.to_thread(capture.stop)


def recorder_main(
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str,
    only_help: str,
    record_all: Callable[[Path, Sequence[str]], Awaitable[object]],
) -> int:
    """The command line every recorder shares: ``--out-dir``, ``--only``,
    ``-v``; pymodbus's own logging (deprecations, the errors a scenario
    provokes on purpose) is silenced."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path("pcaps/modbus"),
        help="directory for the capture files (default: %(default)s)",
    )
    parser.add_argument("--only", nargs="*", default=(), metavar="NAME", help=only_help)
    parser.add_argument("-v", "--verbose", action="store_true", help="log every response")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    asyncio.run(record_all(args.out_dir, args.only))  # type: ignore[arg-type]
    return 0
