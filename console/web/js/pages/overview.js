// Overview dashboard: counts, the alert trend by severity, the severity mix,
// top techniques / rules / assets and the newest critical and high alerts.
import { get } from "../api.js";
import { alertTable } from "../alert-table.js";
import { ChartSet, escapeHtml } from "../charts.js";
import { fill, h, select } from "../dom.js";
import { t, tOr } from "../i18n.js";
import { SEVERITIES, SEVERITY_COLORS, formatNumber, formatTime, rangeOptions, rangeStart, ruleTitle, techniqueName } from "../format.js";
import { onLiveAlert } from "../live.js";
import { replaceQuery } from "../router.js";

function alertsLink(filters, content, attrs = {}) {
  const search = new URLSearchParams(filters).toString();
  return h("a", { href: `#/alerts${search ? `?${search}` : ""}`, ...attrs }, content);
}

function kpi(name, value, filters, severity) {
  return alertsLink(filters, [
    h("span", { class: "kpi-value", "data-testid": `kpi-${name}-value` }, formatNumber(value ?? 0)),
    h("span", { class: "kpi-label" }, name === "total" ? t("overview.kpi.total")
      : name === "open" ? t("overview.kpi.open") : tOr("severity", name)),
  ], { class: `kpi ${severity ? `kpi-${severity}` : ""}`, "data-testid": `kpi-${name}` });
}

/** A ranked list with proportional bars; each row links to the filtered alert list. */
function topList(testid, items, label, filter, range) {
  if (!items?.length) return h("p", { class: "empty" }, t("common.no_data"));
  const max = Math.max(...items.map((item) => item.count), 1);
  return h("ol", { class: "top-list", "data-testid": testid }, items.map((item) => h("li", {},
    alertsLink({ [filter]: item.value, ...(range !== "all" ? { range } : {}) }, [
      h("span", { class: "top-label" }, label(item)),
      h("span", { class: "top-count" }, formatNumber(item.count)),
      h("span", { class: "top-bar", style: `width:${Math.round((item.count / max) * 100)}%` }),
    ]))));
}

function bucketLabel(iso, interval) {
  const text = formatTime(iso);
  if (interval >= 86400) return text.slice(0, 10);
  if (interval >= 60) return text.slice(5, 16);
  return text.slice(11);
}

/** The API may leave empty buckets out; put them back so time stays to scale. */
export function fillBuckets(buckets, interval) {
  const sorted = [...buckets].sort((a, b) => Date.parse(a.start) - Date.parse(b.start));
  if (sorted.length < 2 || !(interval > 0)) return sorted;
  const step = interval * 1000;
  const first = Date.parse(sorted[0].start);
  const last = Date.parse(sorted[sorted.length - 1].start);
  if (!Number.isFinite(first) || !Number.isFinite(last) || (last - first) / step > 2000) return sorted;
  const known = new Map(sorted.map((bucket) => [Date.parse(bucket.start), bucket]));
  const filled = [];
  for (let time = first; time <= last; time += step) {
    filled.push(known.get(time) ?? { start: new Date(time).toISOString(), counts: {} });
  }
  return filled.length >= sorted.length ? filled : sorted;
}

function histogramOption(histogram) {
  const interval = histogram?.interval ?? 3600;
  const buckets = fillBuckets(histogram?.buckets ?? [], interval);
  const order = [...SEVERITIES].reverse(); // low at the top of the stack, critical at the base
  return {
    color: order.map((severity) => SEVERITY_COLORS[severity]),
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
    legend: { top: 0, data: SEVERITIES.map((severity) => t(`severity.${severity}`)) },
    grid: { left: 40, right: 12, top: 30, bottom: 28, containLabel: true },
    xAxis: { type: "category", data: buckets.map((bucket) => bucketLabel(bucket.start, interval)) },
    yAxis: { type: "value", minInterval: 1 },
    series: [...SEVERITIES].reverse().map((severity) => ({
      name: t(`severity.${severity}`), type: "bar", stack: "alerts", barMaxWidth: 28,
      itemStyle: { color: SEVERITY_COLORS[severity] },
      data: buckets.map((bucket) => bucket.counts?.[severity] ?? 0),
    })),
  };
}

function severityOption(bySeverity) {
  return {
    tooltip: { trigger: "item", formatter: (p) => `${escapeHtml(p.name)}: ${formatNumber(p.value)} (${p.percent}%)` },
    legend: { bottom: 0 },
    series: [{
      type: "pie", radius: ["45%", "72%"], center: ["50%", "45%"], avoidLabelOverlap: true,
      label: { formatter: "{b}\n{c}" },
      data: SEVERITIES.map((severity) => ({
        name: t(`severity.${severity}`), value: bySeverity?.[severity] ?? 0, severity,
        itemStyle: { color: SEVERITY_COLORS[severity] },
      })).filter((item) => item.value > 0),
    }],
  };
}

