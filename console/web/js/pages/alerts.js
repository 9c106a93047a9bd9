// Alert list: filters (kept in the address), newest/oldest order, cursor
// pagination ("load more"), the total, and live alerts prepended as they come.
import { get } from "../api.js";
import { alertRow, alertTable } from "../alert-table.js";
import { field, fill, h, select } from "../dom.js";
import { t } from "../i18n.js";
import { SEVERITIES, STATUSES, alertSeverity, alertStatus, alertTitle, formatNumber, rangeOptions, rangeStart, ruleTitle, techniqueName, techniques } from "../format.js";
import { onLiveAlert } from "../live.js";
import { replaceQuery, toSearch } from "../router.js";
import { isUpperTier } from "../tier.js";

const PAGE_SIZE = 50;
const SINGLE = ["range", "protocol", "rule", "technique", "asset", "organization", "q", "order", "size"];

/** The filters named in the address: {range, severity: [...], status: [...], ...}. */
function readFilters(query) {
  const filters = { severity: query.getAll("severity"), status: query.getAll("status") };
  for (const name of SINGLE) filters[name] = query.get(name) ?? "";
  if (!filters.range) filters.range = "all";
  if (filters.order !== "asc") filters.order = "desc";
  // Page size: not a control, but kept when given in the address (#/alerts?size=200).
  const size = Number.parseInt(filters.size, 10);
  filters.size = size >= 1 && size <= 500 ? String(size) : "";
  return filters;
}

function addressOf(filters) {
  return toSearch({ ...filters, range: filters.range === "all" ? "" : filters.range,
    order: filters.order === "desc" ? "" : filters.order });
}

function apiQuery(filters) {
  const { range, size, ...rest } = filters;
  return { ...rest, start: rangeStart(range), size: size || PAGE_SIZE };
}

/** Whether a live alert belongs in the list as filtered (the API's rules, client side). */
function matches(alert, filters) {
  const start = rangeStart(filters.range);
  if (start && (alert["@timestamp"] ?? "") < start) return false;
  if (filters.severity.length && !filters.severity.includes(alertSeverity(alert))) return false;
  if (filters.status.length && !filters.status.includes(alertStatus(alert))) return false;
  if (filters.protocol && alert.network?.protocol !== filters.protocol) return false;
  if (filters.rule && alert.rule?.id !== filters.rule) return false;
  if (filters.technique && !techniques(alert).some((tech) => tech.id === filters.technique)) return false;
  if (filters.asset && alert.source?.ip !== filters.asset && alert.destination?.ip !== filters.asset) return false;
  if (filters.organization && alert.organization?.id !== filters.organization) return false;
  if (filters.q) {
    const text = [alert.rule?.name, alert.message, alert.ics?.alert?.title_zh, alertTitle(alert)].join(" ").toLowerCase();
    if (!text.includes(filters.q.toLowerCase())) return false;
  }
  return true;
}

async function choices() {
  const quiet = { quiet: true };
  const [protocols, rules, techniquesTop, orgs] = await Promise.all([
    get("stats/top", { field: "network.protocol", size: 50 }, quiet).catch(() => ({ buckets: [] })),
    get("rules", undefined, quiet).catch(() => ({ rules: [] })),
    get("stats/top", { field: "threat.technique.id", size: 100 }, quiet).catch(() => ({ buckets: [] })),
    isUpperTier() ? get("orgs", undefined, quiet).catch(() => ({ organizations: [] })) : { organizations: [] },
  ]);
  return {
    protocols: (protocols.buckets ?? []).map((bucket) => bucket.value),
    rules: rules.rules ?? [],
    techniques: (techniquesTop.buckets ?? []).map((bucket) => bucket.value),
    enterprises: (orgs.organizations ?? []).filter((org) => org.kind === "enterprise"),
  };
}

function withCurrent(values, current) {
  return current && !values.includes(current) ? [...values, current] : values;
}

