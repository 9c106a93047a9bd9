"""The tiers in the web console: a province ranks its enterprises, the
national centre colours its provinces by risk, both drill down to the
alerts, and a province issues a notice from the page.

The province console is started as an operator starts one: a tier file,
`icswatch tier add-child` and `tier grade`, then `icswatch serve --tier`
on a store that holds alerts of its enterprises (written with the store
API, each carrying its organisation). The national centre is the real
chain from tests/support/tiers.py: national ← province ← enterprises,
alerts replayed at the enterprises and forwarded up by the uplinks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.console.browser.conftest import (
    MODBUS,
    ROOT,
    VIEWPORT,
    _free_port,
    _is_local,
    _wait_until_up,
    artifacts_dir,
    require_browser,
    run_icswatch,
)

require_browser()
from playwright.sync_api import expect  # noqa: E402  (only once the browser is known present)

ADMIN, PASSWORD = "admin", "admin-password-1"
ANALYST, ANALYST_PASSWORD = "analyst", "analyst-password-1"
I18N = ROOT / "console" / "web" / "i18n"
KEYS = sorted(json.loads((I18N / "en.json").read_text(encoding="utf-8")))
# Enterprises of the province: id -> (name, industry, city, alerts written for it).
ENTERPRISES = {
    "ent-a": ("Qiantang Water Works", "water", "Hangzhou", 30),
    "ent-b": ("Ningbo Chemical No. 2", "chemical", "Ningbo", 12),
    "ent-c": ("Wenzhou Power Supply", "power", "Wenzhou", 0),
}
CHAIN_CAPTURES = {
    "ent-a": ("attack-mass-write.pcapng", "attack-umas.pcapng"),
    "ent-b": ("attack-function-scan.pcapng",),
}


@dataclass
class TierConsole:
    """A running `icswatch serve --tier` and how to ask its API."""

    url: str
    username: str
    password: str

    def call(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        import urllib.request

        login = urllib.request.Request(
            self.url + "api/auth/login", method="POST",
            data=json.dumps({"username": self.username, "password": self.password}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(login, timeout=10) as reply:
            token = json.load(reply)["token"]
        search = f"?{urlencode(query)}" if query else ""
        request = urllib.request.Request(
            self.url + "api/" + path + search, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.load(reply)

    def api(self, path: str, **query: Any) -> Any:
        return self.call("GET", path, **query)


def _province_alerts(store: Path) -> None:
    """Alerts of the province's enterprises in a fresh embedded store."""
    from console.stores.sqlite import SqliteStore
    from tests.support.alerts import numbered, replay_alerts

    templates = replay_alerts(sorted(MODBUS.glob("attack-*.pcapng")))
    assert templates, "the attack captures raised no alert"
    docs = []
    for org_id, (name, _, _, count) in ENTERPRISES.items():
        for doc in numbered(templates, 0, count, org_id):
            doc["organization"] = {"id": org_id, "name": name}
            docs.append(doc)
    with SqliteStore(store) as alerts:
        alerts.write_alerts(docs)


