"""A real single-node Elasticsearch for tests and benchmarks.

The node is Elastic's own test build from Maven Central,
``org.elasticsearch.distribution.integ-test-zip:elasticsearch:<version>:zip``
(about 107 MB for 8.19.21). It is fetched once with ``mvn dependency:get``,
unzipped once into ``~/.cache/icswatch/elasticsearch`` (outside the repo) and
run on 127.0.0.1 only, with a 512 MiB heap, as an unprivileged user when we
are root (Elasticsearch refuses to run as root). Only the standard library is
used here, so this works before the ``elasticsearch`` client is installed.

Command line::

    python tests/support/esnode.py fetch        # download + unzip (CI does this first)
    python tests/support/esnode.py run          # start a node, print its URL, run until Ctrl-C

What this build is (8.19.21, checked by hand against a running node)
-------------------------------------------------------------------
``modules/`` holds only four modules: ``apm``, ``transport-netty4``,
``x-pack-core`` and ``x-pack-security``. Everything else in the default
distribution is absent, so:

Works (what the store needs):
  * composable index templates (``PUT/GET/DELETE _index_template/<name>``,
    wildcard delete), component templates, index aliases (``POST _aliases``,
    ``is_write_index``), ``_rollover`` on an alias;
  * ``_bulk`` (send ``Content-Type: application/x-ndjson``), ``_doc``,
    ``_update`` with a partial ``doc``, ``_refresh``, ``_count``, ``_pit``;
  * search with aggregations: ``terms``, ``date_histogram`` (fixed and
    calendar intervals, ``time_zone``), ``composite``, ``cardinality``,
    ``top_hits``, ``filters``, ``range``/``date_range``, ``percentiles``,
    ``significant_terms``, ``rare_terms``, ``ip_prefix``, ``histogram``;
  * field types ``keyword`` (incl. the built-in ``lowercase`` normalizer),
    ``date``, ``ip`` (CIDR term queries), ``long``, ``object``, ``flattened``;
  * ``GET /_nodes/_local`` (gives the version), ``_cluster/health``,
    ``_cat/*``, ``_resolve/index``, ``_license`` (basic);
  * every response carries ``X-Elastic-Product: Elasticsearch``.

Missing (the store must not depend on them, or must degrade):
  * ``GET /`` and ``HEAD /`` answer 405 (the ``rest-root`` module is absent):
    ``Elasticsearch.info()`` fails and ``Elasticsearch.ping()`` returns False
    with the Python client; use :meth:`ElasticsearchNode.version` /
    ``_cluster/health`` instead;
  * data stream REST API (``data-streams`` module): ``PUT/GET/DELETE
    _data_stream/x`` answer 405. Indexing into a name whose template has
    ``"data_stream": {}`` still creates a data stream, but nothing can delete
    it (nor the template that backs it) short of wiping the data directory;
  * ILM (``x-pack-ilm``): ``GET _ilm/status`` answers 405, ``PUT
    _ilm/policy/x`` "no handler found";
  * ``_delete_by_query``, ``_update_by_query``, ``_reindex`` (``reindex``);
  * scripts of any kind (``lang-painless``): scripted updates, runtime fields;
  * ingest processors (``ingest-common``): only ``set_security_user`` exists;
  * ``auto_date_histogram``, ``multi_terms``, ``bucket_sort``
    (``aggregations``/``x-pack-analytics``);
  * field types ``wildcard``, ``match_only_text``, ``constant_keyword``;
    analysis filters such as ``asciifolding`` (``analysis-common``);
  * ES|QL (``_query``), SQL (``_sql``), ``GET /_xpack`` (500).

Settings: ``xpack.security.enabled`` is recognised (the security module is
present) and is set to false. x-pack-core still registers the ``xpack.ml.*`` and
``xpack.watcher.*`` switches, but a setting of an absent module (for example
``ingest.geoip.downloader.enabled``) is unknown and stops the node from booting.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import fcntl
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

DEFAULT_VERSION = "8.19.21"
GROUP_ID = "org.elasticsearch.distribution.integ-test-zip"
ARTIFACT_ID = "elasticsearch"
DEFAULT_CACHE = Path.home() / ".cache" / "icswatch" / "elasticsearch"
RUN_AS_USER = "icswatch-es"
DEFAULT_HEAP = "512m"

_COMPLETE_MARKER = ".icswatch-complete"


class ElasticsearchUnavailable(RuntimeError):
    """A tool the node needs (Java, Maven) is not on this machine."""


class ElasticsearchError(RuntimeError):
    """Fetching, starting or stopping the node failed."""


# --------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class Response:
    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


def http(
    method: str,
    url: str,
    body: Any = None,
    *,
    ndjson: bool = False,
    timeout: float = 30.0,
) -> Response:
    """One HTTP request with urllib; JSON in and out; never raises on 4xx/5xx.

    ``body`` is JSON-encoded, or with ``ndjson=True`` an iterable of objects
    sent one per line (for ``_bulk``). Connection errors do raise (URLError).
    """
    data: bytes | None = None
    headers = {"Accept": "application/json"}
    if ndjson:
        data = "".join(json.dumps(line) + "\n" for line in body).encode()
        headers["Content-Type"] = "application/x-ndjson"
    elif body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with _OPENER.open(request, timeout=timeout) as reply:
            return Response(reply.status, _decode(reply.read()), _lower(reply.headers.items()))
    except urllib.error.HTTPError as error:
        try:
            raw = error.read()
        finally:
            error.close()
        return Response(error.code, _decode(raw), _lower(error.headers.items()))


# The node is on loopback: never go through an http_proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _lower(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


def _decode(raw: bytes) -> Any:
    text = raw.decode("utf-8", "replace")
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return text


# ------------------------------------------------------------------- distribution


def find_java_home() -> Path:
    """ES_JAVA_HOME, else JAVA_HOME, else the JDK behind ``java`` on PATH."""
    for variable in ("ES_JAVA_HOME", "JAVA_HOME"):
        value = os.environ.get(variable)
        if value and (Path(value) / "bin" / "java").is_file():
            return Path(value)
    java = shutil.which("java")
    if java is None:
        raise ElasticsearchUnavailable(
            "Java 17+ is not installed (no `java` on PATH, ES_JAVA_HOME/JAVA_HOME unset)"
        )
    return Path(java).resolve().parent.parent


def maven_repository() -> Path:
    """The local Maven repository (``localRepository`` in settings.xml if set)."""
    settings = Path.home() / ".m2" / "settings.xml"
    if settings.is_file():
        with contextlib.suppress(ET.ParseError):
            for element in ET.parse(settings).getroot().iter():
                if element.tag.rsplit("}", 1)[-1] == "localRepository" and element.text:
                    return Path(element.text.strip()).expanduser()
    return Path.home() / ".m2" / "repository"


def distribution_zip(version: str = DEFAULT_VERSION) -> Path:
    """Where Maven keeps the zip of ``version`` (it may not be there yet)."""
    return (
        maven_repository().joinpath(*GROUP_ID.split("."))
        / ARTIFACT_ID
        / version
        / f"{ARTIFACT_ID}-{version}.zip"
    )


def download(version: str = DEFAULT_VERSION) -> Path:
    """Fetch the zip into the local Maven repository unless it is already there."""
    target = distribution_zip(version)
    if target.is_file():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ElasticsearchUnavailable(
            f"Maven is not installed (no `mvn` on PATH) and {target} is not downloaded"
        )
    artifact = f"{GROUP_ID}:{ARTIFACT_ID}:{version}:zip"
    result = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-U",  # do not trust a cached "not found" from an earlier failed try
            "dependency:get",
            f"-Dartifact={artifact}",
            "-Dtransitive=false",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if result.returncode != 0 or not target.is_file():
        lines = (result.stdout + result.stderr).strip().splitlines()
        output = [line for line in lines if "ERROR" in line][:3] or lines[-15:]
        raise ElasticsearchError(
            f"mvn dependency:get {artifact} failed (exit {result.returncode}):\n"
            + "\n".join(output)
        )
    return target


def ensure_distribution(version: str = DEFAULT_VERSION, cache: Path = DEFAULT_CACHE) -> Path:
    """Download (if needed) and unzip (once) the test build; return its ES home."""
    home = cache / f"elasticsearch-{version}"
    if (home / _COMPLETE_MARKER).is_file():
        return home
    archive = download(version)
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be unzipping the same
        if (home / _COMPLETE_MARKER).is_file():
            return home
        shutil.rmtree(home, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=".unzip-", dir=cache))
        try:
            _extract(archive, staging)
            (staging / home.name).rename(home)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        (home / _COMPLETE_MARKER).write_text(f"{archive}\n")
    return home


def _extract(archive: Path, destination: Path) -> None:
    """Unzip keeping the Unix permission bits (zipfile alone drops them)."""
    with zipfile.ZipFile(archive) as bundle:
        for member in bundle.infolist():
            path = Path(bundle.extract(member, destination))
            mode = (member.external_attr >> 16) & 0o777
            if mode and not member.is_dir():
                path.chmod(mode)


# --------------------------------------------------------------------------- node


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def ensure_user(name: str = RUN_AS_USER) -> pwd.struct_passwd:
    """The unprivileged system user the node runs as; created when missing."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    shell = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
    subprocess.run(
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            shell,
            name,
        ],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(name)


