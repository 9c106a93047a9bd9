"""What an operator sees in the web console after replaying the Modbus
captures: the dashboard, the alert list and its filters, one alert and its
triage, the languages, roles, the map, sensors, rules and the live feed."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from detectors.attack import TECHNIQUE_NAMES_ZH, TECHNIQUES
from tests.console.browser.conftest import (
    LIVE_CAPTURE,
    ROOT,
    Console,
    artifacts_dir,
    require_browser,
    sign_in,
)

require_browser()
from playwright.sync_api import expect  # noqa: E402  (only once the browser is known present)

SEVERITIES = ("critical", "high", "medium", "low")
TRIAGE_BUTTONS = ("acknowledge", "reopen", "assign", "close", "false_positive", "comment")
# Every key of the translations: none may show on a page as it is.
I18N = ROOT / "console" / "web" / "i18n"
KEYS = sorted(json.loads((I18N / "en.json").read_text(encoding="utf-8")))
PAGES = ("#/overview", "#/alerts", "#/assets", "#/map", "#/sensors", "#/rules")


def alert_rows(page: Any) -> Any:
    return page.get_by_test_id("alerts-table").get_by_test_id("alert-row")


def shown_total(page: Any) -> int:
    return int(page.get_by_test_id("alerts-total").get_attribute("data-total"))


def open_alert_list(page: Any, search: str = "") -> None:
    page.goto(f"/#/alerts{search}")
    expect(page.get_by_test_id("alerts-total")).to_have_attribute("data-total", re.compile(r"\d"))


def alert_id(console: Console, **filters: str) -> str:
    alerts = console.api("alerts", size=1, **filters)["alerts"]
    assert alerts, f"the replay left no alert for {filters}"
    return str(alerts[0]["event"]["id"])


def missing_keys(page: Any) -> list[str]:
    return list(page.evaluate("[...window.__icswatchMissingKeys]"))


# What each page shows once its data has arrived (a hash change is a same-document
# navigation: Playwright's load states do not wait for the page's requests).
READY = {
    "/overview": "[data-testid=kpis] a", "/alerts": "[data-testid=alerts-total][data-total]",
    "/assets": "[data-testid=asset-row]", "/map": "[data-testid=map-chart][data-nodes]",
    "/sensors": "[data-testid=sensor-row]", "/rules": "[data-testid=rule-row]",
    "/assets/": "[data-testid=asset-title]", "/alerts/": "[data-testid=alert-explanation]",
}


def open_loaded(page: Any, target: str) -> None:
    """Go to `target` ("#/rules") and wait until that page shows its data."""
    route = target[1:]
    page.goto(f"/{target}")
    ready = READY[route if route in READY else route[:route.index("/", 1) + 1]]
    page.locator(f".view[data-route='{route}'] {ready}").first.wait_for()


def chinese_technique(bucket: dict[str, Any]) -> str:
    """A top technique's Chinese name: the API's name_zh, else the detectors' table."""
    return str(bucket.get("name_zh") or TECHNIQUE_NAMES_ZH[bucket["value"]])


def english_texts(console: Console) -> dict[str, str]:
    """English texts that have a Chinese version, each with where it comes from:
    the explanations of the stored alerts, the rules' titles and descriptions,
    the reasons rules are inactive and the ATT&CK technique names."""
    texts: dict[str, str] = {}
    alerts = console.api("alerts", size=500)["alerts"]
    assert alerts and all(alert["ics"]["alert"].get("reason_zh") for alert in alerts)
    for alert in alerts:
        texts[alert["message"]] = f"explanation of {alert['rule']['id']}"
    for rule in console.api("rules")["rules"]:
        texts[rule["title"]] = f"title of {rule['id']}"
        if rule.get("description_zh"):
            texts[rule["description"]] = f"description of {rule['id']}"
        if rule.get("inactive_groups") and rule.get("inactive_reason"):
            texts[rule["inactive_reason"]] = f"inactive reason of {rule['id']}"
    for technique, name in TECHNIQUES.items():
        # Short or generic names ("Scripting") may be part of other text.
        if len(name) > 12:
            texts[name] = f"name of {technique}"
    return texts