@pytest.fixture(scope="module")
def province() -> Iterator[TierConsole]:
    require_browser()
    folder = Path(tempfile.mkdtemp(prefix="icswatch-province-"))
    env = {**os.environ, "XDG_DATA_HOME": str(folder / "xdg"),
           "ICSWATCH_SITE_RULES": str(folder / "site-rules")}
    tier, state, store = folder / "tier.yml", folder / "console.db", folder / "store.db"
    tier.write_text("tier: province\nid: prov-zj\nname: Zhejiang\n")
    for org_id, (name, industry, city, _) in ENTERPRISES.items():
        run_icswatch(env, "tier", "add-child", org_id, "--name", name, "--industry", industry,
                     "--city", city, "--tier", tier, "--state", state,
                     "--token-file", folder / f"{org_id}.token")
    run_icswatch(env, "tier", "grade", "ent-a", "--grade", "high", "--key", "--tier", tier,
                 "--state", state)
    run_icswatch(env, "tier", "grade", "ent-b", "--grade", "medium", "--tier", tier,
                 "--state", state)
    for username, password, role in ((ADMIN, PASSWORD, "admin"),
                                     (ANALYST, ANALYST_PASSWORD, "analyst")):
        run_icswatch(env, "user", "add", username, "--role", role, "--password-stdin",
                     "--state", state, stdin=password + "\n")
    _province_alerts(store)
    port = _free_port()
    log = folder / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "console.cli", "serve", "--store", str(store),
             "--state", str(state), "--tier", str(tier), "--site-rules",
             str(folder / "site-rules"), "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_up(url, process, log)
        yield TierConsole(url, ADMIN, PASSWORD)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def chain() -> Iterator[Any]:
    """National ← prov-zj ← ent-a, ent-b, with alerts replayed at both
    enterprises and forwarded up until the national centre has them."""
    require_browser()
    from tests.support.tiers import PASSWORD as CHAIN_PASSWORD
    from tests.support.tiers import build_chain, wait_until

    base = Path(tempfile.mkdtemp(prefix="icswatch-chain-ui-"))
    built = None
    try:
        built = build_chain(base)
        for org_id, captures in CHAIN_CAPTURES.items():
            built.replay(org_id, *(MODBUS / name for name in captures))
        national = TierConsole(built.national.url + "/", "admin", CHAIN_PASSWORD)

        def forwarded() -> bool:
            rows = {row["id"]: row for row in national.api("rollup")["enterprises"]}
            return all(rows.get(org_id, {}).get("open_alerts") for org_id in CHAIN_CAPTURES)

        wait_until(forwarded, "the enterprises' alerts at the national centre")
        yield built, national
    finally:
        if built is not None:
            built.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    """open_page(console, username, password, locale) -> a signed-in page; requests
    off the machine and script errors fail the test."""
    contexts: list[Any] = []
    foreign: list[str] = []
    errors: list[str] = []

    def guard(route: Any) -> None:
        if _is_local(route.request.url):
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    def make(console: TierConsole, locale: str = "zh-CN") -> Any:
        context = browser.new_context(viewport=VIEWPORT, locale=locale, base_url=console.url)
        context.route("**/*", guard)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto("/")
        page.get_by_test_id("login-username").fill(console.username)
        page.get_by_test_id("login-password").fill(console.password)
        page.get_by_test_id("login-submit").click()
        page.get_by_test_id("nav-overview").wait_for()
        return page

    yield make
    for context in contexts:
        context.close()
    assert not foreign, f"requests left the machine: {sorted(set(foreign))}"
    assert not errors, f"script errors in the page: {errors}"


# What the tier pages show once their data has arrived.
READY = ", ".join(f".view [data-testid={testid}]" for testid in (
    "rollup-table", "notices-total][data-total", "notice-steps"))


def rollup_rows(page: Any) -> Any:
    return page.get_by_test_id("rollup-table").get_by_test_id("rollup-row")


def missing_keys(page: Any) -> list[str]:
    return list(page.evaluate("[...window.__icswatchMissingKeys]"))


def test_province_header_and_navigation(open_page: Any, province: TierConsole) -> None:
    page = open_page(province)
    identity = province.api("tier")
    assert identity["tier"] == "province" and identity["uplink"] is None
    expect(page.get_by_test_id("tier-identity")).to_have_text("省级 · Zhejiang")
    expect(page.get_by_test_id("uplink-state")).to_have_count(0)  # no tier above it
    expect(page.get_by_test_id("nav-rollup")).to_have_text("汇总")
    expect(page.get_by_test_id("nav-notices")).to_have_text("通报")


