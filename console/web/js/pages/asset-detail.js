// One asset: facts, who it talks to and how, its recent alerts and its history.
import { get } from "../api.js";
import { alertTable } from "../alert-table.js";
import { assetHref, protocolChips, roleChips } from "../asset-view.js";
import { h } from "../dom.js";
import { t, tOr } from "../i18n.js";
import { formatNumber, timeCell } from "../format.js";

function communications(asset, edges) {
  if (!edges?.length) return h("p", { class: "empty" }, t("common.no_data"));
  const columns = ["peer", "direction", "protocol", "flows", "events", "reads", "writes", "controls", "alerts", "first_seen", "last_seen"];
  return h("table", { class: "table", "data-testid": "asset-communications" },
    h("thead", {}, h("tr", {}, columns.map((column) => h("th", { scope: "col" }, t(`asset.col.${column}`))))),
    h("tbody", {}, edges.map((edge) => {
      const initiator = edge.source === asset.ip || edge.source === asset.id;
      const peer = initiator ? edge.target : edge.source;
      return h("tr", {},
        h("td", { class: "mono" }, h("a", { href: assetHref(peer) }, peer)),
        h("td", {}, initiator ? t("asset.outgoing") : t("asset.incoming")),
        h("td", { class: "nowrap" }, `${(edge.protocol ?? "").toUpperCase()}${edge.port ? ` / ${edge.port}` : ""}`),
        ["flows", "events", "reads", "writes", "controls"].map((name) => h("td", { class: "num" }, formatNumber(edge[name] ?? 0))),
        h("td", { class: "num" }, edge.alerts ? h("strong", { class: "text-alert" }, formatNumber(edge.alerts))
          : edge.alerts === 0 ? "0" : "—"),
        h("td", { class: "nowrap" }, timeCell(edge.first_seen)),
        h("td", { class: "nowrap" }, timeCell(edge.last_seen)));
    })));
}

function history(entries) {
  if (!entries?.length) return h("p", { class: "empty" }, t("common.no_data"));
  return h("ol", { class: "history", "data-testid": "asset-history" }, entries.map((entry) => h("li", {},
    timeCell(entry.at), " · ", h("strong", {}, tOr("asset.change", entry.change)), entry.detail ? ` · ${entry.detail}` : "")));
}

export async function render(view, { params }) {
  const reply = await get(`assets/${encodeURIComponent(params.id)}`);
  if (!view.isConnected) return;
  const asset = reply.asset;
  const fact = (label, value) => [h("dt", {}, label), h("dd", {}, value ?? "—")];
  view.append(
    h("div", { class: "toolbar" }, h("a", { href: "#/assets", class: "back" }, `← ${t("asset.back")}`)),
    h("header", { class: "asset-header" }, h("h1", { class: "mono", "data-testid": "asset-title" }, asset.ip ?? asset.id), roleChips(asset.roles)),
    h("div", { class: "grid grid-1-2" },
      h("section", { class: "panel" }, h("h2", {}, t("asset.facts")),
        h("dl", { class: "facts", "data-testid": "asset-facts" },
          fact(t("assets.col.mac"), asset.mac), fact(t("assets.col.vendor"), asset.vendor),
          fact(t("asset.mac_vendor"), asset.mac_vendor),
          fact(t("asset.product"), asset.identity?.product), fact(t("asset.firmware"), asset.identity?.firmware),
          fact(t("asset.serial"), asset.identity?.serial),
          fact(t("assets.col.protocols"), protocolChips(asset.protocols)),
          fact(t("assets.col.first_seen"), timeCell(asset.first_seen)), fact(t("assets.col.last_seen"), timeCell(asset.last_seen)),
          fact(t("assets.col.peers"), formatNumber(asset.peers)), fact(t("assets.col.events"), formatNumber(asset.events)),
          fact(t("assets.col.alerts"), h("a", { href: `#/alerts?asset=${encodeURIComponent(asset.ip ?? asset.id)}` },
            `${formatNumber(asset.alerts)} (${t("assets.open_count", { count: formatNumber(asset.open_alerts ?? 0) })})`)))),
      h("section", { class: "panel" }, h("h2", {}, t("asset.communications")), communications(asset, reply.communications))),
    h("section", { class: "panel" }, h("h2", {}, t("asset.recent_alerts")),
      reply.alerts?.length ? alertTable(reply.alerts, { testid: "asset-alerts" }) : h("p", { class: "empty" }, t("alerts.empty"))),
    h("section", { class: "panel" }, h("h2", {}, t("asset.history")), history(reply.history)));
}