def test_wrong_password_is_refused_in_the_page_language(page: Any) -> None:
    page.goto("/")
    page.get_by_test_id("login-username").fill("admin")
    page.get_by_test_id("login-password").fill("not-the-password")
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("login-error")).to_have_text("用户名或密码错误。")
    expect(page.get_by_test_id("nav-overview")).to_have_count(0)


def test_a_page_asked_for_before_login_opens_after_it(page: Any, console: Console) -> None:
    page.goto("/#/alerts?severity=high")
    page.get_by_test_id("login-username").wait_for()
    sign_in(page, "analyst")
    expect(page.get_by_test_id("filter-severity-high")).to_be_checked()
    high = console.api("alerts", size=1, severity="high")["total"]
    expect(page.get_by_test_id("alerts-total")).to_have_attribute("data-total", str(high))
    assert {row.get_attribute("data-severity") for row in alert_rows(page).all()} == {"high"}


def test_dashboard_shows_the_replayed_alerts(login: Any, console: Console) -> None:
    page = login("admin")
    stats = console.api("stats/overview")
    assert stats["total"] > 0
    expect(page.get_by_test_id("kpi-total-value")).to_have_text(str(stats["total"]))
    for severity in SEVERITIES:
        expect(page.get_by_test_id(f"kpi-{severity}-value")).to_have_text(
            str(stats["by_severity"].get(severity, 0)))
    # ECharts drew both charts (canvas renderer).
    expect(page.get_by_test_id("chart-trend").locator("canvas")).to_have_count(1)
    expect(page.get_by_test_id("chart-severity").locator("canvas")).to_have_count(1)
    techniques = page.get_by_test_id("top-techniques").locator("li")
    expect(techniques).to_have_count(len(stats["top_techniques"]))
    top = stats["top_techniques"][0]
    expect(techniques.first).to_contain_text(top["value"])
    expect(techniques.first).to_contain_text(chinese_technique(top))
    expect(page.get_by_test_id("top-rules").locator("li").first).to_contain_text(
        stats["top_rules"][0]["value"])
    expect(page.get_by_test_id("top-assets").locator("li").first).to_contain_text(
        stats["top_assets"][0]["value"])
    newest = page.get_by_test_id("newest-critical").get_by_test_id("alert-row")
    expect(newest).to_have_count(len(stats["newest_critical"]))
    assert {row.get_attribute("data-severity") for row in newest.all()} <= {"critical", "high"}
    # "All time" is the default: old replayed captures must show.
    expect(page.get_by_test_id("overview-range")).to_have_value("all")
    page.wait_for_timeout(300)  # let the charts finish drawing
    page.screenshot(path=str(artifacts_dir() / "dashboard.png"))


def test_alert_list_filters_by_severity_and_keeps_the_filter_in_the_address(
        login: Any, console: Console) -> None:
    page = login("analyst")
    open_alert_list(page)
    everything = console.api("alerts", size=1)["total"]
    assert shown_total(page) == everything
    page.get_by_test_id("filter-severity-critical").check()
    critical = console.api("alerts", size=1, severity="critical")["total"]
    assert 0 < critical < everything
    expect(page.get_by_test_id("alerts-total")).to_have_attribute("data-total", str(critical))
    expect(alert_rows(page)).to_have_count(critical)
    assert {row.get_attribute("data-severity") for row in alert_rows(page).all()} == {"critical"}
    assert "severity=critical" in page.url
    page.reload()
    expect(page.get_by_test_id("filter-severity-critical")).to_be_checked()
    expect(page.get_by_test_id("alerts-total")).to_have_attribute("data-total", str(critical))
    page.get_by_test_id("filter-reset").click()
    expect(page.get_by_test_id("alerts-total")).to_have_attribute("data-total", str(everything))


def test_alert_list_loads_more_pages_oldest_first(login: Any, console: Console) -> None:
    page = login("viewer")
    open_alert_list(page, "?size=5&order=asc")
    total = shown_total(page)
    assert total > 10
    expect(alert_rows(page)).to_have_count(5)
    expect(page.get_by_test_id("filter-order")).to_have_value("asc")
    more = page.get_by_test_id("alerts-load-more")
    shown = 5
    while shown < total:
        more.click()
        shown = min(total, shown + 5)
        expect(alert_rows(page)).to_have_count(shown)
    expect(more).to_be_hidden()
    oldest = console.api("alerts", size=total, order="asc")["alerts"]
    assert [row.get_attribute("data-alert-id") for row in alert_rows(page).all()] == [
        alert["event"]["id"] for alert in oldest]


