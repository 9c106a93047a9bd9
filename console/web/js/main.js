// The application shell: header (navigation, live badge, language, user),
// the routes, the session check and the page lifecycle.
import { api, setUnauthorizedHandler } from "./api.js";
import { fill, h, select } from "./dom.js";
import { LANGUAGES, currentLanguage, loadLanguage, onLanguageChange, preferredLanguage, setLanguage, t } from "./i18n.js";
import { alertSeverity, alertTitle, formatTime } from "./format.js";
import { onLiveAlert, startLive, stopLive } from "./live.js";
import { currentLocation, navigate, resolve, route } from "./router.js";
import { currentUser, setUser } from "./session.js";
import { clearTier, currentTier, isUpperTier, loadTier } from "./tier.js";
import { toast } from "./toast.js";
import * as alertDetail from "./pages/alert-detail.js";
import * as alerts from "./pages/alerts.js";
import * as assetDetail from "./pages/asset-detail.js";
import * as assets from "./pages/assets.js";
import * as login from "./pages/login.js";
import * as map from "./pages/map.js";
import * as noticeDetail from "./pages/notice-detail.js";
import * as notices from "./pages/notices.js";
import * as overview from "./pages/overview.js";
import * as rollup from "./pages/rollup.js";
import * as rules from "./pages/rules.js";
import * as sensors from "./pages/sensors.js";

const NAV = [
  ["overview", "/overview"], ["rollup", "/rollup"], ["alerts", "/alerts"], ["notices", "/notices"],
  ["assets", "/assets"], ["map", "/map"], ["sensors", "/sensors"], ["rules", "/rules"],
];
// Entries only a province or the national centre shows.
const UPPER_ONLY = new Set(["rollup"]);
const UPLINK_POLL_MS = 15000;

route("/login", login);
route("/overview", overview);
route("/alerts", alerts);
route("/alerts/:id", alertDetail);
route("/assets", assets);
route("/assets/:id", assetDetail);
route("/map", map);
route("/sensors", sensors);
route("/rules", rules);
route("/rollup", rollup);
route("/notices", notices);
route("/notices/:id", noticeDetail);

const header = document.getElementById("app-header");
const main = document.getElementById("app-main");
let dispose = null;
let unseenAlerts = 0;
let liveState = "closed";
let uplinkTimer = null;

/** A console without a tier file (TierConfig.standalone: enterprise "local", no
 * province, no uplink) belongs to no hierarchy: its header names no tier. */
function isStandalone(tier) {
  return tier.tier === "enterprise" && tier.id === "local" && !tier.province && !tier.uplink;
}

/** "Province · Zhejiang" and, with an uplink, a dot for its health. */
function identityBadge() {
  const tier = currentTier();
  if (!tier?.tier || isStandalone(tier)) return null;
  return h("span", { class: "tier-identity", "data-testid": "tier-identity", "data-tier": tier.tier,
    title: tier.id ? `${t(`tier.kind.${tier.tier}`)} · ${tier.id}` : null },
  `${t(`tier.kind.${tier.tier}`)} · ${tier.name || tier.id || ""}`);
}

function uplinkState(uplink) {
  const status = uplink?.status;
  if (!status) return "unknown";
  return status.healthy === false ? "down" : status.healthy ? "ok" : "unknown";
}

function uplinkTitle(uplink) {
  const status = uplink.status ?? {};
  const lines = [t(`uplink.${uplinkState(uplink)}`), t("uplink.target", { url: uplink.url ?? "" }),
    t("uplink.pending", { count: status.pending ?? 0 }), t("uplink.failures", { count: status.failures ?? 0 })];
  if (status.last_delivery) lines.push(t("uplink.last_delivery", { time: formatTime(status.last_delivery) }));
  if (status.last_error) lines.push(t("uplink.last_error", { error: status.last_error }));
  return lines.join("\n");
}

function uplinkBadge() {
  const uplink = currentTier()?.uplink;
  if (!uplink) return null;
  const state = uplinkState(uplink);
  return h("span", { class: `uplink uplink-${state}`, "data-testid": "uplink-state", "data-state": state,
    "data-pending": String(uplink.status?.pending ?? 0), title: uplinkTitle(uplink) },
  h("span", { class: "uplink-dot", "aria-hidden": "true" }), t("uplink.label"));
}

/** Keep the uplink dot current while someone is signed in to a console that has one. */
function watchUplink() {
  clearInterval(uplinkTimer);
  uplinkTimer = null;
  if (!currentUser() || !currentTier()?.uplink) return;
  uplinkTimer = setInterval(async () => {
    if (!currentUser()) return;
    await loadTier();
    const old = header.querySelector("[data-testid=uplink-state]");
    const fresh = uplinkBadge();
    if (old && fresh) old.replaceWith(fresh);
  }, UPLINK_POLL_MS);
}

function renderHeader() {
  const user = currentUser();
  const { path } = currentLocation();
  const section = path.split("/")[1];
  const entries = NAV.filter(([name]) => !UPPER_ONLY.has(name) || isUpperTier());
  const nav = user ? h("nav", { class: "nav", "aria-label": t("nav.label") }, entries.map(([name, target]) =>
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
    user ? uplinkBadge() : null,
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
    user ? identityBadge() : null,
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
  clearTier();
  watchUplink();
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
async function onLogin(user, next) {
  setUser(user);
  await loadTier();
  watchUplink();
  startLive();
  location.hash = next && next.startsWith("/") && !next.startsWith("/login") ? next : "/overview";
}

setUnauthorizedHandler(() => {
  if (currentLocation().path === "/login") return;
  stopLive();
  setUser(null);
  clearTier();
  watchUplink();
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
    await loadTier();
    watchUplink();
    startLive();
  } catch {
    setUser(null);
  }
  document.body.classList.add("ready");
  renderPage();
}

boot();
