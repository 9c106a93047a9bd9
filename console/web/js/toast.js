// Short notices in the corner: API errors, triage results, new live alerts.
import { h } from "./dom.js";
import { t } from "./i18n.js";

function area() {
  let el = document.getElementById("toasts");
  if (!el) {
    el = h("div", { id: "toasts", class: "toasts", "aria-live": "polite", role: "status" });
    document.body.append(el);
  }
  return el;
}

/**
 * kind: "info" | "error" | "success" | "alert" (plus `severity` for alert colours).
 * onClick makes the toast a button that runs it and closes the toast.
 */
export function toast(message, { kind = "info", severity = null, onClick = null, timeout = 6000 } = {}) {
  const classes = ["toast", `toast-${kind}`];
  if (severity) classes.push(`sev-border-${severity}`);
  const body = onClick
    ? h("button", { type: "button", class: "toast-body link-button" }, message)
    : h("span", { class: "toast-body" }, message);
  const close = h("button", { type: "button", class: "toast-close", "aria-label": t("common.close"), title: t("common.close") }, "×");
  const el = h("div", { class: classes.join(" "), "data-testid": `toast-${kind}` }, body, close);
  const remove = () => el.remove();
  close.addEventListener("click", remove);
  if (onClick) body.addEventListener("click", () => { remove(); onClick(); });
  area().append(el);
  if (timeout) setTimeout(remove, timeout);
  return el;
}

export const showError = (message) => toast(message, { kind: "error", timeout: 10000 });
export const showSuccess = (message) => toast(message, { kind: "success", timeout: 4000 });