export async function render(view, { query }) {
  const charts = new ChartSet();
  let range = query.get("range") || "all";
  const rangeSelect = select({ id: "overview-range", "data-testid": "overview-range" }, rangeOptions(), range);
  const updated = h("span", { class: "muted", "data-testid": "overview-updated" });
  const body = h("div", { class: "overview", "data-testid": "overview" }, h("p", { class: "loading" }, t("common.loading")));
  view.append(
    h("div", { class: "toolbar" }, h("h1", {}, t("overview.title")),
      h("label", { class: "inline-field" }, h("span", {}, t("filters.range")), rangeSelect), updated),
    body);

  const trend = h("div", { class: "chart chart-trend", "data-testid": "chart-trend", role: "img", "aria-label": t("overview.trend") });
  const mix = h("div", { class: "chart chart-severity", "data-testid": "chart-severity", role: "img", "aria-label": t("overview.severity_mix") });
  let drawn = false;

  // Rule names in the page's language (the statistics carry the English name only).
  const ruleNames = await get("rules", undefined, { quiet: true })
    .then((reply) => new Map((reply.rules ?? []).map((rule) => [rule.id, rule]))).catch(() => new Map());

  async function load() {
    const stats = await get("stats/overview", { start: rangeStart(range) });
    const filters = range !== "all" ? { range } : {};
    if (!view.isConnected) return;
    if (!drawn) {
      fill(body,
        h("div", { class: "kpis", "data-testid": "kpis" }),
        h("div", { class: "grid grid-2-1" },
          h("section", { class: "panel" }, h("h2", {}, t("overview.trend")), trend),
          h("section", { class: "panel" }, h("h2", {}, t("overview.severity_mix")), mix)),
        h("div", { class: "grid grid-3" },
          h("section", { class: "panel", "data-slot": "techniques" }),
          h("section", { class: "panel", "data-slot": "rules" }),
          h("section", { class: "panel", "data-slot": "assets" })),
        h("section", { class: "panel", "data-slot": "newest" }));
      drawn = true;
    }
    fill(body.querySelector("[data-testid=kpis]"),
      kpi("total", stats.total, filters),
      SEVERITIES.map((severity) => kpi(severity, stats.by_severity?.[severity], { ...filters, severity }, severity)),
      kpi("open", stats.by_status?.open, { ...filters, status: "open" }));
    charts.draw(trend, histogramOption(stats.histogram));
    const pie = charts.draw(mix, severityOption(stats.by_severity));
    pie.off("click");
    pie.on("click", (params) => {
      const severity = params.data?.severity;
      if (severity) location.hash = `/alerts?${new URLSearchParams({ ...filters, severity })}`;
    });
    fill(body.querySelector("[data-slot=techniques]"), h("h2", {}, t("overview.top_techniques")),
      topList("top-techniques", stats.top_techniques, (item) => [h("span", { class: "mono" }, item.value), " ",
        techniqueName(item.value, item.name, item.name_zh)], "technique", range));
    fill(body.querySelector("[data-slot=rules]"), h("h2", {}, t("overview.top_rules")),
      topList("top-rules", stats.top_rules, (item) => [h("span", { class: "mono" }, item.value), " ",
        ruleNames.has(item.value) ? ruleTitle(ruleNames.get(item.value)) : item.name ?? ""], "rule", range));
    fill(body.querySelector("[data-slot=assets]"), h("h2", {}, t("overview.top_assets")),
      topList("top-assets", stats.top_assets, (item) => h("span", { class: "mono" }, item.value), "asset", range));
    const newest = stats.newest_critical ?? [];
    fill(body.querySelector("[data-slot=newest]"), h("h2", {}, t("overview.newest_critical")),
      newest.length ? alertTable(newest, { compact: true, testid: "newest-critical" })
        : h("p", { class: "empty" }, t("overview.no_critical")));
    updated.textContent = t("overview.updated", { time: formatTime(new Date().toISOString()) });
  }

  rangeSelect.addEventListener("change", () => {
    range = rangeSelect.value;
    replaceQuery(range === "all" ? {} : { range });
    load().catch(() => {});
  });

  let pending = null;
  const stopLive = onLiveAlert(() => {
    clearTimeout(pending);
    pending = setTimeout(() => load().catch(() => {}), 1500);
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
