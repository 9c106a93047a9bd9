// Small pieces shared by the asset list and the asset page.
import { h } from "./dom.js";
import { t, tOr } from "./i18n.js";

export const ROLES = ["plc", "rtu", "ied", "hmi", "master", "engineering", "historian", "unknown"];

export function assetHref(ip) {
  return `#/assets/${encodeURIComponent(ip)}`;
}

export function roleChips(roles) {
  return [].concat(roles ?? []).map((role) => h("span", { class: `chip role-${role}` }, tOr("role_asset", role)));
}

export function protocolChips(protocols) {
  const served = protocols?.served ?? [];
  const spoken = protocols?.spoken ?? [];
  return [
    served.map((p) => h("span", { class: "chip chip-served", title: t("assets.served") }, `${p.toUpperCase()} ▲`)),
    spoken.map((p) => h("span", { class: "chip chip-spoken", title: t("assets.spoken") }, `${p.toUpperCase()} ▼`)),
  ];
}