def _others_can_reach(path: Path) -> bool:
    """True if every directory above ``path`` is searchable by any user."""
    return all(parent.stat().st_mode & 0o001 for parent in path.resolve().parents)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


class ElasticsearchNode:
    """One single-node cluster on 127.0.0.1, its files under ``base_dir``.

    ``base_dir`` gets ``config/``, ``data/``, ``logs/`` (``console.log`` is the
    node's output) and ``tmp/``; the ports are picked once and kept across
    restarts, so :attr:`url` does not change and the data persist.
    """

    def __init__(
        self,
        home: Path,
        base_dir: Path,
        port: int | None = None,
        *,
        heap: str = DEFAULT_HEAP,
        settings: Mapping[str, object] | None = None,
        java_home: Path | None = None,
        user: str | None = None,
    ) -> None:
        self.home = Path(home)
        self.base_dir = Path(base_dir)
        self.port = port
        self.heap = heap
        self.extra_settings = dict(settings or {})
        self.java_home = java_home
        # Elasticsearch refuses to run as root.
        self.user = user if user is not None else (RUN_AS_USER if os.geteuid() == 0 else None)
        self.transport_port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.start_seconds: float | None = None

    # -- files

    @property
    def config_dir(self) -> Path:
        return self.base_dir / "config"

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def logs_dir(self) -> Path:
        return self.base_dir / "logs"

    @property
    def console_log(self) -> Path:
        return self.logs_dir / "console.log"

    @property
    def url(self) -> str:
        if self.port is None:
            raise ElasticsearchError("the node has no port yet; start() it first")
        return f"http://127.0.0.1:{self.port}"

    def settings(self) -> dict[str, object]:
        """The elasticsearch.yml this node runs with."""
        assert self.port is not None and self.transport_port is not None
        values: dict[str, object] = {
            "cluster.name": "icswatch-test",
            "node.name": "icswatch-test-node",
            "discovery.type": "single-node",
            "network.host": "127.0.0.1",
            "http.port": self.port,
            "transport.port": self.transport_port,
            "path.data": str(self.data_dir),
            "path.logs": str(self.logs_dir),
            "action.destructive_requires_name": False,
            "cluster.routing.allocation.disk.threshold_enabled": False,
        }
        # Unknown settings stop the node: only switch security off if it exists.
        if (self.home / "modules" / "x-pack-security").is_dir():
            values["xpack.security.enabled"] = False
        values.update(self.extra_settings)
        # None removes a default (a cluster node drops discovery.type).
        return {key: value for key, value in values.items() if value is not None}

    def _home_for_run(self) -> Path:
        """The ES home the node user can read.

        The cache lives under root's home (mode 0700) when we are root, which
        the node user cannot enter: then it gets a hard-linked copy (no extra
        disk, a copy across file systems) inside ``base_dir``.
        """
        if self.user is None or _others_can_reach(self.home):
            return self.home
        return self.base_dir / "dist"

    def _prepare(self) -> Path:
        if self.user is not None and not _others_can_reach(self.base_dir):
            raise ElasticsearchError(
                f"{self.base_dir} is inside a directory user {self.user} cannot enter; "
                "put the node in a world-searchable place such as tempfile.mkdtemp()"
            )
        home = self._home_for_run()
        if home != self.home and not (home / "bin" / "elasticsearch").is_file():
            shutil.rmtree(home, ignore_errors=True)
            shutil.copytree(self.home, home, copy_function=_link_or_copy)
        for folder in (self.data_dir, self.logs_dir, self.base_dir / "tmp", self.config_dir):
            folder.mkdir(parents=True, exist_ok=True)
        for item in (self.home / "config").iterdir():
            target = self.config_dir / item.name
            if item.is_dir():
                shutil.copytree(item, target, dirs_exist_ok=True)
            elif not target.exists():
                shutil.copy2(item, target)
        lines = [f"{key}: {json.dumps(value)}" for key, value in self.settings().items()]
        (self.config_dir / "elasticsearch.yml").write_text("\n".join(lines) + "\n")
        if self.user is not None:
            account = ensure_user(self.user)
            for path in self._walk_own_files():
                os.chown(path, account.pw_uid, account.pw_gid, follow_symlinks=False)
        return home

    def _walk_own_files(self) -> Iterator[Path]:
        yield self.base_dir
        for name in ("config", "data", "logs", "tmp"):
            root = self.base_dir / name
            yield root
            for parent, dirs, files in os.walk(root):
                for entry in (*dirs, *files):
                    yield Path(parent) / entry

    # -- lifecycle

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 120) -> None:
        """Start the node and wait (bounded) until the cluster is green/yellow."""
        if self.running:
            return
        began = time.monotonic()
        self.launch()
        self.wait_until_started(began + timeout)

    def wait_until_started(self, deadline: float) -> None:
        """Wait for a `launch`ed node (the nodes of a cluster are launched
        together, then waited for: none is healthy before a quorum forms)."""
        began = time.monotonic()
        try:
            self._wait_until_healthy(deadline)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began

    def launch(self) -> None:
        """Start the node's process without waiting for it."""
        if self.running:
            return
        java_home = self.java_home or find_java_home()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port = free_port()
        if self.transport_port is None:
            self.transport_port = free_port()
        home = self._prepare()
        environment = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(self.base_dir / "tmp"),
            "ES_JAVA_HOME": str(java_home),
            "ES_PATH_CONF": str(self.config_dir),
            "ES_TMPDIR": str(self.base_dir / "tmp"),
            "ES_JAVA_OPTS": f"-Xms{self.heap} -Xmx{self.heap}",
        }
        account = pwd.getpwnam(self.user) if self.user is not None else None
        with open(self.console_log, "ab") as output:
            output.write(f"---- start {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
            output.flush()
            self.process = subprocess.Popen(
                [str(home / "bin" / "elasticsearch")],
                cwd=self.logs_dir,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=account.pw_uid if account else None,
                group=account.pw_gid if account else None,
                extra_groups=[] if account else None,
            )
        atexit.register(self.stop)

    def _wait_until_healthy(self, deadline: float) -> None:
        last = "no answer yet"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ElasticsearchError(
                    f"Elasticsearch exited with code {self.process.returncode} while "
                    f"starting; last lines of {self.console_log}:\n{self.log_tail()}"
                )
            try:
                reply = http("GET", f"{self.url}/_cluster/health", timeout=2)
                status = reply.body.get("status") if isinstance(reply.body, dict) else None
                if reply.status == 200 and status in ("green", "yellow"):
                    return
                if reply.status == 401 and self.extra_settings.get("xpack.security.enabled"):
                    return  # up, and asking for credentials as configured
                last = f"HTTP {reply.status}: {str(reply.body)[:200]}"
            except (OSError, urllib.error.URLError) as error:
                last = str(error)
            time.sleep(0.25)
        raise ElasticsearchError(
            f"Elasticsearch did not become healthy at {self.url} in time ({last}); "
            f"last lines of {self.console_log}:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the node's process group, wait, then SIGKILL what is left."""
        atexit.unregister(self.stop)
        process, self.process = self.process, None
        if process is None:
            return
        group = process.pid  # start_new_session: the launcher leads the group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
        while time.monotonic() < deadline and _group_alive(group):
            time.sleep(0.1)
        if _group_alive(group):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)

    def restart(self, timeout: float = 120) -> None:
        self.stop()
        self.start(timeout=timeout)

    def wipe_data(self, timeout: float = 120) -> None:
        """Stop, delete every index and cluster setting, start again (same URL).

        The only way to drop a data stream on this build (no _data_stream API).
        """
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.start(timeout=timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- looking at it

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return "(no log yet)"
        return "\n".join(text.splitlines()[-lines:])

    def version(self) -> str:
        """The node's version (GET / answers 405 on this build: no rest-root)."""
        reply = http("GET", f"{self.url}/")
        if reply.status == 200 and isinstance(reply.body, dict):
            return str(reply.body["version"]["number"])
        reply = http("GET", f"{self.url}/_nodes/_local?filter_path=nodes.*.version")
        if reply.status != 200:
            raise ElasticsearchError(f"cannot read the version: {reply.status} {reply.body}")
        (node,) = reply.body["nodes"].values()
        return str(node["version"])

    def rss_bytes(self) -> int:
        """Resident memory of all the node's processes (launcher + server), Linux."""
        if self.process is None:
            return 0
        total = 0
        for pid in _group_members(self.process.pid):
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        return total


def _group_members(group: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) == group:
                members.append(int(entry.name))
    return members


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------------- CLI


def _fetch(version: str) -> int:
    archive = distribution_zip(version)
    if archive.is_file():
        print(f"zip already in the Maven repository: {archive}")
    else:
        print(f"downloading {GROUP_ID}:{ARTIFACT_ID}:{version}:zip with mvn ...", flush=True)
        began = time.monotonic()
        download(version)
        size = archive.stat().st_size / 1e6
        print(f"downloaded {size:.1f} MB in {time.monotonic() - began:.1f} s: {archive}")
    began = time.monotonic()
    home = ensure_distribution(version)
    print(f"Elasticsearch {version} ready in {home} ({time.monotonic() - began:.1f} s)")
    modules = sorted(path.name for path in (home / "modules").iterdir())
    print(f"modules: {', '.join(modules)}")
    print(f"java: {find_java_home()}")
    return 0


def _run(version: str, port: int | None, directory: Path | None, heap: str) -> int:
    home = ensure_distribution(version)
    base = directory or Path(tempfile.mkdtemp(prefix="icswatch-es-"))
    node = ElasticsearchNode(home, base, port, heap=heap)
    stop = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, request_stop)
    try:
        node.start()
        print(f"Elasticsearch {node.version()} at {node.url}", flush=True)
        print(f"  files: {base}   log: {node.console_log}", flush=True)
        print(
            f"  started in {node.start_seconds:.1f} s, RSS {node.rss_bytes() / 2**20:.0f} MiB;"
            " Ctrl-C to stop",
            flush=True,
        )
        while not stop and node.running:
            time.sleep(0.5)
        if not node.running and not stop:
            print(f"the node exited:\n{node.log_tail()}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("interrupted: stopping the node", file=sys.stderr)
    finally:
        node.stop()
        if directory is None:
            shutil.rmtree(base, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--version", default=DEFAULT_VERSION, help="Elasticsearch version")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch", help="download and unzip the distribution")
    run = commands.add_parser("run", help="start a node, print its URL, run until Ctrl-C")
    run.add_argument("--port", type=int, default=None, help="HTTP port (default: a free one)")
    run.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="node folder to keep (default: a temporary one, deleted on exit)",
    )
    run.add_argument("--heap", default=DEFAULT_HEAP, help="JVM heap (default %(default)s)")
    arguments = parser.parse_args(argv)
    try:
        if arguments.command == "fetch":
            return _fetch(arguments.version)
        return _run(arguments.version, arguments.port, arguments.dir, arguments.heap)
    except (ElasticsearchUnavailable, ElasticsearchError) as error:
        print(f"esnode: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
