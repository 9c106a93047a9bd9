// Sensors: status (ok / silent), when each was last heard from, and its counters.
import { get } from "../api.js";
import { h } from "../dom.js";
import { t, tOr } from "../i18n.js";
import { formatAgo, formatBytes, formatNumber, timeCell } from "../format.js";

export async function render(view) {
  const reply = await get("sensors");
  if (!view.isConnected) return;
  const sensors = reply.sensors ?? [];
  const counters = ["packets", "events", "alerts", "malformed", "flows"];
  view.append(
    h("div", { class: "toolbar" }, h("h1", {}, t("sensors.title")),
      h("p", { class: "total", "data-testid": "sensors-total" }, t("sensors.total", { count: formatNumber(sensors.length) }))),
    h("div", { class: "panel panel-flush" }, sensors.length ? h("table", { class: "table", "data-testid": "sensors-table" },
      h("thead", {}, h("tr", {},
        ["name", "kind", "status", "last_seen", "first_seen"].map((column) => h("th", { scope: "col" }, t(`sensors.col.${column}`))),
        counters.map((column) => h("th", { scope: "col", class: "num" }, t(`sensors.col.${column}`))),
        h("th", { scope: "col", class: "num" }, t("sensors.col.bytes")),
        h("th", { scope: "col" }, t("sensors.col.protocols")),
        h("th", { scope: "col" }, t("sensors.col.captures")))),
      h("tbody", {}, sensors.map((sensor) => h("tr", { "data-testid": "sensor-row", "data-sensor-id": sensor.id },
        h("td", {}, h("strong", {}, sensor.name ?? sensor.id), sensor.name && sensor.name !== sensor.id
          ? h("div", { class: "muted mono" }, sensor.id) : null),
        h("td", {}, tOr("sensors.kind", sensor.kind)),
        h("td", {}, h("span", { class: `badge sensor-${sensor.status}`, "data-testid": "sensor-status" }, tOr("sensors.status", sensor.status))),
        h("td", { class: "nowrap" }, h("div", {}, formatAgo(sensor.last_seen)), h("div", { class: "muted" }, timeCell(sensor.last_seen))),
        h("td", { class: "nowrap" }, timeCell(sensor.first_seen)),
        counters.map((name) => h("td", { class: `num ${name === "malformed" && sensor.stats?.[name] ? "text-alert" : ""}` },
          formatNumber(sensor.stats?.[name] ?? 0))),
        h("td", { class: "num nowrap" }, formatBytes(sensor.stats?.bytes)),
        h("td", {}, Object.entries(sensor.stats?.protocols ?? {}).map(([name, count]) =>
          h("span", { class: "chip" }, `${name.toUpperCase()} ${formatNumber(count)}`))),
        h("td", {}, (sensor.captures ?? []).length
          ? h("details", {}, h("summary", {}, t("sensors.captures_count", { count: sensor.captures.length })),
            h("ul", { class: "captures" }, sensor.captures.map((name) => h("li", { class: "mono" }, name))))
          : "—"))))) : h("p", { class: "empty" }, t("sensors.empty"))));
}
