// Roll-up (province and national tiers): enterprises ranked by their open
// alerts weighted by severity and grade, a chart of those alerts per
// enterprise, and at the national centre a grid of provinces coloured by
// risk. Every enterprise drills down to its alerts; admins grade enterprises.
import { api, get } from "../api.js";
import { ChartSet, escapeHtml } from "../charts.js";
import { fill, h, select } from "../dom.js";
import { t, tOr } from "../i18n.js";
import { SEVERITIES, SEVERITY_COLORS, formatNumber } from "../format.js";
import { onLiveAlert } from "../live.js";
import { href } from "../router.js";
import { may } from "../session.js";
import { currentTier, isUpperTier } from "../tier.js";
import { showSuccess } from "../toast.js";

export const GRADES = ["high", "medium", "low"];
const RISKS = ["high", "medium", "low"];

function alertsOf(orgId, extra = {}) {
  return href("/alerts", { organization: orgId, ...extra });
}

function noticesOf(orgId, extra = {}) {
  return href("/notices", { target: orgId, ...extra });
}

export function gradeBadge(grade) {
  if (!grade) return h("span", { class: "muted", "data-testid": "grade" }, "—");
  return h("span", { class: `badge grade grade-${grade}`, "data-testid": "grade", "data-grade": grade },
    tOr("grade", grade));
}

export function keyBadge(org) {
  return org.key_enterprise
    ? h("span", { class: "badge key-badge", "data-testid": "key-badge", title: t("rollup.key_hint") }, t("rollup.key"))
    : null;
}

/** Key-enterprise box and grade choice; each change is saved at once. */
function gradingControls(org, reload) {
  const key = h("input", { type: "checkbox", "data-testid": `grading-key-${org.id}`, checked: org.key_enterprise,
    "aria-label": t("rollup.mark_key", { name: org.name }) });
  const grade = select({ "data-testid": `grading-grade-${org.id}`, "aria-label": t("rollup.set_grade", { name: org.name }) },
    [["", t("rollup.ungraded")], ...GRADES.map((value) => [value, t(`grade.${value}`)])], org.grade ?? "");
  async function save(body) {
    key.disabled = true;
    grade.disabled = true;
    try {
      await api(`orgs/${encodeURIComponent(org.id)}/grading`, { method: "PUT", json: body });
      showSuccess(t("rollup.graded", { name: org.name }));
      await reload();
    } catch {
      // the API layer showed the reason; put the controls back as they were
      key.checked = org.key_enterprise;
      grade.value = org.grade ?? "";
    } finally {
      key.disabled = false;
      grade.disabled = false;
    }
  }
  key.addEventListener("change", () => save({ key_enterprise: key.checked }));
  grade.addEventListener("change", () => {
    if (grade.value) save({ grade: grade.value });
  });
  return h("span", { class: "grading" }, h("label", { class: "check" }, key, t("rollup.key")), grade);
}

