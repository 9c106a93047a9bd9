// ECharts (vendor/echarts/echarts.min.js, loaded by index.html as window.echarts).
// A page keeps its charts in one ChartSet and disposes it when it goes away.

export const FONT = '-apple-system, "Segoe UI", "PingFang SC", "Microsoft YaHei", ' +
  '"Noto Sans CJK SC", sans-serif';

export class ChartSet {
  constructor() {
    this.charts = new Map();
    this.observer = new ResizeObserver((entries) => {
      for (const entry of entries) this.charts.get(entry.target)?.resize();
    });
  }

  /** Draw `option` into `el` (created once per element, updated afterwards). */
  draw(el, option) {
    let chart = this.charts.get(el);
    if (!chart) {
      chart = window.echarts.init(el, null, { renderer: "canvas" });
      this.charts.set(el, chart);
      this.observer.observe(el);
    }
    chart.setOption({ textStyle: { fontFamily: FONT }, animation: false, ...option }, true);
    return chart;
  }

  dispose() {
    this.observer.disconnect();
    for (const chart of this.charts.values()) chart.dispose();
    this.charts.clear();
  }
}

/** Escape text placed in an ECharts tooltip (tooltips are HTML). */
export function escapeHtml(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}
