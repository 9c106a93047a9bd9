// Hash routes: #/alerts?severity=high&q=write -> {path: "/alerts", params: [], query}.
// A page's filters live in the query part so they survive a reload.

const routes = [];

/** route("/alerts/:id", page) — `:name` segments are passed to the page as params. */
export function route(pattern, page) {
  const names = [];
  const source = pattern.replace(/:([a-z]+)/g, (_, name) => {
    names.push(name);
    return "([^/]+)";
  });
  routes.push({ regex: new RegExp(`^${source}$`), names, page });
}

export function currentLocation() {
  const hash = location.hash.slice(1) || "/";
  const [path, search = ""] = hash.split("?", 2);
  return { path: path || "/", query: new URLSearchParams(search) };
}

export function resolve(path) {
  for (const { regex, names, page } of routes) {
    const match = regex.exec(path);
    if (match) {
      const params = Object.fromEntries(
        names.map((name, index) => [name, decodeURIComponent(match[index + 1])]));
      return { page, params };
    }
  }
  return null;
}

export function href(path, query) {
  const search = query ? new URLSearchParams(query).toString() : "";
  return `#${path}${search ? `?${search}` : ""}`;
}

export function navigate(path, query) {
  location.hash = href(path, query).slice(1);
}

/** Record the page's filters in the address without re-rendering the page. */
export function replaceQuery(query) {
  const { path } = currentLocation();
  history.replaceState(history.state, "", href(path, query));
}

/** Object of arrays/strings -> URLSearchParams without empty values. */
export function toSearch(values) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(values)) {
    for (const item of [].concat(value ?? [])) {
      if (item !== "" && item !== null && item !== undefined) search.append(name, String(item));
    }
  }
  return search;
}
