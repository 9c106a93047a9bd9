// Communication map: an ECharts force graph of who talks to whom. Node size
// follows traffic, colour the asset's role; edges are labelled with their
// protocol; clicking a node opens the asset.
import { get } from "../api.js";
import { assetHref } from "../asset-view.js";
import { ChartSet, escapeHtml } from "../charts.js";
import { field, fill, h, select } from "../dom.js";
import { t, tOr } from "../i18n.js";
import { formatNumber } from "../format.js";
import { replaceQuery, toSearch } from "../router.js";

const ROLE_COLORS = {
  plc: "#2e7d32", rtu: "#00897b", ied: "#6d4c41", hmi: "#1565c0", master: "#3949ab",
  engineering: "#8e24aa", historian: "#546e7a", unknown: "#9e9e9e",
};

// The role that says most about a node decides its colour: a host serving
// Modbus and also talking to others is a PLC first.
const ROLE_ORDER = ["plc", "rtu", "ied", "historian", "hmi", "engineering", "master", "unknown"];

function mainRole(node) {
  const roles = [].concat(node.roles ?? []);
  if (!roles.length) return "unknown";
  return [...roles].sort((a, b) => rank(a) - rank(b))[0];
}

function rank(role) {
  const index = ROLE_ORDER.indexOf(role);
  return index < 0 ? ROLE_ORDER.length : index;
}

function graphOption(data) {
  const traffic = new Map(); // events a node took part in (the API's count when it gives one)
  for (const edge of data.edges) {
    for (const end of new Set([edge.source, edge.target])) traffic.set(end, (traffic.get(end) ?? 0) + (edge.events ?? 0));
  }
  for (const node of data.nodes) {
    if (typeof node.events === "number") traffic.set(node.id, node.events);
  }
  const roles = [...new Set(data.nodes.map(mainRole))];
  const maxTraffic = Math.max(1, ...traffic.values());
  const edges = data.edges.map((edge) => ({
    source: edge.source, target: edge.target, value: edge.events ?? 0, edge,
    // A host talking to itself (loopback captures) draws a loop; its label would sit on the node.
    label: { show: edge.source !== edge.target, formatter: (edge.protocol ?? "").toUpperCase(), fontSize: 11 },
    lineStyle: {
      width: 1 + 4 * Math.sqrt((edge.events ?? 0) / maxTraffic),
      color: edge.alerts ? "#d32f2f" : "#90a4ae",
    },
  }));
  return {
    tooltip: {
      formatter: (params) => {
        if (params.dataType === "edge") {
          const edge = params.data.edge;
          return [`<b>${escapeHtml(edge.source)} → ${escapeHtml(edge.target)}</b>`,
            `${escapeHtml((edge.protocol ?? "").toUpperCase())}${edge.port ? ` / ${escapeHtml(edge.port)}` : ""}`,
            `${escapeHtml(t("map.flows"))}: ${formatNumber(edge.flows ?? 0)} · ${escapeHtml(t("map.events"))}: ${formatNumber(edge.events ?? 0)}`,
            `${escapeHtml(t("map.reads"))}: ${formatNumber(edge.reads ?? 0)} · ${escapeHtml(t("map.writes"))}: ${formatNumber(edge.writes ?? 0)} · ${escapeHtml(t("map.controls"))}: ${formatNumber(edge.controls ?? 0)}`,
            `${escapeHtml(t("map.alerts"))}: ${formatNumber(edge.alerts ?? 0)}`].join("<br>");
        }
        const node = params.data.node;
        return [`<b>${escapeHtml(node.label ?? node.id)}</b>`,
          `${escapeHtml(t("map.roles"))}: ${escapeHtml([].concat(node.roles ?? []).map((role) => tOr("role_asset", role)).join(", "))}`,
          node.mac ? `MAC: ${escapeHtml(node.mac)}` : null,
          `${escapeHtml(t("map.events"))}: ${formatNumber(traffic.get(node.id) ?? 0)}`,
          `${escapeHtml(t("map.alerts"))}: ${formatNumber(node.alerts ?? 0)}`].filter(Boolean).join("<br>");
      },
    },
    legend: { data: roles.map((role) => tOr("role_asset", role)), top: 0 },
    series: [{
      type: "graph", layout: "force", roam: true, draggable: true, autoCurveness: true,
      force: { repulsion: 400, edgeLength: [120, 220], gravity: 0.08 },
      categories: roles.map((role) => ({ name: tOr("role_asset", role), itemStyle: { color: ROLE_COLORS[role] ?? "#9e9e9e" } })),
      label: { show: true, position: "right", fontSize: 12 },
      edgeSymbol: ["none", "arrow"], edgeSymbolSize: 8,
      emphasis: { focus: "adjacency" },
      data: data.nodes.map((node) => ({
        id: node.id, name: node.label ?? node.id, node,
        category: roles.indexOf(mainRole(node)),
        symbolSize: 18 + 34 * Math.sqrt((traffic.get(node.id) ?? 0) / maxTraffic),
        itemStyle: node.alerts ? { borderColor: "#d32f2f", borderWidth: 3 } : undefined,
      })),
      links: edges,
    }],
  };
}

