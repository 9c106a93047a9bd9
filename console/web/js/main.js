// The application shell: header (navigation, live badge, language, user),
// the routes, the session check and the page lifecycle.
import { api, setUnauthorizedHandler } from "./api.js";
import { fill, h, select } from "./dom.js";
import { LANGUAGES, currentLanguage, loadLanguage, onLanguageChange, preferredLanguage, setLanguage, t } from "./i18n.js";
import { alertSeverity, alertTitle } from "./format.js";
import { onLiveAlert, startLive, stopLive } from "./live.js";
import { currentLocation, navigate, resolve, route } from "./router.js";
import { currentUser, setUser } from "./session.js";
import { toast } from "./toast.js";
import * as alertDetail from "./pages/alert-detail.js";
import * as alerts from "./pages/alerts.js";
import * as assetDetail from "./pages/asset-detail.js";
import * as assets from "./pages/assets.js";
import * as login from "./pages/login.js";
import * as map from "./pages/map.js";
import * as overview from "./pages/overview.js";
import * as rules from "./pages/rules.js";
import * as sensors from "./pages/sensors.js";

const NAV = [
  ["overview", "/overview"], ["alerts", "/alerts"], ["assets", "/assets"], ["map", "/map"],
  ["sensors", "/sensors"], ["rules", "/rules"],
];

route("/login", login);
route("/overview", overview);
route("/alerts", alerts);
route("/alerts/:id", alertDetail);
route("/assets", assets);
route("/assets/:id", assetDetail);
route("/map", map);
route("/sensors", sensors);
route("/rules", rules);

const header = document.getElementById("app-header");
const main = document.getElementById("app-main");
let dispose = null;
let unseenAlerts = 0;
let liveState = "closed";

function renderHeader() {
  const user = currentUser();
  const { path } = currentLocation();
  const section = path.split("/")[1];
  const nav = user ? h("nav", { class: "nav", "aria-label": t("nav.label") }, NAV.map(([name, target]) =>
    h("a", {
      href: `#${target}`, id: `nav-${name}`, "data-testid": `nav-${name}`,
      class: section === name ? "active" : "", "aria-current": section === name ? "page" : false,
    }, t(`nav.${name}`), name === "alerts" && unseenAlerts
      ? h("span", { class: "nav-badge", "data-testid": "live-badge", title: t("live.badge_title") }, String(unseenAlerts))
      : null))) : h("span", { class: "nav" });
  const language = select({ id: "lang-switch", "data-testid": "lang-switch", "aria-label": t("header.language") },
    LANGUAGES.map((lang) => [lang, t(`lang.${lang}`)]), currentLanguage());
  language.addEventListener("change", () => setLanguage(language.value));
  const right = [
    user ? h("span", { class: `live live-${liveState}`, "data-testid": "live-state", title: t(`live.${liveState}`) },
      h("span", { class: "live-dot", "aria-hidden": "true" }), t("live.label")) : null,
    h("label", { class: "lang" }, h("span", { class: "sr-only" }, t("header.language")), language),
    user ? h("span", { class: "user", "data-testid": "current-user" },
      `${user.display_name || user.username} · ${t(`role.${user.role}`)}`) : null,
    user ? h("button", { type: "button", class: "button-header", "data-testid": "logout", onclick: logout },
      t("header.logout")) : null,
  ];
  fill(header,
    h("a", { class: "brand", href: "#/overview" }, h("span", { class: "brand-mark", "aria-hidden": "true" }, "◆"),
      t("app.name")),
    nav, h("div", { class: "header-right" }, right));
}

async function logout() {
  try {
    await api("auth/logout", { method: "POST", quiet: true, redirect: false });
  } catch {
    // the session is gone either way
  }
  stopLive();
  setUser(null);
  navigate("/login");
}

function renderPage() {
  if (dispose) {
    try {
      dispose();
    } catch {
      // a page's cleanup must not block the next page
    }
    dispose = null;
  }
  const { path, query } = currentLocation();
  if (!currentUser() && path !== "/login") {
    const next = location.hash.slice(1);
    navigate("/login", next && next !== "/" ? { next } : undefined);
    return;
  }
  if (path === "/" || path === "") {
    navigate(currentUser() ? "/overview" : "/login");
    return;
  }
  const found = resolve(path);
  if (path.startsWith("/alerts")) {
    unseenAlerts = 0;
  }
  renderHeader();
  const view = h("div", { class: "view", "data-route": path });
  main.replaceChildren(view);
  if (!found) {
    fill(view, h("div", { class: "panel" }, h("h1", {}, t("error.not_found_title")),
      h("p", {}, t("error.not_found")), h("a", { href: "#/overview" }, t("nav.overview"))));
    return;
  }
  const result = found.page.render(view, { params: found.params, query, onLogin });
  Promise.resolve(result).then((cleanup) => {
    if (typeof cleanup !== "function") return;
    if (view.isConnected) dispose = cleanup;
    else cleanup();
  }).catch((error) => {
    if (view.isConnected && error?.status !== 401) {
      fill(view, h("div", { class: "panel error-panel", role: "alert" }, error?.detail || String(error)));
    }
  });
}

/** Called by the login page once the API accepted the credentials. */
function onLogin(user, next) {
  setUser(user);
  startLive();
  location.hash = next && next.startsWith("/") && !next.startsWith("/login") ? next : "/overview";
}

setUnauthorizedHandler(() => {
  if (currentLocation().path === "/login") return;
  stopLive();
  setUser(null);
  const next = location.hash.slice(1);
  navigate("/login", next ? { next } : undefined);
});

onLiveAlert((alert) => {
  if (!currentLocation().path.startsWith("/alerts")) unseenAlerts += 1;
  renderHeader();
  const severity = alertSeverity(alert);
  toast(`${t(`severity.${severity}`)} · ${alertTitle(alert)}`, {
    kind: "alert", severity, onClick: () => navigate(`/alerts/${encodeURIComponent(alert.event?.id)}`),
  });
});

window.addEventListener("icswatch:live", (event) => {
  liveState = event.detail;
  const badge = header.querySelector("[data-testid=live-state]");
  if (badge) {
    badge.className = `live live-${liveState}`;
    badge.title = t(`live.${liveState}`);
  }
});

onLanguageChange(() => renderPage());
window.addEventListener("hashchange", renderPage);

async function boot() {
  await loadLanguage(preferredLanguage());
  try {
    setUser(await api("auth/me", { quiet: true, redirect: false }));
    startLive();
  } catch {
    setUser(null);
  }
  document.body.classList.add("ready");
  renderPage();
}

boot();