@pytest.mark.parametrize(("text", "rule"), [("mass", "ICSW-MODBUS-016"),
                                            ("畸形", "ICSW-MODBUS-012")])
def test_alert_list_full_text_search(login: Any, console: Console, text: str, rule: str) -> None:
    """Full text covers the rule name (English) and the Chinese title."""
    page = login("analyst")
    open_alert_list(page)
    page.get_by_test_id("filter-q").fill(text)
    page.get_by_test_id("filter-q").press("Enter")
    expected = console.api("alerts", size=1, q=text)["total"]
    assert expected > 0
    expect(page.get_by_test_id("alerts-total")).to_have_attribute("data-total", str(expected))
    expect(alert_rows(page)).to_have_count(expected)
    for row in alert_rows(page).all():
        expect(row).to_contain_text(rule)


def test_acknowledging_an_alert_updates_status_and_audit(login: Any) -> None:
    page = login("analyst")
    open_alert_list(page, "?q=mass")
    alert_rows(page).first.click()
    expect(page.get_by_test_id("alert-title")).to_have_text("Modbus大批量写入")
    expect(page.get_by_test_id("alert-status")).to_contain_text("待处理")
    expect(page.get_by_test_id("audit-empty")).to_be_visible()
    # The sample write, rendered as Modbus: function, address range, quantity, values.
    event = page.get_by_test_id("event-row").first
    expect(event).to_contain_text("写多个寄存器 (16)")
    expect(event).to_contain_text("0 \u2013 99")  # an en dash
    expect(event).to_contain_text("100 个值")
    page.get_by_test_id("triage-acknowledge").click()
    expect(page.get_by_test_id("alert-status")).to_contain_text("已确认")
    entry = page.get_by_test_id("audit-list").get_by_test_id("audit-entry")
    expect(entry).to_have_count(1)
    expect(entry).to_have_attribute("data-action", "acknowledge")
    expect(entry).to_contain_text("analyst")
    expect(page.get_by_test_id("triage-acknowledge")).to_be_disabled()
    page.get_by_test_id("triage-comment-text").fill("Engineering laptop, change ticket 4711")
    page.get_by_test_id("triage-comment").click()
    expect(entry).to_have_count(2)
    expect(entry.last).to_contain_text("change ticket 4711")
    event.get_by_text("100 个值").click()
    expect(event.locator(".value-cell")).to_have_count(100)
    page.screenshot(path=str(artifacts_dir() / "alert-detail.png"), full_page=True)


def test_closing_needs_a_reason_and_can_be_undone(login: Any, console: Console) -> None:
    page = login("admin")
    page.goto(f"/#/alerts/{alert_id(console, rule='ICSW-MODBUS-007', status='open')}")
    page.get_by_test_id("triage-close").click()
    expect(page.get_by_test_id("triage-error")).to_have_text("请填写原因。")
    expect(page.get_by_test_id("alert-status")).to_contain_text("待处理")
    page.get_by_test_id("triage-reason").fill("authorised function scan during commissioning")
    page.get_by_test_id("triage-close").click()
    expect(page.get_by_test_id("alert-status")).to_contain_text("已关闭")
    expect(page.get_by_test_id("triage-close")).to_be_disabled()
    page.get_by_test_id("triage-reopen").click()
    expect(page.get_by_test_id("alert-status")).to_contain_text("待处理")
    actions = page.get_by_test_id("audit-entry")
    expect(actions).to_have_count(2)
    assert [item.get_attribute("data-action") for item in actions.all()] == ["close", "reopen"]


def test_an_unknown_assignee_shows_the_api_detail(login: Any, console: Console) -> None:
    page = login("admin")
    page.goto(f"/#/alerts/{alert_id(console, rule='ICSW-MODBUS-008')}")
    page.get_by_test_id("triage-assignee").fill("nobody-here")
    page.get_by_test_id("triage-assign").click()
    expect(page.get_by_test_id("triage-error")).to_contain_text("nobody-here")
    page.get_by_test_id("triage-assignee").fill("analyst")
    page.get_by_test_id("triage-assign").click()
    expect(page.get_by_test_id("alert-assignee")).to_have_text("analyst")


