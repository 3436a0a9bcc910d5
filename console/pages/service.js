// @ts-check
// Service: its charts, operations and dependencies; a click on a chart point opens a panel with the
// point's traces and the top contributors.

import { api, isCancelled, otherwise, seriesHistory } from "../lib/api.js";
import { chart, chartBox, resyncCharts } from "../lib/charts.js";
import { empty, errorBox, h, kept } from "../lib/dom.js";
import { fmt, query, unix } from "../lib/format.js";
import { link } from "../lib/router.js";
import { table } from "../lib/table.js";

/** @import { PageResult } from "../lib/dom.js" */
/** @typedef {{ service: string, environment?: string, operation?: string }} Selection */
/** @typedef {{ time: string, traceIds: string[], requests: number, faults: number }} Point */
/** @typedef {{ point?: Point | null, dimension?: string, by?: string }} ServiceState */

/**
 * @param {{ service?: string, environment?: string, operation?: string }} params
 * @param {ServiceState} state
 * @returns {Promise<PageResult>}
 */
export async function render({ service, environment, operation }, state) {
  if (!service) return { state: "error", content: errorBox("Which service? Open one from the Services page.") };
  /** @type {Selection} */
  const sel = { service, environment, operation };
  /** @type {[SeriesAnswer, SeriesHistory]} */
  const [series, hst] = await Promise.all([api("/api/series" + query({ service, environment })), seriesHistory(sel)]);
  const times = hst.points.map((p) => unix(p.time));
  const operations = table("operations", [
    { key: "operation", label: "Operation", cell: (r) => link("service", { service, environment: r.environment, operation: r.operation }, r.operation) },
    { key: "requests", label: "Requests", num: true, cell: (r) => fmt.count(r.requests) },
    { key: "availability", label: "Availability", num: true, cell: (r) => fmt.pct(r.availability) },
    { key: "faults", label: "Faults", num: true, cell: (r) => h("span", { class: r.faults ? "bad" : null }, fmt.count(r.faults)) },
    { key: "errors", label: "Errors", num: true, cell: (r) => fmt.count(r.errors) },
    { key: "p50", label: "p50", num: true, value: (r) => r.p50Seconds, cell: (r) => fmt.ms(r.p50Seconds) },
    { key: "p99", label: "p99", num: true, value: (r) => r.p99Seconds, cell: (r) => fmt.ms(r.p99Seconds) },
  ], series.operations, (r) => r.operation + ":" + r.environment);
  const dependencies = table("dependencies", [
    { key: "remoteService", label: "Calls", cell: (r) => link("service", { service: r.remoteService, environment: r.environment }, r.remoteService ?? "") },
    { key: "remoteOperation", label: "Remote operation" },
    { key: "operation", label: "From operation" },
    { key: "requests", label: "Requests", num: true, cell: (r) => fmt.count(r.requests) },
    { key: "faults", label: "Faults", num: true, cell: (r) => h("span", { class: r.faults ? "bad" : null }, fmt.count(r.faults)) },
    { key: "throttles", label: "Throttles", num: true, cell: (r) => fmt.count(r.throttles) },
    { key: "p99", label: "p99", num: true, value: (r) => r.p99Seconds, cell: (r) => fmt.ms(r.p99Seconds) },
  ], series.dependencies, (r) => r.remoteService + "/" + r.remoteOperation + "/" + r.operation);
  const boxes = [chartBox("requests", "Requests and errors per 10 s"), chartBox("faults", "Faults per 10 s"), chartBox("latency", "Latency")];
  // The charts and the open panel stay in place across refreshes.
  const layout = kept("service-layout", null, () => h("div", { class: "layout" }, h("div", {}, h("div", { class: "grid" }, boxes))));
  const content = h("div", {},
    h("h1", {}, service, operation ? h("span", { class: "muted" }, " · " + operation) : null,
      environment ? h("span", { class: "muted" }, " · " + environment) : null),
    layout,
    h("h2", {}, "Operations"), series.operations.length ? operations : empty("No requests to this service in the last window."),
    h("h2", {}, "Dependencies"), series.dependencies.length ? dependencies : empty("No calls out of this service in the last window."));
  /** @param {number} i */
  const onPoint = (i) => {
    state.point = { time: hst.points[i].time, traceIds: hst.points[i].traceIds, requests: hst.points[i].requests, faults: hst.points[i].faults };
    showPointPanel(layout, sel, state);
  };
  return {
    state: "ready", content,
    after: () => {
      chart(boxes[0], "requests", times, [
        { label: "requests", values: hst.points.map((p) => p.requests), color: "#4c78a8" },
        { label: "errors", values: hst.points.map((p) => p.errors), color: "#e6a700" },
        { label: "throttles", values: hst.points.map((p) => p.throttles), color: "#8e44ad" }], { onPoint });
      chart(boxes[1], "faults", times, [{ label: "faults", values: hst.points.map((p) => p.faults), color: "#d62728" }], { onPoint });
      chart(boxes[2], "latency", times, [
        { label: "p50", values: hst.points.map((p) => p.p50Seconds), color: "#2e8540" },
        { label: "p90", values: hst.points.map((p) => p.p90Seconds), color: "#e6a700" },
        { label: "p99", values: hst.points.map((p) => p.p99Seconds), color: "#d62728" }], { onPoint, format: (v) => fmt.ms(v) });
      if (state.point) showPointPanel(layout, sel, state);
    },
  };
}