def test_province_ranks_its_enterprises_and_drills_down(
        open_page: Any, province: TierConsole) -> None:
    page = open_page(province)
    page.get_by_test_id("nav-rollup").click()
    ranked = province.api("rollup")["enterprises"]
    assert [row["id"] for row in ranked][:2] == ["ent-a", "ent-b"]  # the key, high-grade one first
    rows = rollup_rows(page)
    expect(rows).to_have_count(len(ENTERPRISES))
    assert [row.get_attribute("data-org-id") for row in rows.all()] == [r["id"] for r in ranked]
    first = rows.first
    expect(first.get_by_test_id("key-badge")).to_have_text("重点")
    expect(first.get_by_test_id("grade")).to_have_text("高")
    expect(first.get_by_test_id("rollup-open")).to_have_text(f"{ranked[0]['open_alerts']:,}")
    expect(rows.nth(1).get_by_test_id("key-badge")).to_have_count(0)
    expect(rows.nth(1).get_by_test_id("grade")).to_have_text("中")
    chart = page.get_by_test_id("rollup-chart")
    expect(chart.locator("canvas")).to_have_count(1)
    expect(chart).to_have_attribute("data-bars", str(len(ENTERPRISES)))
    page.wait_for_timeout(300)  # let the chart finish drawing
    page.screenshot(path=str(artifacts_dir() / "province-rollup.png"))
    first.get_by_test_id("rollup-drill").click()
    assert "organization=ent-a" in page.url
    expected = province.api("alerts", organization="ent-a", size=1)["total"]
    assert expected == ENTERPRISES["ent-a"][3]
    expect(page.get_by_test_id("alerts-total")).to_have_attribute("data-total", str(expected))
    expect(page.get_by_test_id("filter-organization")).to_have_value("ent-a")


def test_province_admin_marks_a_key_enterprise(open_page: Any, province: TierConsole) -> None:
    page = open_page(province)
    page.goto("/#/rollup")
    key = page.get_by_test_id("grading-key-ent-c")
    expect(key).not_to_be_checked()
    key.check()
    row = page.locator("[data-testid=rollup-row][data-org-id=ent-c]")
    expect(row.get_by_test_id("key-badge")).to_be_visible()
    page.get_by_test_id("grading-grade-ent-c").select_option("low")
    expect(row.get_by_test_id("grade")).to_have_text("低")
    [org] = [org for org in province.api("orgs")["organizations"] if org["id"] == "ent-c"]
    assert org["key_enterprise"] is True and org["grade"] == "low"
    province.call("PUT", "orgs/ent-c/grading", {"key_enterprise": False})  # as it was


def test_province_issues_a_notice_and_lists_it(open_page: Any, province: TierConsole) -> None:
    page = open_page(province)
    page.get_by_test_id("nav-notices").click()
    page.get_by_test_id("notice-new").click()
    page.get_by_test_id("notice-target").select_option("ent-a")
    page.get_by_test_id("notice-title").fill("Unauthorised Modbus writes to the dosing PLC")
    page.get_by_test_id("notice-required-action").fill(
        "Restrict port 502 to the SCADA master and report the firewall change.")
    page.get_by_test_id("notice-submit").click()
    row = page.get_by_test_id("notice-row").filter(has_text="dosing PLC")
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-status", "issued")
    expect(row.get_by_test_id("notice-status")).to_have_text("已下发")
    expect(row).to_contain_text("Qiantang Water Works")
    listed = [n for n in province.api("notices")["notices"] if "dosing PLC" in n["title"]]
    assert len(listed) == 1 and listed[0]["status"] == "issued"
    assert listed[0]["target"] == "ent-a" and listed[0]["issuer"] == "prov-zj"
    assert not listed[0]["overdue"]
    page.screenshot(path=str(artifacts_dir() / "notices.png"))
    row.get_by_test_id("notice-link").click()
    expect(page.get_by_test_id("notice-title")).to_contain_text("dosing PLC")
    steps = page.get_by_test_id("notice-step")
    expect(steps).to_have_count(1)
    expect(steps.first).to_have_attribute("data-action", "issue")
    # The province issued it: accepting is the enterprise's step, closing waits for the fix.
    expect(page.get_by_test_id("step-accept")).to_be_disabled()
    expect(page.get_by_test_id("step-accept")).to_have_attribute("title", re.compile("ent-a"))
    expect(page.get_by_test_id("step-close")).to_be_disabled()
    page.get_by_test_id("step-text").fill("Deadline agreed by phone with the plant manager.")
    page.get_by_test_id("step-comment").click()
    expect(steps).to_have_count(2)
    expect(steps.last).to_contain_text("plant manager")
    page.screenshot(path=str(artifacts_dir() / "notice-detail.png"), full_page=True)


