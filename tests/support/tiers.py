"""Three real consoles on loopback (national ← province ← enterprise), each
its own `icswatch serve` process with its own embedded store, console
database and tier file, linked by tokens issued with `icswatch tier
add-child` exactly as an operator links them."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ICSWATCH = [sys.executable, "-m", "console.cli"]
PASSWORD = "a long passphrase"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ICSWATCH, *args], cwd=ROOT, capture_output=True, text=True,
                          input=stdin, env=env, timeout=300)


def checked(*args: str, stdin: str | None = None,
            env: dict[str, str] | None = None) -> str:
    done = run(*args, stdin=stdin, env=env)
    assert done.returncode == 0, f"icswatch {' '.join(args)}: {done.stderr}"
    return done.stdout


@dataclass
class Console:
    name: str
    folder: Path
    port: int
    env: dict[str, str]
    process: subprocess.Popen[str] | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    serve_options: list[str] = field(default_factory=list)
    context: ssl.SSLContext | None = None  # set: the console serves HTTPS

    @property
    def url(self) -> str:
        return f"{'https' if self.context else 'http'}://127.0.0.1:{self.port}"

    @property
    def state(self) -> str:
        return str(self.folder / "console.db")

    @property
    def store(self) -> str:
        return str(self.folder / "store.db")

    @property
    def tier_file(self) -> str:
        return str(self.folder / "tier.yml")

    def icswatch(self, *args: str, stdin: str | None = None) -> str:
        return checked(*args, stdin=stdin, env=self.env)

    def add_user(self, username: str, role: str, org: str | None = None) -> None:
        extra = ["--org", org] if org else []
        self.icswatch("user", "add", username, "--role", role, "--password-stdin",
                      "--state", self.state, *extra, stdin=PASSWORD + "\n")

    def start(self) -> None:
        log = (self.folder / "serve.log").open("a")
        self.process = subprocess.Popen(
            [*ICSWATCH, "serve", "--port", str(self.port), "--store", self.store,
             "--state", self.state, "--tier", self.tier_file, *self.serve_options],
            cwd=ROOT, env=self.env, stderr=log, stdout=log, text=True)
        self.tokens.clear()
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(self.url + "/api/openapi.json", timeout=2,
                                       context=self.context)
                return
            except (urllib.error.URLError, ConnectionError):
                assert self.process.poll() is None, (self.folder / "serve.log").read_text()
                assert time.monotonic() < deadline, f"{self.name} console did not start"
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None

    def log(self) -> str:
        path = self.folder / "serve.log"
        return path.read_text() if path.exists() else ""

    def token(self, username: str) -> str:
        if username not in self.tokens:
            answer = self.call("POST", "/api/auth/login",
                               {"username": username, "password": PASSWORD}, token="")
            self.tokens[username] = answer["token"]
        return self.tokens[username]

    def call(self, method: str, path: str, body: Any = None, *, user: str = "admin",
             token: str | None = None, headers: dict[str, str] | None = None) -> Any:
        """The JSON answer; urllib.error.HTTPError for a 4xx/5xx."""
        bearer = self.token(user) if token is None else token
        request = urllib.request.Request(
            self.url + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json",
                     **({"Authorization": f"Bearer {bearer}"} if bearer else {}),
                     **(headers or {})})
        with urllib.request.urlopen(request, timeout=30, context=self.context) as response:
            return json.loads(response.read())

    def status(self, method: str, path: str, body: Any = None, **kwargs: Any) -> int:
        try:
            self.call(method, path, body, **kwargs)
        except urllib.error.HTTPError as exc:
            return exc.code
        return 200

    def alert_ids(self, user: str = "admin", query: str = "") -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        cursor = ""
        while True:
            page = self.call("GET", f"/api/alerts?size=500{query}{cursor}", user=user)
            for alert in page["alerts"]:
                assert alert["event"]["id"] not in found, "an alert listed twice"
                found[alert["event"]["id"]] = alert
            if not page["cursor"]:
                return found
            cursor = f"&cursor={page['cursor']}"


@dataclass
class Chain:
    national: Console
    province: Console
    enterprises: dict[str, Console]

    @property
    def all(self) -> list[Console]:
        return [*self.enterprises.values(), self.province, self.national]

    def stop(self) -> None:
        for console in self.all:
            console.stop()

    def replay(self, enterprise: str, *captures: Path) -> None:
        console = self.enterprises[enterprise]
        console.icswatch("replay", "--format", "none", "--no-progress", "--store",
                         console.store, "--sensor-name", f"{enterprise}-sensor",
                         "--spool", str(console.folder / "es-spool"),
                         *map(str, captures))


def tier_file(path: Path, tier: str, org_id: str, name: str, *, province: str | None = None,
              uplink: str | None = None, token_file: Path | None = None,
              tls: dict[str, Path] | None = None) -> None:
    lines = [f"tier: {tier}", f"id: {org_id}", f"name: {name}"]
    if province:
        lines.append(f"province: {province}")
    if uplink:
        lines += ["uplink:", f"  url: {uplink}", f"  token_file: {token_file}",
                  "  interval: 0.3", "  inventory_interval: 1",
                  f"  spool: {path.parent / 'uplink-spool'}"]
        lines += [f"  {key}: {value}" for key, value in (tls or {}).items()]
    path.write_text("\n".join(lines) + "\n")


def build_chain(base: Path, enterprises: tuple[str, ...] = ("ent-a", "ent-b"),
                users: Callable[[Chain], None] | None = None) -> Chain:
    """National, province ``prov-zj`` and ``enterprises`` under it, each
    with an admin user, linked and started."""

    def console(name: str) -> Console:
        folder = base / name
        folder.mkdir(parents=True)
        env = {**os.environ, "XDG_DATA_HOME": str(folder / "xdg"),
               "ICSWATCH_SITE_RULES": str(folder / "rules")}
        return Console(name, folder, free_port(), env)

    national, province = console("national"), console("prov-zj")
    tier_file(Path(national.tier_file), "national", "national", "National centre")
    national.icswatch("tier", "add-child", "prov-zj", "--name", "Zhejiang", "--tier",
                      national.tier_file, "--state", national.state, "--token-file",
                      str(province.folder / "uplink.token"))
    tier_file(Path(province.tier_file), "province", "prov-zj", "Zhejiang",
              uplink=national.url, token_file=province.folder / "uplink.token")
    children = {}
    for org_id in enterprises:
        child = console(org_id)
        province.icswatch("tier", "add-child", org_id, "--name", f"Enterprise {org_id}",
                          "--industry", "water", "--city", "Hangzhou", "--tier",
                          province.tier_file, "--state", province.state, "--token-file",
                          str(child.folder / "uplink.token"))
        tier_file(Path(child.tier_file), "enterprise", org_id, f"Enterprise {org_id}",
                  province="prov-zj", uplink=province.url,
                  token_file=child.folder / "uplink.token")
        children[org_id] = child
    chain = Chain(national, province, children)
    for member in chain.all:
        member.add_user("admin", "admin")
    if users is not None:
        users(chain)
    for member in (national, province, *children.values()):
        member.start()
    return chain


def wait_until(check: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)
