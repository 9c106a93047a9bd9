"""Tier files and `icswatch tier`: a bad file names the file, line and key
and exits 2; linking and grading work as an operator runs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.tiers import TierConfigError, load_tier_config
from tests.support.tiers import run


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tier.yml"
    path.write_text(text)
    (tmp_path / "token").write_text("secret-token\n")
    return path


@pytest.mark.parametrize(("text", "message"), [
    ("tier: county\nid: x\nname: X\n", "tier.yml:1: tier: 'county' is not one of"),
    ("tier: province\nname: X\n", "tier.yml:1: id: missing"),
    ("tier: province\nid: 'bad id!'\nname: X\n", "tier.yml:2: id: 'bad id!' is not an "
                                                 "organisation id"),
    ("tier: province\nid: p\nname: X\ncolour: red\n", "tier.yml:4: colour: unknown key"),
    ("tier: national\nid: n\nname: N\nuplink:\n  url: http://x\n  token_file: token\n",
     "tier.yml:4: uplink: the national centre has no tier above it"),
    ("tier: enterprise\nid: e\nname: E\nuplink:\n  url: http://x\n  token_file: token\n",
     "province: an enterprise with an uplink names its province"),
    ("tier: province\nid: p\nname: P\nuplink:\n  url: ftp://x\n  token_file: token\n",
     "tier.yml:5: uplink.url: 'ftp://x' is not an http(s) URL"),
    ("tier: province\nid: p\nname: P\nuplink:\n  url: http://x\n",
     "uplink.token_file: missing"),
    ("tier: province\nid: p\nname: P\nuplink:\n  url: http://x\n  token_file: nothing\n",
     "tier.yml:6: uplink.token_file: no file"),
    ("tier: province\nid: p\nname: P\nuplink:\n  url: http://x\n  token_file: token\n"
     "  forward:\n    min_severity: severe\n",
     "tier.yml:8: uplink.forward.min_severity: 'severe' is not one of"),
    ("tier: province\nid: p\nname: P\nuplink:\n  url: http://x\n  token_file: token\n"
     "  interval: -1\n", "tier.yml:7: uplink.interval: must be a positive number"),
    ("tier: province\nid: p\nname: P\nuplink:\n  url: http://x\n  token_file: token\n"
     "  client_cert: token\n", "client_cert and client_key go together"),
    ("- a list\n", "must be a mapping"),
    ("tier: [unclosed\n", "tier.yml"),
])
def test_bad_tier_files_say_where_and_what(tmp_path: Path, text: str, message: str) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(TierConfigError) as raised:
        load_tier_config(path)
    assert message in str(raised.value)
    served = run("serve", "--tier", str(path), "--state", str(tmp_path / "c.db"))
    assert served.returncode == 2
    assert served.stderr.count("\n") == 1 and message in served.stderr


def test_a_good_file(tmp_path: Path) -> None:
    path = _file(tmp_path, "tier: province\nid: prov-zj\nname: Zhejiang\nuplink:\n"
                           "  url: https://national.example:8443/\n  token_file: token\n"
                           "  forward:\n    min_severity: high\n    inventory: false\n")
    config = load_tier_config(path)
    assert config.tier == "province" and config.uplink is not None
    assert config.uplink.url == "https://national.example:8443"
    assert config.uplink.token == "secret-token"
    assert config.uplink.min_severity == "high" and not config.uplink.inventory


def test_linking_and_grading_from_the_command_line(tmp_path: Path) -> None:
    path = _file(tmp_path, "tier: province\nid: prov-zj\nname: Zhejiang\n")
    state = str(tmp_path / "console.db")
    common = ["--tier", str(path), "--state", state]
    token = run("tier", "add-child", "ent-a", "--name", "Water works", "--city", "Hangzhou",
                *common)
    assert token.returncode == 0 and len(token.stdout.strip()) >= 40
    written = run("tier", "add-child", "ent-b", "--name", "Grid", "--token-file",
                  str(tmp_path / "b.token"), *common)
    assert written.returncode == 0 and (tmp_path / "b.token").stat().st_mode & 0o777 == 0o600
    graded = run("tier", "grade", "ent-a", "--grade", "high", "--key", *common)
    assert graded.stdout == "ent-a: grade high, key enterprise\n"
    listed = run("tier", "orgs", *common).stdout.splitlines()
    assert [line.split()[:2] for line in listed] == [
        ["ent-a", "enterprise"], ["ent-b", "enterprise"], ["prov-zj", "province"]]
    assert "high" in listed[0] and "key" in listed[0]
    for bad, message in (
        (["tier", "grade", "ent-x", "--grade", "low"], "no organisation ent-x here"),
        (["tier", "grade", "prov-zj", "--grade", "low"], "only enterprises are graded"),
        (["tier", "add-child", "prov-zj", "--name", "x"], "this console's own organisation"),
        (["tier", "add-child", "bad id", "--name", "x"], "is not an organisation id"),
    ):
        done = run(*bad, *common)
        assert done.returncode == 2 and message in done.stderr, done.stderr
    stranger = run("user", "add", "x", "--role", "viewer", "--org", "ent-zz", "--password-stdin",
                   "--state", state, stdin="a long passphrase\n")
    assert stranger.returncode == 2 and "no organisation ent-zz" in stranger.stderr
    enterprise = _file(tmp_path, "tier: enterprise\nid: e\nname: E\n")
    refused = run("tier", "add-child", "x", "--name", "x", "--tier", str(enterprise),
                  "--state", str(tmp_path / "e.db"))
    assert refused.returncode == 2 and "an enterprise console has no children" in refused.stderr