def test_viewer_sees_alerts_but_no_enabled_triage_or_rule_controls(
        login: Any, console: Console) -> None:
    page = login("viewer")
    page.goto(f"/#/alerts/{alert_id(console, severity='critical')}")
    expect(page.get_by_test_id("triage-readonly")).to_be_visible()
    for action in TRIAGE_BUTTONS:
        expect(page.get_by_test_id(f"triage-{action}")).to_be_disabled()
    page.goto("/#/rules")
    expect(page.get_by_test_id("rule-row").first).to_be_visible()
    expect(page.locator("[data-testid^=rule-toggle-]")).to_have_count(0)
    expect(page.get_by_test_id("rule-pack-form")).to_have_count(0)


def test_language_switch_changes_text_and_is_remembered(login: Any, console: Console) -> None:
    page = login("admin")
    nav = page.get_by_test_id("nav-overview")
    expect(nav).to_have_text("总览")
    page.get_by_test_id("lang-switch").select_option("en")
    expect(nav).to_have_text("Overview")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_test_id("kpi-critical")).to_contain_text("Critical")
    # Titles: the rule's English name in English, the Chinese title in Chinese.
    page.goto(f"/#/alerts/{alert_id(console, q='mass')}")
    expect(page.get_by_test_id("alert-title")).to_have_text("Modbus mass write")
    page.reload()
    expect(page.get_by_test_id("alert-title")).to_have_text("Modbus mass write")
    page.get_by_test_id("lang-switch").select_option("zh-CN")
    expect(page.get_by_test_id("alert-title")).to_have_text("Modbus大批量写入")
    expect(page.get_by_test_id("nav-alerts")).to_have_text("告警")
    assert missing_keys(page) == []


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_no_page_shows_a_raw_translation_key(
        login: Any, console: Console, language: str) -> None:
    page = login("admin")
    page.get_by_test_id("lang-switch").select_option(language)
    expect(page.locator("html")).to_have_attribute("lang", language)
    asset = console.api("assets")["assets"][0]["id"]
    targets = [*PAGES, f"#/alerts/{alert_id(console, q='mass')}", f"#/assets/{asset}"]
    for target in targets:
        open_loaded(page, target)
        text = page.locator("body").inner_text()
        shown = [key for key in KEYS if re.search(rf"(?<![\w.]){re.escape(key)}(?![\w.])", text)]
        assert not shown, f"{target} shows raw keys {shown}"
    assert missing_keys(page) == []


def test_alert_detail_reads_in_chinese_and_in_english(login: Any, console: Console) -> None:
    """zh-CN: the explanation, the rule's description and the technique names
    are the Chinese ones the alert carries; English: the ECS fields."""
    page = login("viewer")
    [alert] = console.api("alerts", size=1, rule="ICSW-MODBUS-016")["alerts"]
    texts = alert["ics"]["alert"]
    assert texts["reason_zh"] and texts["description_zh"]
    page.goto(f"/#/alerts/{alert['event']['id']}")
    explanation = page.get_by_test_id("alert-explanation")
    expect(explanation).to_have_text(texts["reason_zh"])
    expect(explanation).to_contain_text("写入了 100 个数据项")
    expect(page.get_by_test_id("alert-description")).to_have_text(texts["description_zh"])
    listed = page.get_by_test_id("alert-techniques").locator("li")
    ids = alert["threat"]["technique"]["id"]
    expect(listed).to_have_count(len(ids))
    for item, technique, name_zh, name in zip(listed.all(), ids, texts["technique_names_zh"],
                                              alert["threat"]["technique"]["name"], strict=True):
        expect(item).to_have_text(f"{technique} {name_zh}")
        assert name_zh == TECHNIQUE_NAMES_ZH[technique] and name not in item.inner_text()
    body = page.locator("body").inner_text()
    assert alert["message"] not in body and alert["rule"]["description"] not in body
    page.get_by_test_id("lang-switch").select_option("en")
    expect(explanation).to_have_text(alert["message"])
    expect(page.get_by_test_id("alert-description")).to_have_text(alert["rule"]["description"])
    expect(listed.first).to_have_text(f"{ids[0]} {alert['threat']['technique']['name'][0]}")
    assert missing_keys(page) == []


