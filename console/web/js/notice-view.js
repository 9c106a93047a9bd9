// Pieces the notice list and the notice page share: statuses, badges and
// organisation names.
import { get } from "./api.js";
import { h } from "./dom.js";
import { t, tOr } from "./i18n.js";

export const NOTICE_STATUSES = ["issued", "accepted", "in_progress", "rectified", "closed", "reopened"];

export function noticeStatusBadge(status) {
  return h("span", { class: `badge notice-status notice-status-${status}`, "data-testid": "notice-status",
    "data-status": status }, tOr("notice_status", status));
}

export function overdueBadge(notice) {
  return notice.overdue
    ? h("span", { class: "badge overdue-badge", "data-testid": "notice-overdue" }, t("notices.overdue"))
    : null;
}

/** id -> organisation, for the organisations the user may see (empty when the API refuses). */
export async function organizations() {
  const reply = await get("orgs", undefined, { quiet: true }).catch(() => ({ organizations: [] }));
  return new Map((reply.organizations ?? []).map((org) => [org.id, org]));
}

export function orgName(orgs, id) {
  if (!id) return "";
  const org = orgs.get(id);
  return org?.name && org.name !== id ? org.name : id;
}

export function orgCell(orgs, id) {
  const name = orgName(orgs, id);
  return h("span", { title: id }, name, name !== id ? h("span", { class: "muted mono small" }, ` ${id}`) : null);
}
