// Rules: what is loaded and active; admins enable/disable rules and upload packs.
import { api, get } from "../api.js";
import { field, fill, h } from "../dom.js";
import { currentLanguage, t } from "../i18n.js";
import { formatNumber, ruleDescription, ruleTitle, severityBadge, techniqueName } from "../format.js";
import { may } from "../session.js";
import { showError, showSuccess } from "../toast.js";

function errorsPanel(errors) {
  if (!errors?.length) return null;
  return h("section", { class: "panel error-panel", "data-testid": "rule-errors", role: "alert" },
    h("h2", {}, t("rules.errors", { count: errors.length })),
    h("ul", {}, errors.map((error) => h("li", { class: "mono" },
      `${error.file ?? ""}${error.line ? `:${error.line}` : ""}${error.rule ? ` [${error.rule}]` : ""} ${error.message ?? ""}`))));
}

function uploadForm(onDone) {
  const file = h("input", { type: "file", id: "rule-pack-file", name: "file", accept: ".yml,.yaml", "data-testid": "rule-pack-file", required: true });
  const message = h("p", { class: "form-error", role: "alert", "data-testid": "rule-pack-error", hidden: true });
  const submit = h("button", { type: "submit", class: "button-primary", "data-testid": "rule-pack-upload" }, t("rules.upload"));
  const form = h("form", { class: "upload", "data-testid": "rule-pack-form" },
    field(t("rules.pack_file"), file), h("div", { class: "field-buttons" }, submit), message);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.hidden = true;
    if (!file.files.length) {
      message.textContent = t("rules.need_file");
      message.hidden = false;
      return;
    }
    const body = new FormData();
    body.append("file", file.files[0]);
    submit.disabled = true;
    try {
      const reply = await api("rules/packs", { method: "POST", form: body, quiet: true });
      showSuccess(t("rules.uploaded", { pack: reply.pack, count: reply.rules }));
      form.reset();
      onDone();
    } catch (error) {
      if (error.status === 401) return;
      message.textContent = error.status === 413 ? t("rules.too_large") : error.detail;
      message.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });
  return h("section", { class: "panel" }, h("h2", {}, t("rules.upload_title")), form);
}

/** Why a rule is off: in zh-CN, empty allowlists are said in Chinese (the API's reason is English). */
function inactiveReason(rule) {
  if (currentLanguage() === "zh-CN" && rule.inactive_groups?.length) {
    return t("rules.inactive_empty_groups", { groups: rule.inactive_groups.join(", ") });
  }
  return rule.inactive_reason ?? "";
}

export async function render(view) {
  const admin = may("admin");
  const errors = h("div", {});
  const total = h("p", { class: "total", "data-testid": "rules-total" });
  const search = h("input", { id: "rules-q", type: "search", "data-testid": "rules-q", placeholder: t("rules.q_placeholder") });
  const body = h("div", { class: "panel panel-flush" });
  let rules = [];

  function row(rule) {
    const toggle = admin
      ? h("button", {
        type: "button", class: rule.enabled ? "toggle toggle-on" : "toggle", "aria-pressed": rule.enabled ? "true" : "false",
        "data-testid": `rule-toggle-${rule.id}`, title: rule.enabled ? t("rules.click_to_disable") : t("rules.click_to_enable"),
        onclick: async (event) => {
          event.currentTarget.disabled = true;
          try {
            const updated = await api(`rules/${encodeURIComponent(rule.id)}/${rule.enabled ? "disable" : "enable"}`, { method: "POST" });
            rules = rules.map((item) => (item.id === rule.id ? { ...item, ...updated } : item));
            showSuccess(t(updated.enabled ? "rules.enabled_done" : "rules.disabled_done", { id: rule.id }));
            draw();
          } catch {
            draw(); // the API layer showed why
          }
        },
      }, rule.enabled ? t("rules.on") : t("rules.off"))
      : h("span", { class: rule.enabled ? "badge status-ok" : "badge status-off" }, rule.enabled ? t("rules.on") : t("rules.off"));
    return h("tr", { "data-testid": "rule-row", "data-rule-id": rule.id, class: rule.active ? "" : "row-muted" },
      h("td", { class: "mono nowrap" }, rule.id),
      h("td", {}, h("div", {}, ruleTitle(rule)), ruleDescription(rule)
        ? h("div", { class: "muted small", "data-testid": "rule-description" }, ruleDescription(rule)) : null),
      h("td", {}, severityBadge(rule.severity)),
      h("td", {}, (rule.protocol ?? "").toUpperCase()),
      h("td", { class: "mono" }, (rule.techniques ?? []).map((id) => h("span", { class: "tech", title: techniqueName(id) || null }, id))),
      h("td", { class: "mono small" }, rule.pack ?? ""),
      h("td", {}, toggle),
      h("td", {}, rule.active ? t("common.yes") : h("span", { title: inactiveReason(rule) },
        t("common.no"), inactiveReason(rule) ? h("div", { class: "muted small", "data-testid": "rule-inactive-reason" }, inactiveReason(rule)) : null)));
  }

  function draw() {
    const needle = search.value.trim().toLowerCase();
    const shown = rules.filter((rule) => !needle || [rule.id, rule.title, rule.title_zh, rule.protocol, ...(rule.techniques ?? [])]
      .join(" ").toLowerCase().includes(needle));
    total.textContent = t("rules.total", { count: formatNumber(rules.length), active: formatNumber(rules.filter((rule) => rule.active).length) });
    const columns = ["id", "title", "severity", "protocol", "techniques", "pack", "enabled", "active"];
    fill(body, h("table", { class: "table", "data-testid": "rules-table" },
      h("thead", {}, h("tr", {}, columns.map((column) => h("th", { scope: "col" }, t(`rules.col.${column}`))))),
      h("tbody", {}, shown.map(row))));
  }

  async function load() {
    const reply = await get("rules");
    if (!view.isConnected) return;
    rules = reply.rules ?? [];
    fill(errors, errorsPanel(reply.errors));
    draw();
  }

  search.addEventListener("input", draw);
  view.append(h("div", { class: "toolbar" }, h("h1", {}, t("rules.title")), total, field(t("filters.q"), search, "inline-field")),
    errors, admin ? uploadForm(() => load().catch(() => showError(t("error.network")))) : null, body);
  await load();
}
