// Building DOM nodes without innerHTML: every value from the API is text,
// never markup, so an alert message cannot inject HTML into the console.

/**
 * h("a", {href: "#/x", class: "link", onclick: fn, "data-testid": "t"}, "text", child)
 * Attributes: `class`, `text`, `on<event>` (listeners), booleans (true -> present,
 * false/null/undefined -> absent), anything else through setAttribute.
 * Children: nodes, strings/numbers (as text), arrays (flattened); null/false skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "text") el.textContent = String(value);
    else if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "value" && "value" in el) el.value = value;
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A <select> whose options are [value, label] pairs; `selected` may be an array. */
export function select(attrs, options, selected) {
  const chosen = new Set([].concat(selected ?? []).map(String));
  return h("select", attrs, options.map(([value, label]) =>
    h("option", { value, selected: chosen.has(String(value)) }, label)));
}

/** A label wrapping a control, so every input is labelled. */
export function field(label, control, extraClass = "") {
  return h("label", { class: `field ${extraClass}`.trim() }, h("span", { class: "field-label" }, label), control);
}
