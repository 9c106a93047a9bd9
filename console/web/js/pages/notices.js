// Notices: the list (filters by status and lateness kept in the address),
// overdue ones flagged, and at a province or the national centre the form
// that issues a notice to an enterprise below it.
import { api, get } from "../api.js";
import { field, fill, h, select } from "../dom.js";
import { t } from "../i18n.js";
import { formatNumber, timeCell } from "../format.js";
import { NOTICE_STATUSES, noticeStatusBadge, orgCell, organizations, overdueBadge } from "../notice-view.js";
import { href, replaceQuery, toSearch } from "../router.js";
import { may } from "../session.js";
import { isUpperTier } from "../tier.js";
import { showSuccess } from "../toast.js";

const DEFAULT_DAYS = 7;
const pad = (n) => String(n).padStart(2, "0");

/** A datetime-local value (the browser's local time), `days` from now. */
function localInput(days) {
  const date = new Date(Date.now() + days * 86400 * 1000);
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function noticeTable(notices, orgs) {
  if (!notices.length) return h("p", { class: "empty", "data-testid": "notices-empty" }, t("notices.empty"));
  const columns = ["title", "target", "issuer", "status", "deadline", "updated"];
  return h("table", { class: "table notices-table", "data-testid": "notices-table" },
    h("thead", {}, h("tr", {}, columns.map((column) => h("th", { scope: "col" }, t(`notices.col.${column}`))))),
    h("tbody", {}, notices.map((notice) => h("tr", {
      class: `notice-row ${notice.overdue ? "notice-row-overdue" : ""}`, "data-testid": "notice-row",
      "data-notice-id": notice.id, "data-status": notice.status, "data-overdue": String(Boolean(notice.overdue)),
      onclick: (event) => {
        if (!event.target.closest("a, button")) location.hash = `/notices/${encodeURIComponent(notice.id)}`;
      },
    },
    h("td", { class: "notice-title" }, h("a", { href: `#/notices/${encodeURIComponent(notice.id)}`, "data-testid": "notice-link" }, notice.title),
      notice.alert_id ? h("div", { class: "muted small" }, t("notices.about_alert"), " ",
        h("a", { class: "mono", href: `#/alerts/${encodeURIComponent(notice.alert_id)}` }, notice.alert_id.slice(0, 12))) : null),
    h("td", {}, orgCell(orgs, notice.target)),
    h("td", {}, orgCell(orgs, notice.issuer)),
    h("td", {}, noticeStatusBadge(notice.status)),
    h("td", { class: `nowrap ${notice.overdue ? "text-alert" : ""}` }, timeCell(notice.deadline), " ", overdueBadge(notice)),
    h("td", { class: "nowrap" }, timeCell(notice.updated))))));
}

function issueForm(orgs, query, onIssued) {
  const enterprises = [...orgs.values()].filter((org) => org.kind === "enterprise");
  const wanted = query.get("target") ?? "";
  const target = select({ id: "notice-target", name: "target", "data-testid": "notice-target", required: true },
    [["", t("notices.choose_target")], ...enterprises.map((org) => [org.id,
      org.name && org.name !== org.id ? `${org.name} (${org.id})` : org.id])],
    enterprises.some((org) => org.id === wanted) ? wanted : "");
  const title = h("input", { id: "notice-title", name: "title", "data-testid": "notice-title", maxlength: 200,
    value: query.get("title") ?? "", required: true });
  const action = h("textarea", { id: "notice-required-action", name: "required_action", "data-testid": "notice-required-action",
    rows: 3, maxlength: 4000, required: true });
  const deadline = h("input", { id: "notice-deadline", name: "deadline", type: "datetime-local", "data-testid": "notice-deadline",
    value: localInput(DEFAULT_DAYS), required: true });
  const alertId = h("input", { id: "notice-alert", name: "alert_id", "data-testid": "notice-alert", maxlength: 200,
    value: query.get("alert_id") ?? "", class: "mono" });
  const asset = h("input", { id: "notice-asset", name: "asset", "data-testid": "notice-asset", maxlength: 200,
    value: query.get("asset") ?? "", class: "mono", placeholder: t("filters.asset_placeholder") });
  const message = h("p", { class: "form-error", role: "alert", "data-testid": "notice-error", hidden: true });
  const submit = h("button", { type: "submit", class: "button-primary", "data-testid": "notice-submit" }, t("notices.issue"));

  function fail(text, input) {
    message.textContent = text;
    message.hidden = false;
    input?.focus();
  }

  const form = h("form", { class: "panel notice-form", "data-testid": "notice-form", novalidate: true },
    h("h2", {}, t("notices.issue_title")),
    h("div", { class: "form-grid" },
      field(t("notices.target"), target),
      field(t("notices.deadline"), deadline),
      field(t("notices.title_label"), title, "form-wide"),
      field(t("notices.required_action"), action, "form-wide"),
      field(t("notices.alert_id"), alertId),
      field(t("notices.asset"), asset)),
    message,
    h("div", { class: "field-buttons" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.hidden = true;
    if (!target.value) return fail(t("notices.need_target"), target);
    if (!title.value.trim()) return fail(t("notices.need_title"), title);
    if (!action.value.trim()) return fail(t("notices.need_action"), action);
    const when = new Date(deadline.value);
    if (!deadline.value || Number.isNaN(when.getTime())) return fail(t("notices.need_deadline"), deadline);
    if (when.getTime() <= Date.now()) return fail(t("notices.deadline_past"), deadline);
    submit.disabled = true;
    try {
      const notice = await api("notices", { method: "POST", json: {
        target: target.value, title: title.value.trim(), required_action: action.value.trim(),
        deadline: when.toISOString(), alert_id: alertId.value.trim() || null, asset: asset.value.trim() || null,
      } });
      showSuccess(t("notices.issued", { title: notice?.title ?? title.value.trim() }));
      title.value = "";
      action.value = "";
      await onIssued(notice);
    } catch (error) {
      if (error.status !== 401) fail(error.detail);
    } finally {
      submit.disabled = false;
    }
    return undefined;
  });
  return form;
}

export async function render(view, { query }) {
  const filters = { status: query.get("status") ?? "", overdue: query.get("overdue") ?? "", target: query.get("target") ?? "" };
  const orgs = await organizations();
  if (!view.isConnected) return;
  const canIssue = isUpperTier() && may("analyst");

  const status = select({ id: "notices-status", "data-testid": "notices-status" },
    [["", t("filters.any")], ...NOTICE_STATUSES.map((value) => [value, t(`notice_status.${value}`)])], filters.status);
  const overdue = select({ id: "notices-overdue", "data-testid": "notices-overdue" },
    [["", t("filters.any")], ["true", t("notices.only_overdue")], ["false", t("notices.not_overdue")]], filters.overdue);
  const targets = [...orgs.values()].filter((org) => org.kind === "enterprise");
  const target = select({ id: "notices-target", "data-testid": "notices-target" },
    [["", t("filters.any")], ...targets.map((org) => [org.id, org.name || org.id]),
      ...(filters.target && !orgs.has(filters.target) ? [[filters.target, filters.target]] : [])], filters.target);
  const filterForm = h("form", { class: "filters", "data-testid": "notice-filters", role: "search" },
    field(t("notices.filter_status"), status),
    field(t("notices.filter_overdue"), overdue),
    targets.length || filters.target ? field(t("notices.filter_target"), target) : null);
  const total = h("p", { class: "total", "data-testid": "notices-total", "aria-live": "polite" });
  const results = h("div", { class: "panel panel-flush" }, h("p", { class: "loading" }, t("common.loading")));
  const form = canIssue ? issueForm(orgs, query, async () => {
    form.hidden = true;
    toggle.setAttribute("aria-expanded", "false");
    for (const name of ["status", "overdue"]) filters[name] = "";
    status.value = "";
    overdue.value = "";
    replaceQuery(toSearch({ target: filters.target }));
    await load();
  }) : null;
  const toggle = canIssue ? h("button", { type: "button", class: "button-primary", "data-testid": "notice-new",
    "aria-expanded": "false" }, t("notices.issue_title")) : null;
  if (form) {
    form.hidden = query.get("issue") !== "1";
    toggle.setAttribute("aria-expanded", String(!form.hidden));
    toggle.addEventListener("click", () => {
      form.hidden = !form.hidden;
      toggle.setAttribute("aria-expanded", String(!form.hidden));
      if (!form.hidden) form.querySelector("select, input")?.focus();
    });
  }
  view.append(h("div", { class: "toolbar" }, h("h1", {}, t("notices.title")), total, toggle),
    form, filterForm, results);

  let sequence = 0;
  async function load() {
    const mine = ++sequence;
    const reply = await get("notices", { status: filters.status, overdue: filters.overdue, target: filters.target });
    if (mine !== sequence || !view.isConnected) return;
    const notices = reply.notices ?? [];
    const late = notices.filter((notice) => notice.overdue).length;
    total.dataset.total = String(notices.length);
    total.textContent = late ? t("notices.total_overdue", { count: formatNumber(notices.length), overdue: formatNumber(late) })
      : t("notices.total", { count: formatNumber(notices.length) });
    fill(results, noticeTable(notices, orgs));
  }
  filterForm.addEventListener("change", () => {
    filters.status = status.value;
    filters.overdue = overdue.value;
    filters.target = target.value;
    replaceQuery(toSearch(filters));
    load().catch(() => {});
  });
  filterForm.addEventListener("submit", (event) => event.preventDefault());
  await load();
}

/** Where "Issue notice" on an alert leads: the form, filled in from the alert. */
export function issueHref(values) {
  return href("/notices", toSearch({ issue: "1", ...values }));
}
