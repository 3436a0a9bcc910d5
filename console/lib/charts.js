// @ts-check
// Time charts (uPlot, vendored: the global `uPlot`) and sparklines. A chart drawn again with the
// same series only gets its new data: it is not rebuilt.

import { h, kept } from "./dom.js";
import { sparkPoints } from "./format.js";

/**
 * One line of a chart.
 * @typedef {{ label: string, values: (number | null)[], color: string }} Series
 */
/**
 * A vertical line at `time` (unix seconds) labelled `label`, `title` on hover; `kind` is its class
 * (a deployment's verdict).
 * @typedef {{ time: number, label: string, title: string, kind: string }} Marker
 */
/**
 * `format` writes the values (axis and legend); `onPoint(index)` is called when a point is clicked;
 * `markers` are drawn over the plot (those inside its time range).
 * @typedef {{ format?: (v: number) => string, onPoint?: (index: number) => void, markers?: Marker[] }} ChartOptions
 */
/** @typedef {{ plot: uPlot, container: HTMLElement, series: string, opts: ChartOptions }} Drawn */

/** @type {Map<string, Drawn>} data-chart name -> its plot */
const charts = new Map();

/** The box of chart `name`, kept for the visit. @param {string} name @param {string} title */
export function chartBox(name, title) {
  return kept("chart:" + name, title, () => h("div", { class: "chart", "data-chart": name }, h("h3", {}, title)));
}

/**
 * Draws chart `name` into `container`: `series` over `times` (unix seconds). When the container
 * already holds it with the same series (labels, colours, options), only its data (and width) change.
 * @param {HTMLElement} container
 * @param {string} name
 * @param {number[]} times
 * @param {Series[]} series
 * @param {ChartOptions} [opts]
 */
export function chart(container, name, times, series, opts = {}) {
  const data = [times, ...series.map((s) => s.values)];
  const width = Math.max(300, container.clientWidth - 20);
  const signature = JSON.stringify([series.map((s) => [s.label, s.color]), !!opts.format, !!opts.onPoint]);
  const old = charts.get(name);
  if (old && old.container === container && old.series === signature && container.contains(old.plot.root)) {
    old.opts = opts; // the latest data's click handler and format
    if (old.plot.width !== width) old.plot.setSize({ width, height: 200 });
    old.plot.setData(data);
    return old.plot;
  }
  if (old) old.plot.destroy();
  /** @type {Drawn} */
  const drawn = { plot: /** @type {any} */ (null), container, series: signature, opts };
  /** @param {number} v */
  const format = (v) => (drawn.opts.format ? drawn.opts.format(v) : v);
  const o = {
    width, height: 200, title: undefined,
    hooks: { draw: [(/** @type {uPlot} */ u) => placeMarkers(u, drawn.opts.markers ?? [])] },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true } },
    axes: [{}, { values: (/** @type {uPlot} */ u, /** @type {number[]} */ vals) => vals.map(format), size: 80 }],
    series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 1.5, points: { show: false },
      value: (/** @type {uPlot} */ u, /** @type {number | null} */ v) => (v === null ? "–" : format(v)) }))],
  };
  const plot = new uPlot(o, data, container);
  drawn.plot = plot;
  charts.set(name, drawn);
  if (opts.onPoint) {
    plot.over.addEventListener("click", () => {
      const i = plot.cursor.idx;
      if (i !== null && i !== undefined) drawn.opts.onPoint?.(i);
    });
    plot.over.style.cursor = "pointer";
    plot.over.title = "Click a point: its traces and what is different about its faults";
  }
  return plot;
}

/**
 * Puts `markers` over plot `u` as elements (div.marker[data-marker=label], its label a span with
 * the title), replacing those of the last drawing.
 * @param {uPlot} u @param {Marker[]} markers
 */
function placeMarkers(u, markers) {
  for (const old of u.over.querySelectorAll(":scope > .marker")) old.remove();
  const { min, max } = u.scales.x;
  if (min === undefined || max === undefined) return;
  for (const m of markers) {
    if (m.time < min || m.time > max) continue;
    const left = u.valToPos(m.time, "x");
    u.over.append(h("div", { class: "marker " + m.kind, style: `left: ${left}px`, "data-marker": m.label },
      h("span", { title: m.title }, m.label)));
  }
}

/** Removes chart `name` (its data is gone). @param {string} name */
export function removeChart(name) {
  charts.get(name)?.plot.destroy();
  charts.delete(name);
}

/** A new visit: the charts of the last one go. */
export function forgetCharts() {
  for (const name of [...charts.keys()]) removeChart(name);
}

/** The charts moved (a panel opened or closed, the page was laid out again): uPlot must measure where its plots are again. */
export function resyncCharts() {
  for (const { plot } of charts.values()) plot.syncRect(true);
}

/** A sparkline of `values`, 90 × 22 px. @param {number[]} values */
export function sparkline(values) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("width", "90"); svg.setAttribute("height", "22"); svg.setAttribute("class", "spark");
  svg.setAttribute("aria-hidden", "true");
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", sparkPoints(values, 90, 22).join(" ")); line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#4c78a8"); line.setAttribute("stroke-width", "1.5");
  svg.append(line);
  return svg;
}
