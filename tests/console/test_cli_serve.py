"""`icswatch user` and `icswatch serve` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.tiers import free_port

ICSWATCH = [sys.executable, "-m", "console.cli"]
ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, stdin: str = "", env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ICSWATCH, *args], input=stdin, capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=60, check=False)


def test_user_commands(tmp_path: Path) -> None:
    state = str(tmp_path / "console.db")
    added = _run("user", "add", "root-admin", "--role", "admin", "--password-stdin",
                 "--state", state, stdin="a long passphrase\n")
    assert added.returncode == 0, added.stderr
    assert "root-admin (admin) created" in added.stdout
    again = _run("user", "add", "root-admin", "--role", "viewer", "--password-stdin",
                 "--state", state, stdin="a long passphrase\n")
    assert again.returncode == 2 and again.stderr == "icswatch: user 'root-admin' exists\n"
    weak = _run("user", "add", "bob", "--role", "viewer", "--password-stdin", "--state", state,
                stdin="short\n")
    assert weak.returncode == 2 and "at least 10 characters" in weak.stderr
    no_tty = _run("user", "add", "bob", "--role", "viewer", "--state", state)
    assert no_tty.returncode == 2 and "--password-stdin" in no_tty.stderr
    assert _run("user", "role", "root-admin", "analyst", "--state", state).returncode == 0
    listed = _run("user", "list", "--state", state)
    assert listed.stdout.split()[:2] == ["root-admin", "analyst"]
    assert _run("user", "remove", "nobody", "--state", state).returncode == 2
    bad_role = _run("user", "add", "x", "--role", "king", "--state", state)
    assert bad_role.returncode == 2 and "king" in bad_role.stderr


def test_serve_answers_and_requires_login(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    state = str(tmp_path / "console.db")
    store = str(tmp_path / "store.db")
    replay = _run("replay", "--format", "none", "--store", store,
                  "pcaps/modbus/attack-force-listen-only.pcapng", env=env)
    assert replay.returncode == 0, replay.stderr
    _run("user", "add", "op", "--role", "viewer", "--password-stdin", "--state", state,
         stdin="a long passphrase\n", env=env)
    port = free_port()
    server = subprocess.Popen(
        [*ICSWATCH, "serve", "--port", str(port), "--store", store, "--state", state],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/api/openapi.json", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline, "console did not start"
                time.sleep(0.2)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + "/api/alerts", timeout=5)
        assert refused.value.code == 401
        login = urllib.request.Request(
            base + "/api/auth/login", method="POST",
            data=json.dumps({"username": "op", "password": "a long passphrase"}).encode(),
            headers={"Content-Type": "application/json"})
        token = json.load(urllib.request.urlopen(login, timeout=5))["token"]
        listing = urllib.request.Request(base + "/api/alerts",
                                         headers={"Authorization": f"Bearer {token}"})
        body = json.load(urllib.request.urlopen(listing, timeout=5))
        assert body["total"] == 1
        assert body["alerts"][0]["rule"]["id"] == "ICSW-MODBUS-002"
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=20)
    assert f"console on http://127.0.0.1:{port}/" in stderr


def test_serve_refuses_bad_options(tmp_path: Path) -> None:
    half_tls = _run("serve", "--tls-cert", "x.pem", "--state", str(tmp_path / "c.db"),
                    "--store", str(tmp_path / "s.db"))
    assert half_tls.returncode == 2
    assert half_tls.stderr == "icswatch: --tls-cert and --tls-key go together\n"
