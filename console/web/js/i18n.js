// Translations: flat JSON files in i18n/ (dotted keys), zh-CN and en.
// Choice order: the language stored in localStorage, else the browser's
// (navigator.language starting with "zh" -> zh-CN), else English.

export const LANGUAGES = ["zh-CN", "en"];
const STORAGE_KEY = "icswatch.lang";

let language = "en";
let messages = {};
const listeners = new Set();

// Keys asked for but absent from the current language; the browser tests
// read this to prove no page shows a raw key.
const missing = new Set();
window.__icswatchMissingKeys = missing;

export function preferredLanguage() {
  let stored = null;
  try {
    stored = localStorage.getItem(STORAGE_KEY);
  } catch {
    stored = null;
  }
  if (LANGUAGES.includes(stored)) return stored;
  const browser = (navigator.language || "").toLowerCase();
  return browser.startsWith("zh") ? "zh-CN" : "en";
}

export async function loadLanguage(lang) {
  const reply = await fetch(`i18n/${lang}.json`, { credentials: "same-origin" });
  if (!reply.ok) throw new Error(`i18n/${lang}.json: HTTP ${reply.status}`);
  messages = await reply.json();
  language = lang;
  document.documentElement.lang = lang;
  document.title = t("app.title");
}

/** Switch language, remember the choice and tell the listeners (they re-render). */
export async function setLanguage(lang) {
  if (!LANGUAGES.includes(lang)) return;
  await loadLanguage(lang);
  try {
    localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    // private mode: the choice lasts for this page only
  }
  for (const listener of listeners) listener(lang);
}

export function onLanguageChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function currentLanguage() {
  return language;
}

export function has(key) {
  return Object.hasOwn(messages, key);
}

/** The message for `key` with `{name}` placeholders filled from `params`. */
export function t(key, params = {}) {
  let message = messages[key];
  if (message === undefined) {
    missing.add(key);
    return key;
  }
  for (const [name, value] of Object.entries(params)) {
    message = message.replaceAll(`{${name}}`, String(value));
  }
  return message;
}

/** t(`${prefix}.${value}`) when that key exists, else the value itself (data, not a key). */
export function tOr(prefix, value) {
  if (value === null || value === undefined || value === "") return "";
  const key = `${prefix}.${value}`;
  return has(key) ? t(key) : String(value);
}
