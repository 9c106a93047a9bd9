// One alert: every ECS field readable, ATT&CK techniques, the triage panel,
// the audit trail and the decoded sample events.
import { api, get } from "../api.js";
import { fill, h } from "../dom.js";
import { t, tOr } from "../i18n.js";
import { alertDescription, alertExplanation, alertSeverity, alertStatus, alertTitle, endpoint, formatNumber, severityBadge, statusBadge, techniques, timeCell } from "../format.js";
import { eventsTable, formatValue } from "../events.js";
import { issueHref } from "./notices.js";
import { may } from "../session.js";
import { isUpperTier } from "../tier.js";
import { showError, showSuccess } from "../toast.js";

function facts(rows) {
  return h("dl", { class: "facts" }, rows.filter(Boolean).map(([label, value, testid]) => [
    h("dt", {}, label), h("dd", testid ? { "data-testid": testid } : {}, value ?? ""),
  ]));
}

function side(title, value) {
  return h("div", { class: "endpoint-box" },
    h("div", { class: "muted" }, title),
    h("div", { class: "mono endpoint-ip" }, value?.ip
      ? h("a", { href: `#/assets/${encodeURIComponent(value.ip)}`, title: t("alert.open_asset") }, endpoint(value)) : "—"),
    value?.mac ? h("div", { class: "mono muted" }, value.mac) : null);
}

/** Every field of the ECS document as "dotted.name = value", sample events left out. */
function flatten(doc, prefix = "", out = []) {
  for (const [name, value] of Object.entries(doc ?? {})) {
    const key = prefix ? `${prefix}.${name}` : name;
    if (key === "ics.alert.events") continue;
    if (value && typeof value === "object" && !Array.isArray(value)) flatten(value, key, out);
    else out.push([key, formatValue(value, 64)]);
  }
  return out;
}

function auditList(audit) {
  if (!audit?.length) return h("p", { class: "empty", "data-testid": "audit-empty" }, t("audit.none"));
  return h("ol", { class: "audit", "data-testid": "audit-list" }, audit.map((entry) => h("li", {
    "data-testid": "audit-entry", "data-action": entry.action,
  },
  h("div", { class: "audit-head" }, timeCell(entry.at), " · ", h("strong", {}, entry.user), " · ",
    h("span", { class: "audit-action" }, tOr("action", entry.action))),
  entry.status ? h("div", {}, `${t("audit.status")}: `, tOr("status", entry.status)) : null,
  entry.assignee ? h("div", {}, `${t("audit.assignee")}: ${entry.assignee}`) : null,
  entry.reason ? h("div", {}, `${t("audit.reason")}: ${entry.reason}`) : null,
  entry.comment ? h("div", { class: "audit-comment" }, entry.comment) : null)));
}

function triagePanel(alert, act) {
  const status = alertStatus(alert);
  const allowed = may("analyst");
  const closed = status === "closed" || status === "false_positive";
  const assignee = h("input", { id: "triage-assignee", "data-testid": "triage-assignee", autocomplete: "off",
    value: alert.ics?.alert?.assignee ?? "", disabled: !allowed });
  const reason = h("input", { id: "triage-reason", "data-testid": "triage-reason", disabled: !allowed });
  const comment = h("textarea", { id: "triage-comment-text", "data-testid": "triage-comment-text", rows: 2, disabled: !allowed });
  const message = h("p", { class: "form-error", role: "alert", "data-testid": "triage-error", hidden: true });

  const button = (action, enabled, onclick, primary = false) => h("button", {
    type: "button", "data-testid": `triage-${action}`, id: `triage-${action}`, class: primary ? "button-primary" : "",
    disabled: !allowed || !enabled, title: allowed ? null : t("triage.viewer_hint"),
    onclick,
  }, t(`triage.${action}`));

  function need(input, key) {
    if (input.value.trim()) return true;
    message.textContent = t(key);
    message.hidden = false;
    input.focus();
    return false;
  }
  const send = (body) => {
    message.hidden = true;
    const text = comment.value.trim();
    act({ ...body, ...(text && body.comment === undefined ? { comment: text } : {}) }, message);
  };

  return h("section", { class: "panel triage", "data-testid": "triage-panel" },
    h("h2", {}, t("triage.title")),
    facts([
      [t("triage.status"), statusBadge(status), "alert-status"],
      [t("triage.assignee"), alert.ics?.alert?.assignee || "—", "alert-assignee"],
      alert.ics?.alert?.resolution ? [t("triage.resolution"), alert.ics.alert.resolution] : null,
    ]),
    allowed ? null : h("p", { class: "notice", "data-testid": "triage-readonly" }, t("triage.viewer_hint")),
    h("div", { class: "triage-buttons" },
      button("acknowledge", status === "open", () => send({ action: "acknowledge" }), true),
      button("reopen", closed, () => send({ action: "reopen" }))),
    h("label", { for: "triage-assignee" }, t("triage.assignee_label")),
    h("div", { class: "inline-form" }, assignee,
      button("assign", true, () => need(assignee, "triage.need_assignee") && send({ action: "assign", assignee: assignee.value.trim() }))),
    h("label", { for: "triage-reason" }, t("triage.reason_label")),
    h("div", { class: "inline-form" }, reason,
      button("close", !closed, () => need(reason, "triage.need_reason") && send({ action: "close", reason: reason.value.trim() })),
      button("false_positive", !closed, () => need(reason, "triage.need_reason") && send({ action: "false_positive", reason: reason.value.trim() }))),
    h("label", { for: "triage-comment-text" }, t("triage.comment_label")),
    comment,
    h("div", { class: "triage-buttons" },
      button("comment", true, () => need(comment, "triage.need_comment") && send({ action: "comment", comment: comment.value.trim() }))),
    message);
}

