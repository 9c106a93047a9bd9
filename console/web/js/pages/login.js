// Login: username and password -> POST api/auth/login (sets the session cookie).
import { api } from "../api.js";
import { h } from "../dom.js";
import { t } from "../i18n.js";

export function render(view, { query, onLogin }) {
  const username = h("input", {
    id: "login-username", name: "username", "data-testid": "login-username", autocomplete: "username",
    required: true, autofocus: true,
  });
  const password = h("input", {
    id: "login-password", name: "password", type: "password", "data-testid": "login-password",
    autocomplete: "current-password", required: true,
  });
  const message = h("p", { class: "form-error", role: "alert", "data-testid": "login-error", hidden: true });
  const submit = h("button", { type: "submit", class: "button-primary", "data-testid": "login-submit" }, t("login.submit"));
  const form = h("form", { class: "login-form", "data-testid": "login-form", novalidate: true },
    h("h1", {}, t("login.title")),
    h("p", { class: "muted" }, t("login.subtitle")),
    h("label", { for: "login-username" }, t("login.username")), username,
    h("label", { for: "login-password" }, t("login.password")), password,
    message, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.hidden = true;
    if (!username.value.trim() || !password.value) {
      message.textContent = t("login.missing");
      message.hidden = false;
      return;
    }
    submit.disabled = true;
    try {
      const reply = await api("auth/login", {
        method: "POST", json: { username: username.value.trim(), password: password.value }, quiet: true, redirect: false,
      });
      onLogin(reply.user, query.get("next"));
    } catch (error) {
      // 401 always means wrong credentials: say it in the page's language.
      message.textContent = error.status === 401 ? t("login.failed") : error.detail;
      message.hidden = false;
      password.select();
    } finally {
      submit.disabled = false;
    }
  });
  view.append(h("div", { class: "login-page" }, form));
  username.focus();
}
