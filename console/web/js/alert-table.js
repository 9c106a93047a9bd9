// The alert table used by the alert list, the overview and the asset page.
import { h } from "./dom.js";
import { t } from "./i18n.js";
import { alertSeverity, alertStatus, alertTitle, endpoint, formatNumber, severityBadge, statusBadge, techniques, timeCell } from "./format.js";

export function alertHref(alert) {
  return `#/alerts/${encodeURIComponent(alert.event?.id ?? "")}`;
}

export function alertRow(alert, { compact = false } = {}) {
  const severity = alertSeverity(alert);
  const open = () => { location.hash = alertHref(alert).slice(1); };
  const row = h("tr", {
    class: `alert-row sev-row-${severity}`, "data-testid": "alert-row", "data-alert-id": alert.event?.id ?? "",
    "data-severity": severity, "data-status": alertStatus(alert),
    onclick: (event) => { if (!event.target.closest("a, button")) open(); },
  },
  h("td", { class: "nowrap" }, timeCell(alert["@timestamp"])),
  h("td", {}, severityBadge(severity)),
  h("td", { class: "alert-title" }, h("a", { href: alertHref(alert), "data-testid": "alert-link" }, alertTitle(alert))),
  compact ? null : h("td", { class: "nowrap mono" }, alert.rule?.id ?? ""),
  compact ? null : h("td", { class: "mono" }, techniques(alert).map((tech) =>
    h("span", { class: "tech", title: tech.name }, tech.id))),
  h("td", { class: "nowrap mono" }, `${endpoint(alert.source)} → ${endpoint(alert.destination)}`),
  compact ? null : h("td", {}, (alert.network?.protocol ?? "").toUpperCase()),
  compact ? null : h("td", { class: "num" }, formatNumber(alert.event?.count ?? 1)),
  h("td", {}, statusBadge(alertStatus(alert))));
  return row;
}

export function alertTable(alerts, { compact = false, testid = "alerts-table" } = {}) {
  const head = [
    t("alerts.col.time"), t("alerts.col.severity"), t("alerts.col.title"),
    compact ? null : t("alerts.col.rule"), compact ? null : t("alerts.col.techniques"),
    t("alerts.col.endpoints"), compact ? null : t("alerts.col.protocol"),
    compact ? null : t("alerts.col.count"), t("alerts.col.status"),
  ].filter((label) => label !== null);
  return h("table", { class: "table alerts-table", "data-testid": testid },
    h("thead", {}, h("tr", {}, head.map((label) => h("th", { scope: "col" }, label)))),
    h("tbody", {}, alerts.map((alert) => alertRow(alert, { compact }))));
}