export async function render(view, { query }) {
  let filters = readFilters(query);
  const options = await choices();
  if (!view.isConnected) return undefined;

  const severityBoxes = SEVERITIES.map((severity) => h("label", { class: `check sev-check sev-check-${severity}` },
    h("input", { type: "checkbox", name: "severity", value: severity, id: `filter-severity-${severity}`,
      "data-testid": `filter-severity-${severity}`, checked: filters.severity.includes(severity) }),
    t(`severity.${severity}`)));
  const controls = {
    range: select({ id: "filter-range", name: "range", "data-testid": "filter-range" }, rangeOptions(), filters.range),
    status: select({ id: "filter-status", name: "status", "data-testid": "filter-status" },
      [["", t("filters.any")], ...STATUSES.map((status) => [status, t(`status.${status}`)])], filters.status[0] ?? ""),
    protocol: select({ id: "filter-protocol", name: "protocol", "data-testid": "filter-protocol" },
      [["", t("filters.any")], ...withCurrent(options.protocols, filters.protocol).map((p) => [p, p.toUpperCase()])], filters.protocol),
    rule: select({ id: "filter-rule", name: "rule", "data-testid": "filter-rule" },
      [["", t("filters.any")], ...withCurrent(options.rules.map((rule) => rule.id), filters.rule).map((id) => {
        const rule = options.rules.find((item) => item.id === id);
        return [id, rule ? `${id} · ${ruleTitle(rule)}` : id];
      })], filters.rule),
    technique: h("input", { id: "filter-technique", name: "technique", "data-testid": "filter-technique",
      list: "technique-choices", value: filters.technique, placeholder: "T0855", size: 8 }),
    asset: h("input", { id: "filter-asset", name: "asset", "data-testid": "filter-asset", value: filters.asset,
      placeholder: t("filters.asset_placeholder"), size: 14 }),
    organization: select({ id: "filter-organization", name: "organization", "data-testid": "filter-organization" },
      [["", t("filters.any")], ...withCurrent(options.enterprises.map((org) => org.id), filters.organization).map((id) => {
        const org = options.enterprises.find((item) => item.id === id);
        return [id, org && org.name !== id ? `${org.name} (${id})` : id];
      })], filters.organization),
    q: h("input", { id: "filter-q", name: "q", type: "search", "data-testid": "filter-q", value: filters.q,
      placeholder: t("filters.q_placeholder") }),
    order: select({ id: "filter-order", name: "order", "data-testid": "filter-order" },
      [["desc", t("filters.newest")], ["asc", t("filters.oldest")]], filters.order),
  };
  const form = h("form", { class: "filters", id: "alert-filters", "data-testid": "alert-filters", role: "search" },
    field(t("filters.range"), controls.range),
    h("fieldset", { class: "field severity-field" }, h("legend", { class: "field-label" }, t("filters.severity")), severityBoxes),
    field(t("filters.status"), controls.status),
    field(t("filters.protocol"), controls.protocol),
    field(t("filters.rule"), controls.rule, "field-rule"),
    field(t("filters.technique"), controls.technique),
    field(t("filters.asset"), controls.asset),
    isUpperTier() || filters.organization ? field(t("filters.organization"), controls.organization) : null,
    field(t("filters.q"), controls.q, "field-grow"),
    field(t("filters.order"), controls.order),
    h("div", { class: "field-buttons" },
      h("button", { type: "submit", class: "button-primary", "data-testid": "filter-apply" }, t("filters.apply")),
      h("button", { type: "button", "data-testid": "filter-reset", onclick: () => reset() }, t("filters.reset"))),
    h("datalist", { id: "technique-choices" }, options.techniques.map((id) => h("option", { value: id, label: techniqueName(id) || null }))));

  const total = h("p", { class: "total", "data-testid": "alerts-total", "aria-live": "polite" });
  const results = h("div", { class: "results" });
  const more = h("button", { type: "button", class: "load-more", "data-testid": "alerts-load-more", hidden: true }, t("alerts.load_more"));
  view.append(h("div", { class: "toolbar" }, h("h1", {}, t("alerts.title")), total), form, h("div", { class: "panel panel-flush" }, results, more));

  let cursor = null;
  let count = 0;
  let shownKey = null;
  let sequence = 0;
  let tbody = null;

  function formFilters() {
    return {
      range: controls.range.value,
      severity: severityBoxes.map((label) => label.querySelector("input")).filter((box) => box.checked).map((box) => box.value),
      status: controls.status.value ? [controls.status.value] : [],
      protocol: controls.protocol.value, rule: controls.rule.value,
      technique: controls.technique.value.trim().toUpperCase(), asset: controls.asset.value.trim(),
      organization: controls.organization.value,
      q: controls.q.value.trim(), order: controls.order.value, size: filters.size,
    };
  }

  function showTotal() {
    total.dataset.total = String(count);
    total.textContent = t("alerts.total", { count: formatNumber(count) });
  }

  async function load(append = false) {
    const mine = ++sequence;
    const reply = await get("alerts", { ...apiQuery(filters), cursor: append ? cursor : undefined });
    if (mine !== sequence || !view.isConnected) return;
    cursor = reply.cursor ?? null;
    count = reply.total ?? reply.alerts.length;
    showTotal();
    if (!append) {
      if (reply.alerts.length) {
        const table = alertTable(reply.alerts);
        tbody = table.tBodies[0];
        fill(results, table);
      } else {
        tbody = null;
        fill(results, h("p", { class: "empty", "data-testid": "alerts-empty" }, t("alerts.empty")));
      }
    } else if (tbody) {
      for (const alert of reply.alerts) tbody.append(alertRow(alert));
    }
    more.hidden = !cursor;
  }

  function apply() {
    const next = formFilters();
    const key = addressOf(next).toString();
    if (key === shownKey) return;
    shownKey = key;
    filters = next;
    replaceQuery(addressOf(filters));
    load().catch(() => {});
  }

  function reset() {
    for (const box of severityBoxes) box.querySelector("input").checked = false;
    controls.range.value = "all";
    controls.order.value = "desc";
    for (const name of ["status", "protocol", "rule", "technique", "asset", "organization", "q"]) controls[name].value = "";
    apply();
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    apply();
  });
  form.addEventListener("change", apply);
  more.addEventListener("click", async () => {
    more.disabled = true;
    try {
      await load(true);
    } finally {
      more.disabled = false;
    }
  });

  const stopLive = onLiveAlert((alert) => {
    if (!matches(alert, filters)) return;
    count += 1;
    showTotal();
    if (filters.order !== "desc") return; // oldest first: it belongs on the last page
    if (!tbody) {
      const table = alertTable([]);
      tbody = table.tBodies[0];
      fill(results, table);
    }
    const row = alertRow(alert);
    row.classList.add("row-new");
    tbody.prepend(row);
  });

  shownKey = addressOf(filters).toString();
  try {
    await load();
  } catch (error) {
    stopLive();
    throw error;
  }
  return stopLive;
}
