// Decoded sample events of an alert, as a table that knows each protocol.
//
// A protocol renderer is one function: given ics.<protocol> (and the whole
// event) it returns rows {label, value, keys}; `keys` are the fields that row
// shows. Fields no row claims are listed after them under their ECS name, so
// nothing decoded is hidden. Adding a protocol = one registerProtocol() call.
import { h } from "./dom.js";
import { t, tOr } from "./i18n.js";
import { endpoint, formatTime, yesNo } from "./format.js";

const renderers = new Map();

export function registerProtocol(protocol, render) {
  renderers.set(protocol, render);
}

/** How any decoded value is shown: lists shortened, objects as JSON. */
export function formatValue(value, limit = 32) {
  if (value === null || value === undefined) return "";
  if (typeof value === "boolean") return yesNo(value);
  if (Array.isArray(value)) {
    const shown = value.slice(0, limit).map((item) => formatValue(item, limit));
    const more = value.length > limit ? ` … (+${value.length - limit})` : "";
    return `[${shown.join(", ")}]${more}`;
  }
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** Rows for the fields of ics.<protocol> that no renderer row claimed. */
function genericRows(protocol, fields, claimed = new Set()) {
  return Object.entries(fields ?? {})
    .filter(([name]) => !claimed.has(name))
    .map(([name, value]) => ({ label: `ics.${protocol}.${name}`, value: formatValue(value), raw: true }));
}

/** A grid of address -> value cells; long ones folded in <details>. */
function valueGrid(values, start, kind) {
  const cell = (value, index) => {
    const address = start === undefined ? `[${index}]` : String(start + index);
    const shown = kind === "bit" ? (value ? "1" : "0") : String(value);
    const title = kind === "bit" ? (value ? t("events.on") : t("events.off"))
      : `0x${Number(value).toString(16).padStart(4, "0")}`;
    return h("span", { class: `value-cell ${kind === "bit" && value ? "bit-on" : ""}`, title },
      h("span", { class: "value-address" }, address), h("span", { class: "value-data" }, shown));
  };
  const grid = h("span", { class: "value-grid" }, values.map(cell));
  if (values.length <= 16) return grid;
  return h("details", { class: "value-details" },
    h("summary", {}, t("events.values_count", { count: values.length })), grid);
}

function addressRange(start, count) {
  if (start === undefined || start === null) return "";
  if (!count || count <= 1) return String(start);
  return `${start} – ${start + count - 1}`;
}

const hex16 = (value) => `0x${Number(value).toString(16).padStart(4, "0")}`;

// Modbus Application Protocol V1.1b3: function, unit, the address range
// (reference_num .. + quantity), quantities, and register/coil values.
registerProtocol("modbus", (m, event) => {
  const rows = [];
  const operation = event.ics?.operation;
  const code = m.request_func_code ?? m.func_code;
  rows.push({
    label: t("events.modbus.function"),
    value: `${tOr("modbus.function", operation)} (${code}${m.request_func_code !== undefined ? ` / ${m.func_code}` : ""})`,
    keys: ["func_code", "request_func_code"],
  });
  rows.push({ label: t("events.modbus.unit"), value: String(m.unit_id ?? event.ics?.unit ?? ""), keys: ["unit_id"] });
  const registers = m.regval_uint16;
  const bits = m.bitval;
  if (m.read_reference_num !== undefined || m.write_reference_num !== undefined) {
    // FC 23: a read range and a write range in one request.
    const readCount = m.read_word_cnt ?? (event.ics?.direction === "response" ? registers?.length : undefined);
    rows.push({ label: t("events.modbus.read_range"), value: addressRange(m.read_reference_num, readCount),
      keys: ["read_reference_num", "read_word_cnt"] });
    if (m.write_reference_num !== undefined) {
      rows.push({ label: t("events.modbus.write_range"), value: addressRange(m.write_reference_num, m.write_word_cnt),
        keys: ["write_reference_num", "write_word_cnt"] });
    }
    if (registers) {
      const start = event.ics?.direction === "response" ? m.read_reference_num : m.write_reference_num;
      rows.push({ label: t("events.modbus.registers"), value: valueGrid(registers, start, "word"), keys: ["regval_uint16"] });
    }
  } else {
    const quantity = m.word_cnt ?? m.bit_cnt;
    const count = m.fifo_count !== undefined ? 1 : (quantity ?? registers?.length ?? bits?.length);
    if (m.reference_num !== undefined) {
      rows.push({ label: t("events.modbus.address_range"), value: addressRange(m.reference_num, count), keys: ["reference_num"] });
    }
    if (quantity !== undefined) {
      rows.push({ label: m.word_cnt !== undefined ? t("events.modbus.word_cnt") : t("events.modbus.bit_cnt"),
        value: String(quantity), keys: ["word_cnt", "bit_cnt"] });
    }
    if (m.fifo_count !== undefined) {
      rows.push({ label: t("events.modbus.fifo_count"), value: String(m.fifo_count), keys: ["fifo_count"] });
    }
    const start = m.fifo_count !== undefined ? undefined : m.reference_num;
    if (registers) {
      rows.push({ label: t("events.modbus.registers"), value: valueGrid(registers, start, "word"), keys: ["regval_uint16"] });
    }
    if (bits) {
      // A read response pads the coils to whole bytes; show the ones asked for when known.
      rows.push({ label: t("events.modbus.coils"), value: valueGrid(bits, start, "bit"), keys: ["bitval"] });
    }
  }
  if (m.and_mask !== undefined) {
    rows.push({ label: t("events.modbus.masks"), value: `AND ${hex16(m.and_mask)} · OR ${hex16(m.or_mask)}`,
      keys: ["and_mask", "or_mask"] });
  }
  if (m.diagnostic_code !== undefined) {
    rows.push({ label: t("events.modbus.diagnostic"),
      value: `${tOr("modbus.diagnostic", m.diagnostic) || "?"} (${m.diagnostic_code})`, keys: ["diagnostic_code", "diagnostic"] });
  }
  if (m.exception_code !== undefined) {
    rows.push({ label: t("events.modbus.exception"),
      value: `${tOr("modbus.exception", m.exception) || "?"} (${m.exception_code})`, keys: ["exception_code", "exception"] });
  }
  if (m.device_identification) {
    const objects = Object.entries(m.device_identification).map(([name, value]) => `${name}: ${value}`);
    rows.push({ label: t("events.modbus.device_identification"), value: objects.join(" · "),
      keys: ["device_identification", "object_str_value", "object_id"] });
  }
  rows.push({ label: t("events.modbus.transaction"), value: `${m.trans_id ?? ""}`, keys: ["trans_id", "len"] });
  return rows;
});

/** Rows for one event: its protocol's renderer, then the fields it left. */
export function protocolRows(event) {
  const protocol = event.network?.protocol;
  const fields = protocol ? event.ics?.[protocol] : undefined;
  if (!fields) return [];
  const render = renderers.get(protocol);
  if (!render) return genericRows(protocol, fields);
  let rows;
  try {
    rows = render(fields, event);
  } catch {
    return genericRows(protocol, fields); // a renderer bug must not hide the event
  }
  const claimed = new Set(rows.flatMap((row) => row.keys ?? []));
  return [...rows, ...genericRows(protocol, fields, claimed)];
}

function detailList(rows) {
  return h("dl", { class: "event-fields" }, rows.map((row) => [
    h("dt", { class: row.raw ? "raw-key" : "" }, row.label),
    h("dd", {}, row.value),
  ]));
}

function flags(ics) {
  const out = [];
  if (ics?.malformed) {
    out.push(h("span", { class: "badge flag-malformed" },
      `${t("events.malformed")}: ${tOr("malformed", ics.malformed)}`));
  }
  if (ics?.exception) out.push(h("span", { class: "badge flag-exception" }, t("events.exception")));
  return out;
}

/** The table of an alert's sample events (ics.alert.events). */
export function eventsTable(events) {
  if (!events?.length) return h("p", { class: "empty" }, t("events.none"));
  return h("table", { class: "table events-table", "data-testid": "events-table" },
    h("thead", {}, h("tr", {},
      h("th", {}, t("events.packet")), h("th", {}, t("events.time")),
      h("th", {}, t("events.direction")), h("th", {}, t("events.endpoints")),
      h("th", {}, t("events.operation")), h("th", {}, t("events.details")))),
    h("tbody", {}, events.map((event) => {
      const ics = event.ics ?? {};
      return h("tr", { "data-testid": "event-row", "data-protocol": event.network?.protocol ?? "" },
        h("td", { class: "num" }, ics.packet ?? ""),
        h("td", { class: "nowrap" }, formatTime(event["@timestamp"])),
        h("td", {}, tOr("direction", ics.direction)),
        h("td", { class: "nowrap" }, `${endpoint(event.source)} → ${endpoint(event.destination)}`),
        h("td", {},
          h("div", {}, tOr(`${event.network?.protocol}.function`, ics.operation)),
          h("div", { class: "muted" }, `${(event.network?.protocol ?? "").toUpperCase()} · ${tOr("access", ics.access)}`),
          flags(ics)),
        h("td", {}, detailList(protocolRows(event))));
    })));
}
