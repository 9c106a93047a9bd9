// How values look: times, numbers, severities, statuses, alert titles.
import { TECHNIQUE_NAMES_ZH } from "./attack.js";
import { h } from "./dom.js";
import { currentLanguage, t, tOr } from "./i18n.js";

export const SEVERITIES = ["critical", "high", "medium", "low"];
export const STATUSES = ["open", "acknowledged", "closed", "false_positive"];
export const SEVERITY_COLORS = {
  critical: "#d32f2f", high: "#f57c00", medium: "#fbc02d", low: "#1e88e5",
};

const pad = (n) => String(n).padStart(2, "0");

/** Local time, "2026-11-24 23:12:29"; the UTC original in the title. */
export function formatTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

export function timeCell(iso) {
  return h("time", { datetime: iso || "", title: iso || "" }, formatTime(iso));
}

/** "5 minutes ago" in the page's language. */
export function formatAgo(iso) {
  if (!iso) return "";
  const seconds = (new Date(iso).getTime() - Date.now()) / 1000;
  if (Number.isNaN(seconds)) return "";
  const format = new Intl.RelativeTimeFormat(currentLanguage(), { numeric: "auto" });
  const units = [["year", 31536000], ["month", 2592000], ["day", 86400], ["hour", 3600],
    ["minute", 60], ["second", 1]];
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size || unit === "second") {
      return format.format(Math.round(seconds / size), unit);
    }
  }
  return "";
}

export function formatNumber(value) {
  if (value === null || value === undefined || value === "") return "";
  if (typeof value !== "number") return String(value);
  return value.toLocaleString(currentLanguage());
}

export function formatBytes(value) {
  if (typeof value !== "number") return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let size = value;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return `${unit ? size.toFixed(1) : size} ${units[unit]}`;
}

export function severityBadge(severity) {
  return h("span", { class: `badge sev sev-${severity}`, "data-severity": severity },
    tOr("severity", severity));
}

export function statusBadge(status) {
  const value = status || "open";
  return h("span", { class: `badge status status-${value}`, "data-status": value },
    tOr("status", value));
}

export function alertSeverity(alert) {
  return alert?.ics?.alert?.severity ?? "low";
}

export function alertStatus(alert) {
  return alert?.ics?.alert?.status ?? "open";
}

/** The Chinese title in zh-CN, the rule's name otherwise. */
export function alertTitle(alert) {
  const zh = alert?.ics?.alert?.title_zh;
  if (currentLanguage() === "zh-CN" && zh) return zh;
  return alert?.rule?.name || zh || alert?.rule?.id || "";
}

export function ruleTitle(rule) {
  if (currentLanguage() === "zh-CN" && rule.title_zh) return rule.title_zh;
  return rule.title || rule.title_zh || rule.id;
}

const inChinese = () => currentLanguage() === "zh-CN";

/** What happened, with the values: the Chinese explanation in zh-CN when the rule has one. */
export function alertExplanation(alert) {
  const zh = alert?.ics?.alert?.reason_zh;
  if (inChinese() && zh) return zh;
  return alert?.event?.reason || alert?.message || "";
}

/** The rule's description in the page's language (English when there is no Chinese one). */
export function alertDescription(alert) {
  const zh = alert?.ics?.alert?.description_zh;
  if (inChinese() && zh) return zh;
  return alert?.rule?.description || "";
}

export function ruleDescription(rule) {
  if (inChinese() && rule.description_zh) return rule.description_zh;
  return rule.description || "";
}

/** A technique's name in the page's language: in zh-CN the Chinese name given
 * (`nameZh`), else the console's table, else the English name. */
export function techniqueName(id, name, nameZh) {
  if (inChinese()) return nameZh || TECHNIQUE_NAMES_ZH[id] || name || "";
  return name || "";
}

/** "127.0.0.1:40961" (IPv6 in brackets). */
export function endpoint(side) {
  if (!side?.ip) return "";
  const ip = side.ip.includes(":") ? `[${side.ip}]` : side.ip;
  return side.port !== undefined && side.port !== null ? `${ip}:${side.port}` : ip;
}

/** [{id, name}] from an alert's threat.technique, names in the page's language
 * (ics.alert.technique_names_zh, in the order of the ids, in zh-CN). */
export function techniques(alert) {
  const ids = [].concat(alert?.threat?.technique?.id ?? []);
  const names = [].concat(alert?.threat?.technique?.name ?? []);
  const namesZh = [].concat(alert?.ics?.alert?.technique_names_zh ?? []);
  return ids.map((id, index) => ({ id, name: techniqueName(id, names[index], namesZh[index]) }));
}

/** Time ranges the pages offer, as `start` for the API. */
export const RANGES = ["24h", "7d", "30d", "all"];
const RANGE_SECONDS = { "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400 };

export function rangeStart(range) {
  const seconds = RANGE_SECONDS[range];
  if (!seconds) return undefined;
  return new Date(Date.now() - seconds * 1000).toISOString();
}

export function rangeOptions() {
  return RANGES.map((range) => [range, t(`range.${range}`)]);
}

export function yesNo(value) {
  return value ? t("common.yes") : t("common.no");
}