def test_overview_top_techniques_are_named_in_chinese(login: Any, console: Console) -> None:
    page = login("viewer")
    stats = console.api("stats/overview")
    listed = page.get_by_test_id("top-techniques").locator("li")
    expect(listed).to_have_count(len(stats["top_techniques"]))
    for item, bucket in zip(listed.all(), stats["top_techniques"], strict=True):
        expect(item).to_contain_text(f"{bucket['value']} {chinese_technique(bucket)}")
        assert bucket["name"] not in item.inner_text()
    page.get_by_test_id("lang-switch").select_option("en")
    expect(listed.first).to_contain_text(stats["top_techniques"][0]["name"])


def test_rules_page_in_chinese_describes_rules_in_chinese(login: Any, console: Console) -> None:
    page = login("viewer")
    page.goto("/#/rules")
    rules = {rule["id"]: rule for rule in console.api("rules")["rules"]}
    rows = page.get_by_test_id("rule-row")
    expect(rows).to_have_count(len(rules))
    write = rules["ICSW-MODBUS-001"]
    row = page.locator("[data-testid=rule-row][data-rule-id='ICSW-MODBUS-001']")
    expect(row.get_by_test_id("rule-description")).to_have_text(write["description_zh"])
    # Its allowlist is empty here: the reason it is inactive is said in Chinese too.
    assert write["inactive_groups"] == ["modbus_masters"]
    expect(row.get_by_test_id("rule-inactive-reason")).to_contain_text("modbus_masters 为空")


def test_no_page_in_chinese_shows_english_where_chinese_exists(
        login: Any, console: Console) -> None:
    page = login("admin")
    english = english_texts(console)
    asset = console.api("assets")["assets"][0]["id"]
    alerts = {alert["rule"]["id"]: alert["event"]["id"]
              for alert in console.api("alerts", size=500)["alerts"]}
    targets = [*PAGES, f"#/assets/{asset}", *(f"#/alerts/{id_}" for id_ in alerts.values())]
    for target in targets:
        open_loaded(page, target)
        text = page.locator("body").inner_text()
        shown = sorted(where for english_text, where in english.items() if english_text in text)
        assert not shown, f"{target} shows English: {shown}"


def test_map_shows_nodes_and_links(login: Any, console: Console) -> None:
    page = login("admin")
    page.get_by_test_id("nav-map").click()
    graph = console.api("map")
    assert graph["nodes"] and graph["edges"]
    chart = page.get_by_test_id("map-chart")
    expect(chart).to_have_attribute("data-nodes", str(len(graph["nodes"])))
    expect(chart.locator("canvas")).to_have_count(1)
    drawn = page.evaluate("""() => {
        const el = document.querySelector('[data-testid=map-chart]');
        const series = window.echarts.getInstanceByDom(el).getOption().series[0];
        return {nodes: series.data.map((node) => node.id), links: series.links.length};
    }""")
    assert sorted(drawn["nodes"]) == sorted(node["id"] for node in graph["nodes"])
    assert drawn["links"] == len(graph["edges"])
    page.wait_for_timeout(1500)  # the force layout settles
    page.screenshot(path=str(artifacts_dir() / "map.png"))


def test_clicking_a_map_node_opens_the_asset(login: Any, console: Console) -> None:
    page = login("admin")
    page.goto("/#/map")
    expect(page.get_by_test_id("map-chart").locator("canvas")).to_have_count(1)
    page.wait_for_timeout(1500)
    point = page.evaluate("""() => {
        const el = document.querySelector('[data-testid=map-chart]');
        const chart = window.echarts.getInstanceByDom(el);
        const data = chart.getModel().getSeriesByIndex(0).getData();
        const [x, y] = chart.convertToPixel({seriesIndex: 0}, data.getItemLayout(0));
        const box = el.getBoundingClientRect();
        return {x: box.left + x, y: box.top + y, id: data.getId(0)};
    }""")
    page.mouse.click(point["x"], point["y"])
    expect(page.get_by_test_id("asset-title")).to_have_text(point["id"])
    expect(page.get_by_test_id("asset-communications")).to_be_visible()


