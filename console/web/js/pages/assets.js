// Asset inventory: search, role and protocol filters (kept in the address).
import { get } from "../api.js";
import { assetHref, protocolChips, roleChips, ROLES } from "../asset-view.js";
import { field, fill, h, select } from "../dom.js";
import { t, tOr } from "../i18n.js";
import { formatNumber, timeCell } from "../format.js";
import { replaceQuery, toSearch } from "../router.js";

function table(assets) {
  if (!assets.length) return h("p", { class: "empty", "data-testid": "assets-empty" }, t("assets.empty"));
  const columns = ["ip", "mac", "vendor", "roles", "protocols", "first_seen", "last_seen", "peers", "events", "alerts"];
  return h("table", { class: "table", "data-testid": "assets-table" },
    h("thead", {}, h("tr", {}, columns.map((column) => h("th", { scope: "col" }, t(`assets.col.${column}`))))),
    h("tbody", {}, assets.map((asset) => h("tr", { "data-testid": "asset-row", "data-asset-id": asset.id },
      h("td", { class: "mono" }, h("a", { href: assetHref(asset.id) }, asset.ip ?? asset.id)),
      h("td", { class: "mono" }, asset.mac ?? ""),
      h("td", {}, asset.vendor ?? ""),
      h("td", {}, roleChips(asset.roles)),
      h("td", {}, protocolChips(asset.protocols)),
      h("td", { class: "nowrap" }, timeCell(asset.first_seen)),
      h("td", { class: "nowrap" }, timeCell(asset.last_seen)),
      h("td", { class: "num" }, formatNumber(asset.peers)),
      h("td", { class: "num" }, formatNumber(asset.events)),
      h("td", { class: "num" }, asset.open_alerts
        ? h("a", { href: `#/alerts?asset=${encodeURIComponent(asset.ip ?? asset.id)}`, class: "alert-count-link" },
          `${formatNumber(asset.alerts)} (${t("assets.open_count", { count: formatNumber(asset.open_alerts) })})`)
        : formatNumber(asset.alerts))))));
}

export async function render(view, { query }) {
  const protocols = await get("stats/top", { field: "network.protocol", size: 50 }, { quiet: true })
    .then((reply) => (reply.buckets ?? []).map((bucket) => bucket.value)).catch(() => []);
  if (!view.isConnected) return;
  const current = { q: query.get("q") ?? "", role: query.get("role") ?? "", protocol: query.get("protocol") ?? "" };
  const q = h("input", { id: "asset-q", type: "search", "data-testid": "asset-q", value: current.q, placeholder: t("assets.q_placeholder") });
  const role = select({ id: "asset-role", "data-testid": "asset-role" },
    [["", t("filters.any")], ...ROLES.map((name) => [name, tOr("role_asset", name)])], current.role);
  const protocolList = current.protocol && !protocols.includes(current.protocol) ? [...protocols, current.protocol] : protocols;
  const protocol = select({ id: "asset-protocol", "data-testid": "asset-protocol" },
    [["", t("filters.any")], ...protocolList.map((p) => [p, p.toUpperCase()])], current.protocol);
  const total = h("p", { class: "total", "data-testid": "assets-total" });
  const results = h("div", { class: "panel panel-flush" }, h("p", { class: "loading" }, t("common.loading")));
  const form = h("form", { class: "filters", role: "search" },
    field(t("filters.q"), q, "field-grow"), field(t("assets.role"), role), field(t("filters.protocol"), protocol),
    h("div", { class: "field-buttons" }, h("button", { type: "submit", class: "button-primary" }, t("filters.apply"))));
  view.append(h("div", { class: "toolbar" }, h("h1", {}, t("assets.title")), total), form, results);

  let sequence = 0;
  async function load() {
    const mine = ++sequence;
    const filters = { q: q.value.trim(), role: role.value, protocol: protocol.value };
    replaceQuery(toSearch(filters));
    const reply = await get("assets", filters);
    if (mine !== sequence || !view.isConnected) return;
    total.textContent = t("assets.total", { count: formatNumber(reply.total ?? reply.assets.length) });
    fill(results, table(reply.assets ?? []));
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load().catch(() => {});
  });
  form.addEventListener("change", () => load().catch(() => {}));
  await load();
}