/** provinceNames (national centre): id -> name, for a column naming each enterprise's province. */
function enterpriseTable(rows, reload, provinceNames = null) {
  if (!rows.length) return h("p", { class: "empty", "data-testid": "rollup-empty" }, t("rollup.no_enterprises"));
  const grading = may("admin") && isUpperTier();
  const columns = ["rank", "enterprise", provinceNames ? "province" : null, "grade", "industry", "city", "open_alerts",
    "severity", "notices_open", "notices_overdue", "score"].filter(Boolean);
  return h("table", { class: "table rollup-table", "data-testid": "rollup-table" },
    h("thead", {}, h("tr", {},
      columns.map((column) => h("th", { scope: "col", class: ["rank", "open_alerts", "notices_open", "notices_overdue", "score"]
        .includes(column) ? "num" : "" }, t(`rollup.col.${column}`))),
      grading ? h("th", { scope: "col" }, t("rollup.col.grading")) : null)),
    h("tbody", {}, rows.map((org, index) => h("tr", {
      class: `rollup-row ${org.open_critical ? "sev-row-critical" : ""}`, "data-testid": "rollup-row",
      "data-org-id": org.id, "data-rank": String(index + 1), "data-score": String(org.score),
      onclick: (event) => {
        if (!event.target.closest("a, button, input, select, label")) location.hash = alertsOf(org.id).slice(1);
      },
    },
    h("td", { class: "num" }, String(index + 1)),
    h("td", {}, h("a", { href: alertsOf(org.id), "data-testid": "rollup-drill", title: t("rollup.open_alerts_of", { name: org.name }) },
      h("strong", {}, org.name || org.id)), " ", keyBadge(org),
    org.name && org.name !== org.id ? h("div", { class: "muted mono" }, org.id) : null),
    provinceNames ? h("td", {}, org.parent ? h("a", { href: href("/rollup", { province: org.parent }) },
      provinceNames.get(org.parent) || org.parent) : "") : null,
    h("td", {}, gradeBadge(org.grade)),
    h("td", {}, org.industry ?? ""),
    h("td", {}, org.city ?? ""),
    h("td", { class: "num", "data-testid": "rollup-open" }, formatNumber(org.open_alerts ?? 0)),
    h("td", { class: "nowrap" }, SEVERITIES.filter((severity) => org.open_by_severity?.[severity]).map((severity) =>
      h("a", { class: `badge sev sev-${severity} sev-count`, href: alertsOf(org.id, { severity }),
        title: t(`severity.${severity}`) }, formatNumber(org.open_by_severity[severity])))),
    h("td", { class: "num" }, h("a", { href: noticesOf(org.id) }, formatNumber(org.notices_open ?? 0))),
    h("td", { class: `num ${org.notices_overdue ? "text-alert" : ""}`, "data-testid": "rollup-overdue" },
      org.notices_overdue ? h("a", { class: "text-alert", href: noticesOf(org.id, { overdue: "true" }) },
        formatNumber(org.notices_overdue)) : "0"),
    h("td", { class: "num score" }, formatNumber(org.score ?? 0)),
    grading ? h("td", { class: "nowrap" }, gradingControls(org, reload)) : null))));
}

function chartOption(rows) {
  const shown = rows.slice(0, 30);
  const order = [...SEVERITIES].reverse();
  return {
    tooltip: {
      trigger: "axis", axisPointer: { type: "shadow" },
      formatter: (items) => {
        const org = shown[items[0]?.dataIndex];
        const lines = items.filter((item) => item.value).map((item) => `${item.marker}${escapeHtml(item.seriesName)}: ${formatNumber(item.value)}`);
        return [`<strong>${escapeHtml(org?.name ?? "")}</strong>`, ...lines].join("<br>");
      },
    },
    legend: { top: 0, data: SEVERITIES.map((severity) => t(`severity.${severity}`)) },
    grid: { left: 40, right: 12, top: 30, bottom: 8, containLabel: true },
    xAxis: { type: "category", data: shown.map((org) => org.name || org.id),
      axisLabel: { interval: 0, rotate: shown.length > 6 ? 30 : 0, width: 110, overflow: "truncate" } },
    yAxis: { type: "value", minInterval: 1 },
    series: order.map((severity) => ({
      name: t(`severity.${severity}`), type: "bar", stack: "open", barMaxWidth: 36, severity,
      itemStyle: { color: SEVERITY_COLORS[severity] },
      data: shown.map((org) => ({ value: org.open_by_severity?.[severity] ?? 0, orgId: org.id, severity })),
    })),
  };
}

function provinceGrid(provinces) {
  if (!provinces.length) return h("p", { class: "empty", "data-testid": "rollup-empty" }, t("rollup.no_provinces"));
  return h("div", { class: "province-grid", "data-testid": "province-grid" }, provinces.map((province) => h("a", {
    class: `province-cell risk-${province.risk}`, href: href("/rollup", { province: province.id }),
    "data-testid": "province-cell", "data-province-id": province.id, "data-risk": province.risk,
    title: t("rollup.open_province", { name: province.name }),
  },
  h("div", { class: "province-head" }, h("strong", { class: "province-name" }, province.name || province.id),
    h("span", { class: `badge risk-badge risk-badge-${province.risk}`, "data-testid": "province-risk" }, tOr("risk", province.risk))),
  h("dl", { class: "province-facts" },
    h("dt", {}, t("rollup.col.enterprises")), h("dd", {}, `${formatNumber(province.enterprises)} (${t("rollup.key_count", { count: formatNumber(province.key_enterprises) })})`),
    h("dt", {}, t("rollup.col.open_alerts")), h("dd", { "data-testid": "province-open" }, formatNumber(province.open_alerts)),
    h("dt", {}, t("rollup.col.open_critical")), h("dd", { class: province.open_critical ? "text-alert" : "" }, formatNumber(province.open_critical)),
    h("dt", {}, t("rollup.col.notices_open")), h("dd", {}, formatNumber(province.notices_open)),
    h("dt", {}, t("rollup.col.notices_overdue")), h("dd", { class: province.notices_overdue ? "text-alert" : "" }, formatNumber(province.notices_overdue)),
    h("dt", {}, t("rollup.col.score")), h("dd", { class: "score" }, formatNumber(province.score))))));
}

