// New alerts as they are stored: an EventSource on api/live. Each alert is
// re-dispatched on window as "icswatch:alert" (detail = ALERT_SUMMARY) so the
// alert list and the overview can add it without a reload.

let source = null;

export function startLive() {
  if (source || !("EventSource" in window)) return;
  source = new EventSource("api/live", { withCredentials: true });
  source.addEventListener("alert", (message) => {
    let alert;
    try {
      alert = JSON.parse(message.data);
    } catch {
      return;
    }
    window.dispatchEvent(new CustomEvent("icswatch:alert", { detail: alert }));
  });
  source.addEventListener("open", () => setState("open"));
  source.addEventListener("error", () => {
    // The browser reconnects by itself unless the server refused (e.g. 401).
    setState(source?.readyState === EventSource.CLOSED ? "closed" : "connecting");
  });
}

export function stopLive() {
  source?.close();
  source = null;
  setState("closed");
}

function setState(state) {
  window.dispatchEvent(new CustomEvent("icswatch:live", { detail: state }));
}

/** Listen for live alerts; returns the function that stops listening. */
export function onLiveAlert(listener) {
  const handler = (event) => listener(event.detail);
  window.addEventListener("icswatch:alert", handler);
  return () => window.removeEventListener("icswatch:alert", handler);
}
