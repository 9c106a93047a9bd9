// One notice: what is required by when, its steps as a timeline, and the
// steps either side may take (the enterprise accepts, starts and reports it
// rectified with evidence; the issuer closes or reopens it with a reason).
import { api, get } from "../api.js";
import { fill, h } from "../dom.js";
import { t, tOr } from "../i18n.js";
import { timeCell } from "../format.js";
import { noticeStatusBadge, orgCell, organizations, overdueBadge } from "../notice-view.js";
import { currentUser, may } from "../session.js";
import { ownOrganization } from "../tier.js";
import { showError, showSuccess } from "../toast.js";

// Which statuses each step may start from (the API's rules; it has the last word).
const FROM = {
  accept: ["issued", "reopened"],
  start: ["issued", "accepted", "reopened"],
  rectify: ["issued", "accepted", "in_progress", "reopened"],
  close: ["rectified"],
  reopen: ["rectified", "closed"],
  comment: null,
};
const TARGET_STEPS = ["accept", "start", "rectify"];
const ISSUER_STEPS = ["close", "reopen"];

/** Which side of the notice this user acts for: "issuer", "target" or null. The
 * user's organisation when the API names one, else this console's. */
function sideOf(notice) {
  const acting = currentUser()?.org || ownOrganization();
  if (acting && acting === notice.issuer) return "issuer";
  if (acting && acting === notice.target) return "target";
  return null;
}

function facts(rows) {
  return h("dl", { class: "facts" }, rows.filter(Boolean).map(([label, value, testid]) => [
    h("dt", {}, label), h("dd", testid ? { "data-testid": testid } : {}, value ?? ""),
  ]));
}

function stepText(step) {
  // The API gives text and evidence on the step; relayed ones may keep them in a body.
  return { text: step.text ?? step.body?.text ?? null, evidence: step.evidence ?? step.body?.evidence ?? null };
}

function timeline(steps, orgs) {
  if (!steps?.length) return h("p", { class: "empty" }, t("notice.no_steps"));
  return h("ol", { class: "audit notice-steps", "data-testid": "notice-steps" }, steps.map((step) => {
    const { text, evidence } = stepText(step);
    return h("li", { class: `notice-step step-${step.action}`, "data-testid": "notice-step", "data-action": step.action,
      "data-status": step.status },
    h("div", { class: "audit-head" }, timeCell(step.at), " · ", h("strong", {}, step.username), " · ",
      orgCell(orgs, step.org), " · ", h("span", { class: "audit-action" }, tOr("notice_action", step.action)),
      step.action !== "comment" ? [" → ", noticeStatusBadge(step.status)] : null),
    text ? h("div", { class: "audit-comment" }, text) : null,
    evidence ? h("div", { class: "audit-comment evidence" }, h("span", { class: "muted" }, `${t("notice.evidence")}: `), evidence) : null);
  }));
}