function riskLegend() {
  return h("p", { class: "risk-legend muted" }, RISKS.map((risk) => h("span", { class: "risk-legend-item" },
    h("span", { class: `risk-swatch risk-${risk}`, "aria-hidden": "true" }), tOr("risk", risk))), " ", t("rollup.risk_hint"));
}

export async function render(view, { query }) {
  const tier = currentTier();
  if (!isUpperTier()) {
    view.append(h("div", { class: "toolbar" }, h("h1", {}, t("rollup.title"))),
      h("p", { class: "panel notice", "data-testid": "rollup-not-here" }, t("rollup.not_here")));
    return undefined;
  }
  const provinceId = tier.tier === "national" ? query.get("province") || "" : "";
  const charts = new ChartSet();
  const heading = h("h1", { "data-testid": "rollup-title" }, t("rollup.title"));
  const summary = h("p", { class: "total", "data-testid": "rollup-summary" });
  const body = h("div", { "data-testid": "rollup", "data-tier": tier.tier }, h("p", { class: "loading" }, t("common.loading")));
  const back = provinceId ? h("a", { href: "#/rollup", class: "back", "data-testid": "rollup-back" }, `← ${t("rollup.all_provinces")}`) : null;
  view.append(h("div", { class: "toolbar" }, back, heading, summary), body);
  const chart = h("div", { class: "chart chart-rollup", "data-testid": "rollup-chart", role: "img", "aria-label": t("rollup.chart") });
  let drawn = null;

  async function load() {
    const reply = await get("rollup");
    if (!view.isConnected) return;
    const provinces = reply.provinces ?? [];
    let enterprises = reply.enterprises ?? [];
    if (tier.tier === "national" && !provinceId) {
      heading.textContent = t("rollup.national_title");
      summary.textContent = t("rollup.provinces_total", { count: formatNumber(provinces.length),
        enterprises: formatNumber(enterprises.length) });
      fill(body,
        h("section", { class: "panel" }, h("h2", {}, t("rollup.provinces")), riskLegend(), provinceGrid(provinces)),
        h("section", { class: "panel" }, h("h2", {}, t("rollup.top_enterprises")),
          enterpriseTable(enterprises.slice(0, 10), load, new Map(provinces.map((item) => [item.id, item.name])))));
      return;
    }
    if (provinceId) {
      const province = provinces.find((item) => item.id === provinceId);
      enterprises = enterprises.filter((org) => org.parent === provinceId);
      heading.textContent = t("rollup.province_title", { name: province?.name || provinceId });
      heading.dataset.province = provinceId;
    } else {
      heading.textContent = t("rollup.province_ranking", { name: tier.name || tier.id });
    }
    summary.textContent = t("rollup.enterprises_total", { count: formatNumber(enterprises.length),
      key: formatNumber(enterprises.filter((org) => org.key_enterprise).length) });
    if (!drawn) {
      drawn = { table: h("section", { class: "panel panel-flush", "data-slot": "table" }) };
      fill(body, h("section", { class: "panel" }, h("h2", {}, t("rollup.chart")), chart), drawn.table);
    }
    fill(drawn.table, enterpriseTable(enterprises, load));
    chart.dataset.bars = String(Math.min(enterprises.length, 30));
    const bars = charts.draw(chart, chartOption(enterprises));
    bars.off("click");
    bars.on("click", (params) => {
      const { orgId, severity } = params.data ?? {};
      if (orgId) location.hash = alertsOf(orgId, severity ? { severity } : {}).slice(1);
    });
  }

  let pending = null;
  const stopLive = onLiveAlert(() => {
    clearTimeout(pending);
    pending = setTimeout(() => load().catch(() => {}), 2000);
  });
  const cleanup = () => {
    stopLive();
    clearTimeout(pending);
    charts.dispose();
  };
  try {
    await load();
  } catch (error) {
    cleanup();
    throw error;
  }
  return cleanup;
}