function edgeTable(edges) {
  return h("table", { class: "table", "data-testid": "map-edges" },
    h("thead", {}, h("tr", {}, ["source", "target", "protocol", "flows", "events", "reads", "writes", "controls", "alerts"]
      .map((column) => h("th", { scope: "col" }, t(`map.col.${column}`))))),
    h("tbody", {}, edges.map((edge) => h("tr", {},
      h("td", { class: "mono" }, h("a", { href: assetHref(edge.source) }, edge.source)),
      h("td", { class: "mono" }, h("a", { href: assetHref(edge.target) }, edge.target)),
      h("td", {}, `${(edge.protocol ?? "").toUpperCase()}${edge.port ? ` / ${edge.port}` : ""}`),
      ["flows", "events", "reads", "writes", "controls", "alerts"].map((name) => h("td", { class: "num" }, formatNumber(edge[name] ?? 0)))))));
}

export async function render(view, { query }) {
  const charts = new ChartSet();
  const protocols = await get("stats/top", { field: "network.protocol", size: 50 }, { quiet: true })
    .then((reply) => (reply.buckets ?? []).map((bucket) => bucket.value)).catch(() => []);
  if (!view.isConnected) return undefined;
  const chosen = query.get("protocol") ?? "";
  const list = chosen && !protocols.includes(chosen) ? [...protocols, chosen] : protocols;
  const protocol = select({ id: "map-protocol", "data-testid": "map-protocol" },
    [["", t("filters.any")], ...list.map((p) => [p, p.toUpperCase()])], chosen);
  const summary = h("p", { class: "total", "data-testid": "map-summary" });
  const chart = h("div", { class: "chart chart-map", "data-testid": "map-chart", role: "img", "aria-label": t("map.title") });
  const table = h("div", {});
  view.append(
    h("div", { class: "toolbar" }, h("h1", {}, t("map.title")), field(t("filters.protocol"), protocol, "inline-field"), summary,
      h("span", { class: "muted" }, t("map.hint"))),
    h("section", { class: "panel panel-flush" }, chart),
    h("section", { class: "panel" }, h("details", {}, h("summary", {}, t("map.edge_table")), table)));

  async function load() {
    replaceQuery(toSearch({ protocol: protocol.value }));
    const data = await get("map", { protocol: protocol.value || undefined });
    if (!view.isConnected) return;
    data.nodes = data.nodes ?? [];
    data.edges = data.edges ?? [];
    summary.textContent = t("map.summary", { nodes: formatNumber(data.nodes.length), edges: formatNumber(data.edges.length) });
    chart.dataset.nodes = String(data.nodes.length);
    chart.dataset.edges = String(data.edges.length);
    const instance = charts.draw(chart, graphOption(data));
    instance.off("click");
    instance.on("click", (params) => {
      if (params.dataType === "node") location.hash = assetHref(params.data.id).slice(1);
    });
    fill(table, edgeTable(data.edges));
  }
  protocol.addEventListener("change", () => load().catch(() => {}));
  try {
    await load();
  } catch (error) {
    charts.dispose();
    throw error;
  }
  return () => charts.dispose();
}