function stepPanel(notice, take) {
  const allowed = may("analyst");
  const side = sideOf(notice);
  const text = h("textarea", { id: "step-text", "data-testid": "step-text", rows: 2, maxlength: 4000, disabled: !allowed });
  const evidence = h("textarea", { id: "step-evidence", "data-testid": "step-evidence", rows: 2, maxlength: 4000, disabled: !allowed });
  const message = h("p", { class: "form-error", role: "alert", "data-testid": "step-error", hidden: true });
  function need(input, key) {
    if (input.value.trim()) return true;
    message.textContent = t(key);
    message.hidden = false;
    input.focus();
    return false;
  }
  function send(action) {
    message.hidden = true;
    if (action === "rectify" && !need(evidence, "notice.need_evidence")) return;
    if ((action === "reopen" || action === "comment") && !need(text, "notice.need_text")) return;
    const body = { action };
    if (text.value.trim()) body.text = text.value.trim();
    if (action === "rectify") body.evidence = evidence.value.trim();
    take(body, message);
  }
  const otherSide = (action) => (TARGET_STEPS.includes(action) && side !== "target" ? "notice.only_target"
    : ISSUER_STEPS.includes(action) && side !== "issuer" ? "notice.only_issuer" : null);
  const button = (action) => {
    const refusal = !allowed ? "notice.viewer_hint" : otherSide(action);
    return h("button", {
      type: "button", "data-testid": `step-${action}`, id: `step-${action}`,
      class: action === "close" || action === "rectify" ? "button-primary" : "",
      disabled: refusal !== null || (FROM[action] !== null && !FROM[action].includes(notice.status)),
      title: refusal ? t(refusal, { target: notice.target, issuer: notice.issuer }) : t(`notice.hint.${action}`),
      onclick: () => send(action),
    }, t(`notice.step.${action}`));
  };
  return h("section", { class: "panel triage", "data-testid": "step-panel" },
    h("h2", {}, t("notice.steps_title")),
    allowed ? null : h("p", { class: "notice", "data-testid": "step-readonly" }, t("notice.viewer_hint")),
    h("label", { for: "step-text" }, t("notice.text_label")), text,
    h("label", { for: "step-evidence" }, t("notice.evidence_label")), evidence,
    h("div", { class: "step-group" }, h("span", { class: "muted small" }, t("notice.target_side")),
      h("div", { class: "triage-buttons" }, TARGET_STEPS.map(button))),
    h("div", { class: "step-group" }, h("span", { class: "muted small" }, t("notice.issuer_side")),
      h("div", { class: "triage-buttons" }, ISSUER_STEPS.map(button))),
    h("div", { class: "triage-buttons" }, button("comment")),
    message);
}

function renderNotice(view, notice, orgs, take) {
  fill(view,
    h("div", { class: "toolbar" },
      h("a", { href: "#/notices", class: "back", "data-testid": "back-to-notices" }, `← ${t("notice.back")}`)),
    h("header", { class: `alert-header notice-header ${notice.overdue ? "sev-border-critical" : ""}` },
      h("h1", { "data-testid": "notice-title" }, notice.title), " ", noticeStatusBadge(notice.status), " ", overdueBadge(notice)),
    h("div", { class: "grid grid-2-1" },
      h("div", {},
        h("section", { class: "panel" },
          h("h2", {}, t("notice.required_action")),
          h("p", { class: "explanation pre-wrap", "data-testid": "notice-required-action-text" }, notice.required_action),
          facts([
            [t("notices.col.target"), orgCell(orgs, notice.target), "notice-target-name"],
            [t("notices.col.issuer"), orgCell(orgs, notice.issuer)],
            [t("notices.col.deadline"), h("span", { class: notice.overdue ? "text-alert" : "" }, timeCell(notice.deadline)), "notice-deadline-value"],
            [t("notice.created"), timeCell(notice.created)],
            [t("notices.col.updated"), timeCell(notice.updated)],
            notice.alert_id ? [t("notices.alert_id"), h("a", { class: "mono", href: `#/alerts/${encodeURIComponent(notice.alert_id)}`,
              "data-testid": "notice-alert-link" }, notice.alert_id)] : null,
            notice.asset ? [t("notices.asset"), h("a", { class: "mono", href: `#/assets/${encodeURIComponent(notice.asset)}` }, notice.asset)] : null,
            [t("notice.id"), h("span", { class: "mono" }, notice.id)],
          ])),
        h("section", { class: "panel" }, h("h2", {}, t("notice.timeline")), timeline(notice.steps, orgs))),
      h("div", {}, stepPanel(notice, take))));
}

export async function render(view, { params }) {
  const id = params.id;
  const [notice, orgs] = await Promise.all([get(`notices/${encodeURIComponent(id)}`), organizations()]);
  if (!view.isConnected) return;
  const take = async (body, message) => {
    try {
      await api(`notices/${encodeURIComponent(id)}/steps`, { method: "POST", json: body, quiet: true });
      showSuccess(t("notice.done", { action: tOr("notice_action", body.action) }));
      const fresh = await get(`notices/${encodeURIComponent(id)}`);
      if (view.isConnected) renderNotice(view, fresh, orgs, take);
    } catch (error) {
      if (error.status === 401) return;
      message.textContent = error.detail;
      message.hidden = false;
      showError(error.detail);
    }
  };
  renderNotice(view, notice, orgs, take);
}