/**
 * Opens (or brings up to date) the panel of the clicked point; a refresh that starts meanwhile
 * cancels it and opens it again.
 * @param {HTMLElement} layout @param {Selection} sel @param {ServiceState} state
 */
function showPointPanel(layout, sel, state) {
  pointPanel(layout, sel, state).catch((e) => { if (!isCancelled(e)) throw e; });
}

/** The panel of a clicked chart point: its traces and the top contributors. @param {HTMLElement} layout @param {Selection} sel @param {ServiceState} state */
async function pointPanel(layout, sel, state) {
  const point = state.point;
  if (!point) return;
  /** @type {{ dimensions: string[] }} */
  const dims = await api("/api/contributors/dimensions" + query({ service: sel.service, environment: sel.environment, operation: sel.operation }))
    .catch(otherwise(() => ({ dimensions: [] })));
  const dimension = state.dimension && dims.dimensions.includes(state.dimension) ? state.dimension
    : dims.dimensions.includes("k8s.pod.name") ? "k8s.pod.name" : dims.dimensions[0];
  /** @type {Contributors | null} */
  let contributors = null;
  /** @type {string | null} */
  let problem = null;
  if (dimension) {
    contributors = await api("/api/contributors" + query({ ...sel, dimension, by: state.by || "faults" }))
      .catch(otherwise((e) => { problem = e.message; return null; }));
  }
  if (state.point !== point) return; // closed, or another point clicked, meanwhile
  const start = Math.floor(unix(point.time));
  const panel = h("aside", { "data-panel": "point", "aria-label": "The clicked point" },
    h("h2", {}, "At " + fmt.time(point.time)),
    h("p", {}, `${fmt.count(point.requests)} requests, `, h("span", { class: point.faults ? "bad" : null }, `${fmt.count(point.faults)} faults`), " in these 10 s."),
    h("h3", {}, "Example traces"),
    point.traceIds.length ? h("ul", {}, point.traceIds.map((id) => h("li", {}, link("trace", { id }, id.slice(0, 16) + "…")))) : h("p", { class: "muted" }, "none"),
    link("traces", { service: sel.service, environment: sel.environment, operation: sel.operation, from: start - 10, to: start + 20 }, "All traces around this point →", { "data-link": "traces" }),
    h("h3", {}, "Top contributors (last window)"),
    dimension ? h("label", {}, "by ", h("select", { onchange: (/** @type {Event} */ e) => {
      state.dimension = /** @type {HTMLSelectElement} */ (e.target).value;
      showPointPanel(layout, sel, state);
    } }, dims.dimensions.map((d) => h("option", { value: d, selected: d === dimension }, d)))) : null,
    problem ? errorBox(problem) : contributors ? table("contributors", [
      { key: "value", label: dimension ?? "" },
      { key: "requests", label: "Req", num: true, cell: (r) => fmt.count(r.requests) },
      { key: "faults", label: "Faults", num: true, cell: (r) => h("span", { class: r.faults ? "bad" : null }, fmt.count(r.faults)) },
      { key: "p99", label: "p99", num: true, value: (r) => r.p99Seconds, cell: (r) => fmt.ms(r.p99Seconds) },
    ], contributors.contributors, (r) => r.value) : h("p", { class: "muted" }, "No resource attributes (investigation.dimensions) seen for this series."),
    contributors && contributors.estimated ? h("p", { class: "muted" }, "Estimated: more resources than investigation.max_values_per_dimension.") : null,
    h("button", { type: "button", onclick: () => {
      state.point = null; layout.classList.remove("with-panel"); layout.querySelector("aside")?.remove(); resyncCharts();
    } }, "Close"));
  layout.querySelector("aside")?.remove();
  layout.classList.add("with-panel");
  layout.append(panel);
  resyncCharts();
}