function renderAlert(view, alert, audit, act) {
  const severity = alertSeverity(alert);
  const event = alert.event ?? {};
  const rule = alert.rule ?? {};
  const references = [].concat(rule.reference ?? []).filter(Boolean);
  fill(view,
    h("div", { class: "toolbar" },
      h("a", { href: "#/alerts", class: "back", "data-testid": "back-to-alerts" }, `← ${t("alert.back")}`),
      isUpperTier() && may("analyst") && alert.organization?.id
        ? h("a", { class: "button-link", "data-testid": "alert-issue-notice", href: issueHref({
          target: alert.organization.id, alert_id: event.id ?? "", asset: alert.destination?.ip ?? "",
          title: alertTitle(alert) }) }, t("alert.issue_notice"))
        : null),
    h("header", { class: `alert-header sev-border-${severity}` },
      severityBadge(severity), " ",
      h("h1", { "data-testid": "alert-title" }, alertTitle(alert)), " ",
      statusBadge(alertStatus(alert))),
    h("div", { class: "grid grid-2-1" },
      h("div", {},
        h("section", { class: "panel" },
          h("h2", {}, t("alert.what")),
          h("p", { class: "explanation", "data-testid": "alert-explanation" }, alertExplanation(alert)),
          alertDescription(alert) ? h("p", { class: "muted", "data-testid": "alert-description" }, alertDescription(alert)) : null,
          h("div", { class: "flow" }, side(t("alert.source"), alert.source), h("span", { class: "arrow", "aria-hidden": "true" }, "→"),
            side(t("alert.destination"), alert.destination)),
          facts([
            [t("alert.rule"), h("span", {}, h("a", { class: "mono", href: `#/alerts?rule=${encodeURIComponent(rule.id ?? "")}` }, rule.id ?? ""),
              " ", alertTitle(alert)), "alert-rule"],
            [t("alert.techniques"), h("ul", { class: "techniques", "data-testid": "alert-techniques" },
              techniques(alert).map((tech) => h("li", { "data-technique": tech.id }, h("a", { class: "mono", href: `#/alerts?technique=${encodeURIComponent(tech.id)}` }, tech.id), " ", tech.name)))],
            [t("alert.protocol"), `${(alert.network?.protocol ?? "").toUpperCase()} / ${(alert.network?.transport ?? "").toUpperCase()}`],
            [t("alert.first_seen"), timeCell(event.start ?? alert["@timestamp"])],
            [t("alert.last_seen"), timeCell(event.end ?? alert["@timestamp"])],
            [t("alert.count"), formatNumber(event.count ?? 1), "alert-count"],
            [t("alert.ingested"), event.ingested ? timeCell(event.ingested) : "—"],
            alert.organization ? [t("alert.organization"), alert.organization.name || alert.organization.id] : null,
            [t("alert.community_id"), h("span", { class: "mono" }, alert.network?.community_id ?? "")],
            [t("alert.id"), h("span", { class: "mono" }, event.id ?? "")],
            references.length ? [t("alert.references"), h("ul", {}, references.map((ref) => h("li", {},
              /^https?:\/\//.test(ref) ? h("a", { href: ref, target: "_blank", rel: "noopener noreferrer" }, ref) : ref)))] : null,
          ])),
        h("section", { class: "panel" },
          h("h2", {}, t("alert.events"), " ", h("span", { class: "muted" }, t("alert.events_hint"))),
          eventsTable(alert.ics?.alert?.events ?? [])),
        h("section", { class: "panel" },
          h("details", { "data-testid": "all-fields" }, h("summary", {}, t("alert.all_fields")),
            h("table", { class: "table fields-table" }, h("tbody", {}, flatten(alert).map(([key, value]) =>
              h("tr", {}, h("th", { class: "mono", scope: "row" }, key), h("td", { class: "mono" }, value)))))))),
      h("div", {},
        triagePanel(alert, act),
        h("section", { class: "panel" }, h("h2", {}, t("audit.title")), auditList(audit)))));
}

export async function render(view, { params }) {
  const id = params.id;
  const reply = await get(`alerts/${encodeURIComponent(id)}`);
  if (!view.isConnected) return;
  const act = async (body, message) => {
    try {
      const result = await api(`alerts/${encodeURIComponent(id)}/actions`, { method: "POST", json: body, quiet: true });
      showSuccess(t("triage.done", { action: tOr("action", body.action) }));
      renderAlert(view, result.alert, result.audit, act);
    } catch (error) {
      if (error.status === 401) return; // the API layer went to the login page
      message.textContent = error.detail;
      message.hidden = false;
      showError(error.detail);
    }
  };
  renderAlert(view, reply.alert, reply.audit, act);
}
