// The console API over fetch: JSON in and out, the session cookie, the CSRF
// header on every state-changing request, a redirect to the login page on 401
// and the API's own `detail` sentence shown on any other 4xx.
import { t } from "./i18n.js";
import { showError } from "./toast.js";

const BASE = "api/";

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

let onUnauthorized = () => {};

/** main.js tells the API layer what to do when the session is gone. */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

/** Query string from an object; arrays become repeated parameters; empty values are left out. */
export function queryString(params = {}) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    for (const item of [].concat(value ?? [])) {
      if (item === null || item === undefined || item === "") continue;
      search.append(name, String(item));
    }
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

async function detailOf(reply) {
  try {
    const body = await reply.json();
    if (typeof body?.detail === "string") return body.detail;
    if (Array.isArray(body?.detail)) {
      return body.detail.map((item) => item.msg ?? JSON.stringify(item)).join("; ");
    }
  } catch {
    // not JSON
  }
  return t("error.http", { status: reply.status });
}

/**
 * api("alerts", {query: {...}}) -> parsed JSON (null for 204).
 * Options: method, query, json (a body sent as JSON), form (a FormData),
 * quiet (the caller shows the error itself: no toast), redirect (default true:
 * a 401 sends the user to the login page).
 */
export async function api(path, { method = "GET", query, json, form, quiet = false, redirect = true } = {}) {
  const headers = { Accept: "application/json" };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form; // the browser sets the multipart boundary
  }
  if (method !== "GET" && method !== "HEAD") headers["X-Requested-With"] = "icswatch";
  let reply;
  try {
    reply = await fetch(BASE + path + queryString(query), {
      method, headers, body, credentials: "same-origin", cache: "no-store",
    });
  } catch {
    const error = new ApiError(0, t("error.network"));
    if (!quiet) showError(error.detail);
    throw error;
  }
  if (reply.status === 204) return null;
  if (reply.ok) return reply.json();
  const error = new ApiError(reply.status, await detailOf(reply));
  if (reply.status === 401) {
    if (redirect) onUnauthorized();
  } else if (!quiet) {
    showError(reply.status >= 500 ? t("error.server", { status: reply.status }) : error.detail);
  }
  throw error;
}

export const get = (path, query, options = {}) => api(path, { ...options, query });
export const post = (path, json, options = {}) => api(path, { ...options, method: "POST", json });