def test_an_alert_leads_to_a_prefilled_notice(open_page: Any, province: TierConsole) -> None:
    page = open_page(province)
    [alert] = province.api("alerts", organization="ent-b", size=1)["alerts"]
    page.goto(f"/#/alerts/{alert['event']['id']}")
    page.get_by_test_id("alert-issue-notice").click()
    expect(page.get_by_test_id("notice-form")).to_be_visible()
    expect(page.get_by_test_id("notice-target")).to_have_value("ent-b")
    expect(page.get_by_test_id("notice-alert")).to_have_value(alert["event"]["id"])
    expect(page.get_by_test_id("notice-title")).not_to_be_empty()


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_tier_pages_show_no_raw_translation_key(
        open_page: Any, province: TierConsole, language: str) -> None:
    page = open_page(province, "en-US" if language == "en" else "zh-CN")
    notice = province.api("notices")["notices"]
    targets = ["#/rollup", "#/notices", "#/notices?issue=1"]
    targets += [f"#/notices/{notice[0]['id']}"] if notice else []
    for target in targets:
        page.goto(f"/{target}")
        page.locator(READY).first.wait_for()
        text = page.locator("body").inner_text()
        shown = [key for key in KEYS if re.search(rf"(?<![\w.]){re.escape(key)}(?![\w.])", text)]
        assert not shown, f"{target} shows raw keys {shown}"
    assert missing_keys(page) == []


def test_national_colours_provinces_and_drills_down(open_page: Any, chain: Any) -> None:
    built, national = chain
    page = open_page(national)
    expect(page.get_by_test_id("tier-identity")).to_have_text("国家级 · National centre")
    page.get_by_test_id("nav-rollup").click()
    rollup = national.api("rollup")
    [zhejiang] = [p for p in rollup["provinces"] if p["id"] == "prov-zj"]
    cells = page.get_by_test_id("province-cell")
    expect(cells).to_have_count(len(rollup["provinces"]))
    cell = page.locator("[data-testid=province-cell][data-province-id=prov-zj]")
    expect(cell).to_have_attribute("data-risk", zhejiang["risk"])
    expect(cell).to_contain_text("Zhejiang")
    expect(cell.get_by_test_id("province-open")).to_have_text(f"{zhejiang['open_alerts']:,}")
    page.wait_for_timeout(300)
    page.screenshot(path=str(artifacts_dir() / "national-rollup.png"))
    cell.click()
    expect(page.get_by_test_id("rollup-title")).to_have_attribute("data-province", "prov-zj")
    members = [row for row in rollup["enterprises"] if row["parent"] == "prov-zj"]
    rows = rollup_rows(page)
    expect(rows).to_have_count(len(members))
    assert [row.get_attribute("data-org-id") for row in rows.all()] == [r["id"] for r in members]
    target = members[0]["id"]
    rows.first.get_by_test_id("rollup-drill").click()
    expected = national.api("alerts", organization=target, size=1)["total"]
    assert expected > 0
    expect(page.get_by_test_id("alerts-total")).to_have_attribute("data-total", str(expected))
    # The province in the chain forwards to the national centre: its header says how that goes.
    province = TierConsole(built.province.url + "/", "admin", national.password)
    province_page = open_page(province)
    expect(province_page.get_by_test_id("tier-identity")).to_have_text("省级 · Zhejiang")
    expect(province_page.get_by_test_id("uplink-state")).to_have_attribute("data-state", "ok")
    # An enterprise: its identity and uplink, and no roll-up.
    enterprise = TierConsole(built.enterprises["ent-a"].url + "/", "admin", national.password)
    enterprise_page = open_page(enterprise, "en-US")
    expect(enterprise_page.get_by_test_id("tier-identity")).to_have_text(
        "Enterprise · Enterprise ent-a")
    expect(enterprise_page.get_by_test_id("uplink-state")).to_have_attribute("data-state", "ok")
    expect(enterprise_page.get_by_test_id("nav-rollup")).to_have_count(0)
    expect(enterprise_page.get_by_test_id("nav-notices")).to_have_text("Notices")