def test_assets_and_sensors(login: Any, console: Console) -> None:
    page = login("admin")
    page.get_by_test_id("nav-assets").click()
    assets = console.api("assets")["assets"]
    expect(page.get_by_test_id("asset-row")).to_have_count(len(assets))
    page.get_by_test_id("asset-role").select_option("plc")
    plcs = console.api("assets", role="plc")["assets"]
    expect(page.get_by_test_id("asset-row")).to_have_count(len(plcs))
    assert "role=plc" in page.url
    page.get_by_test_id("nav-sensors").click()
    sensors = console.api("sensors")["sensors"]
    assert sensors
    row = page.get_by_test_id("sensor-row").first
    expect(row.get_by_test_id("sensor-status")).to_have_text(
        {"ok": "正常", "silent": "静默"}[sensors[0]["status"]])
    expect(row).to_contain_text(f"{sensors[0]['stats']['packets']:,}")
    expect(row).to_contain_text("MODBUS")


def test_admin_toggles_a_rule_and_sees_why_a_pack_is_refused(login: Any) -> None:
    page = login("admin")
    page.get_by_test_id("nav-rules").click()
    toggle = page.get_by_test_id("rule-toggle-ICSW-MODBUS-016")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "false")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")
    page.get_by_test_id("rule-pack-file").set_input_files(files=[{
        "name": "broken.yml", "mimeType": "application/x-yaml",
        "buffer": b"pack: broken\nrules:\n  - id: X-1\n    title: [unclosed\n"}])
    page.get_by_test_id("rule-pack-upload").click()
    error = page.get_by_test_id("rule-pack-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("broken.yml")


def test_a_new_alert_arrives_live_without_reload(login: Any, console: Console) -> None:
    page = login("analyst")
    overview = page.context.new_page()  # a second tab, same session, on the dashboard
    overview.goto("/#/overview")
    overview_total = overview.get_by_test_id("kpi-total-value")
    expect(overview_total).to_have_text(re.compile(r"\d"))
    before_overview = int(overview_total.inner_text().replace(",", ""))
    open_alert_list(page)
    before = shown_total(page)
    marker = page.evaluate("window.__marker = Math.random()")
    expect(page.get_by_test_id("live-state")).to_have_class(re.compile("live-open"))
    expect(overview.get_by_test_id("live-state")).to_have_class(re.compile("live-open"))
    groups = console.folder / "groups.yml"
    groups.write_text("modbus_masters: [127.0.0.1]\n")
    console.icswatch("replay", "--store", console.store, "--groups", groups, "--format", "none",
                     "--no-progress", "--no-summary", LIVE_CAPTURE)
    new_row = page.locator("[data-testid=alert-row].row-new")
    expect(new_row.first).to_be_visible(timeout=15000)
    expect(new_row.first).to_contain_text("ICSW-MODBUS-001")
    expect(page.get_by_test_id("toast-alert").first).to_contain_text("非授权主机")
    assert shown_total(page) > before
    assert page.evaluate("window.__marker") == marker, "the page reloaded"
    # The dashboard counts it and the navigation shows a badge for the unseen alert.
    expect(overview.get_by_test_id("live-badge")).to_have_text("1")
    expect(overview_total).to_have_text(f"{before_overview + 1:,}", timeout=10000)
    overview.close()


def test_an_english_browser_gets_english_until_the_user_chooses(new_context: Any) -> None:
    page = new_context("en-US").new_page()
    page.goto("/")
    expect(page.get_by_test_id("login-submit")).to_have_text("Sign in")
    expect(page.get_by_test_id("lang-switch")).to_have_value("en")
    page.get_by_test_id("lang-switch").select_option("zh-CN")
    expect(page.get_by_test_id("login-submit")).to_have_text("登录")
    page.reload()
    expect(page.get_by_test_id("login-submit")).to_have_text("登录")


def test_an_expired_session_goes_back_to_login(login: Any) -> None:
    page = login("analyst")
    page.context.clear_cookies()
    page.get_by_test_id("nav-alerts").click()  # no reload: the API answers 401
    page.get_by_test_id("login-username").wait_for()
    assert "next=" in page.url
    sign_in(page, "analyst")
    expect(page.get_by_test_id("alerts-total")).to_be_visible()


def test_logout_ends_the_session(login: Any) -> None:
    page = login("viewer")
    page.get_by_test_id("logout").click()
    page.get_by_test_id("login-username").wait_for()
    page.goto("/#/alerts")
    page.get_by_test_id("login-username").wait_for()
    assert "#/login" in page.url