def test_a_console_without_tier_file_names_no_tier(login: Any) -> None:
    page = login("admin")
    expect(page.get_by_test_id("nav-notices")).to_be_visible()
    expect(page.get_by_test_id("tier-identity")).to_have_count(0)
    expect(page.get_by_test_id("uplink-state")).to_have_count(0)
    expect(page.get_by_test_id("nav-rollup")).to_have_count(0)
    page.goto("/#/rollup")
    expect(page.get_by_test_id("rollup-not-here")).to_be_visible()
    page.get_by_test_id("nav-notices").click()
    expect(page.get_by_test_id("notices-total")).to_have_attribute("data-total", "0")
    expect(page.get_by_test_id("notice-new")).to_have_count(0)  # an enterprise issues none


def test_a_notice_goes_down_to_the_enterprise_and_its_steps_come_back(
        open_page: Any, chain: Any) -> None:
    """Issued at the province, accepted and rectified in the enterprise's
    page, closed in the province's page: each step crosses the uplink."""
    from tests.support.tiers import wait_until

    built, national = chain
    deadline = datetime.now(UTC) + timedelta(days=3)
    notice = built.province.call("POST", "/api/notices", {
        "target": "ent-a", "title": "Close the UMAS session from the laptop",
        "required_action": "Remove the engineering laptop from the PLC network.",
        "deadline": deadline.isoformat()})
    ent_a = built.enterprises["ent-a"]

    def status_at(console: Any) -> str | None:
        found = [n for n in console.call("GET", "/api/notices")["notices"]
                 if n["id"] == notice["id"]]
        return found[0]["status"] if found else None

    wait_until(lambda: status_at(ent_a) == "issued", "the notice at the enterprise")
    page = open_page(TierConsole(ent_a.url + "/", "admin", national.password))
    page.goto(f"/#/notices/{notice['id']}")
    expect(page.get_by_test_id("notice-title")).to_have_text(notice["title"])
    status = page.locator("header").get_by_test_id("notice-status")
    expect(page.get_by_test_id("step-close")).to_be_disabled()  # the issuer's step
    # Accepted meanwhile elsewhere: this page's accept is refused, with the API's reason.
    ent_a.call("POST", f"/api/notices/{notice['id']}/steps", {"action": "accept"})
    page.get_by_test_id("step-accept").click()
    expect(page.get_by_test_id("toast-error")).to_be_visible()
    expect(page.get_by_test_id("step-error")).not_to_be_empty()
    page.reload()
    expect(status).to_have_attribute("data-status", "accepted")
    page.get_by_test_id("step-rectify").click()
    expect(page.get_by_test_id("step-error")).to_be_visible()  # evidence first
    page.get_by_test_id("step-evidence").fill("Laptop unplugged; switch port 7 disabled.")
    page.get_by_test_id("step-rectify").click()
    expect(status).to_have_attribute("data-status", "rectified")
    expect(page.get_by_test_id("step-close")).to_be_disabled()
    wait_until(lambda: status_at(built.province) == "rectified", "the steps at the province")
    page = open_page(TierConsole(built.province.url + "/", "admin", national.password))
    page.goto(f"/#/notices/{notice['id']}")
    steps = page.get_by_test_id("notice-step")
    expect(steps).to_have_count(3)
    expect(steps.last).to_contain_text("switch port 7")
    page.get_by_test_id("step-close").click()
    expect(page.locator("header").get_by_test_id("notice-status")).to_have_attribute(
        "data-status", "closed")
