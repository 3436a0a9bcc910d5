// @ts-check
// Service: its charts (deployments marked), deployments, operations and dependencies; a click on a chart point opens a panel with the
// point's traces and what is different about its faults (the comparison with the other requests).

import { api, isCancelled, otherwise, seriesHistory } from "../lib/api.js";
import { chart, chartBox, resyncCharts } from "../lib/charts.js";
import { deploymentMarkers, deploymentsOf, deploymentsTable } from "../lib/deployments.js";
import { empty, errorBox, h, kept } from "../lib/dom.js";
import { fmt, query, unix } from "../lib/format.js";
import { link } from "../lib/router.js";
import { table } from "../lib/table.js";

/** @import { PageResult } from "../lib/dom.js" */
/** @typedef {{ service: string, environment?: string, operation?: string }} Selection */
/** @typedef {{ time: string, traceIds: string[], requests: number, faults: number }} Point */
/** @typedef {{ point?: Point | null, mark?: string, range?: string }} ServiceState */

/**
 * @param {{ service?: string, environment?: string, operation?: string }} params
 * @param {ServiceState} state
 * @returns {Promise<PageResult>}
 */
export async function render({ service, environment, operation }, state) {
  if (!service) return { state: "error", content: errorBox("Which service? Open one from the Services page.") };
  /** @type {Selection} */
  const sel = { service, environment, operation };
  /** @type {[SeriesAnswer, SeriesHistory, ExceptionsAnswer, Deployment[]]} */
  const [series, hst, thrown, deployments] = await Promise.all([api("/api/series" + query({ service, environment })), seriesHistory(sel),
    api("/api/exceptions" + query({ service, environment, operation })).catch(otherwise(() => ({ estimated: false, groups: [] }))),
    deploymentsOf(service, environment)]);
  const markers = deploymentMarkers(deployments);
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
  const exceptions = table("exceptions", [
    { key: "type", label: "Exception", cell: (r) => h("span", { title: r.exampleMessage }, r.type.split(".").pop() ?? r.type) },
    { key: "message", label: "Message" },
    { key: "frame", label: "Where", cell: (r) => h("code", { title: r.exampleStack }, r.frame) },
    { key: "count", label: "Faults", num: true, cell: (r) => h("span", { class: "bad" }, fmt.count(r.count)) },
    { key: "versions", label: "Versions", value: (r) => r.versions.join(", "), cell: (r) => r.versions.join(", ") },
    { key: "instances", label: "Instances", num: true, value: (r) => r.instances.length, cell: (r) => h("span", { title: r.instances.join("\n") }, String(r.instances.length)) },
    { key: "lastSeen", label: "Last seen", cell: (r) => fmt.time(r.lastSeen) },
    { key: "trace", label: "Example", cell: (r) => r.traceIds.length ? link("trace", { id: r.traceIds[0] }, r.traceIds[0].slice(0, 12) + "…") : "" },
  ], thrown.groups, (r) => r.id + ":" + r.operation);
  const boxes = [chartBox("requests", "Requests and errors per 10 s"), chartBox("faults", "Faults per 10 s"), chartBox("latency", "Latency")];
  // The charts and the open panel stay in place across refreshes.
  const layout = kept("service-layout", null, () => h("div", { class: "layout" }, h("div", {}, h("div", { class: "grid" }, boxes))));
  const content = h("div", {},
    h("h1", {}, service, operation ? h("span", { class: "muted" }, " · " + operation) : null,
      environment ? h("span", { class: "muted" }, " · " + environment) : null),
    layout,
    h("h2", {}, "Deployments"), deployments.length ? deploymentsTable(deployments)
      : empty("No new version since tracewarden started (the versions it first saw are the baseline)."),
    h("h2", {}, "Operations"), series.operations.length ? operations : empty("No requests to this service in the last window."),
    h("h2", {}, "Dependencies"), series.dependencies.length ? dependencies : empty("No calls out of this service in the last window."),
    h("h2", {}, "Exceptions"), thrown.groups.length ? exceptions : empty("No fault recorded an exception in the last window."));
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
        { label: "throttles", values: hst.points.map((p) => p.throttles), color: "#8e44ad" }], { onPoint, markers });
      chart(boxes[1], "faults", times, [{ label: "faults", values: hst.points.map((p) => p.faults), color: "#d62728" }], { onPoint, markers });
      chart(boxes[2], "latency", times, [
        { label: "p50", values: hst.points.map((p) => p.p50Seconds), color: "#2e8540" },
        { label: "p90", values: hst.points.map((p) => p.p90Seconds), color: "#e6a700" },
        { label: "p99", values: hst.points.map((p) => p.p99Seconds), color: "#d62728" }], { onPoint, markers, format: (v) => fmt.ms(v) });
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

/** What a request selected for comparison is, as /api/compare names it. */
const MARKS = [["fault", "Faults"], ["error", "Errors"], ["throttle", "Throttles"]];

/** Values shown per key in the comparison: its most different one. */
const VALUES_PER_KEY = 1;

/**
 * The panel of a clicked chart point: its traces and what is different about its faults (or
 * errors, or throttles) against the other requests, over the point's 10 s or the last window.
 * @param {HTMLElement} layout @param {Selection} sel @param {ServiceState} state
 */
async function pointPanel(layout, sel, state) {
  const point = state.point;
  if (!point) return;
  const start = Math.floor(unix(point.time));
  const outcome = state.mark || "fault";
  const range = state.range === "window" ? {} : { from: start, to: start + 9 };
  /** @type {Comparison | null} */
  let comparison = null;
  /** @type {string | null} */
  let problem = null;
  comparison = await api("/api/compare" + query({ ...sel, outcome, ...range, limit: VALUES_PER_KEY }))
    .catch(otherwise((e) => { problem = e.message; return null; }));
  if (state.point !== point) return; // closed, or another point clicked, meanwhile
  const rows = comparison ? comparison.keys.flatMap((k) => k.values.map((v) => ({ key: k.key, ...v }))) : [];
  /** @param {string} name @param {string} value @param {string} label @param {string | undefined} current */
  const choice = (name, value, label, current) => h("label", {}, h("input", {
    type: "radio", name, value, checked: value === current, onchange: () => {
      if (name === "mark") state.mark = value; else state.range = value;
      showPointPanel(layout, sel, state);
    },
  }), " " + label + " ");
  const panel = h("aside", { "data-panel": "point", "data-range": range.from ? "point" : "window", "aria-label": "The clicked point" },
    h("h2", {}, "At " + fmt.time(point.time)),
    h("p", {}, `${fmt.count(point.requests)} requests, `, h("span", { class: point.faults ? "bad" : null }, `${fmt.count(point.faults)} faults`), " in these 10 s."),
    h("h3", {}, "Example traces"),
    point.traceIds.length ? h("ul", {}, point.traceIds.map((id) => h("li", {}, link("trace", { id }, id.slice(0, 16) + "…")))) : h("p", { class: "muted" }, "none"),
    link("traces", { service: sel.service, environment: sel.environment, operation: sel.operation, from: start - 10, to: start + 20 }, "All traces around this point →", { "data-link": "traces" }),
    h("h3", {}, "What's different"),
    h("fieldset", { "data-choice": "mark" }, h("legend", {}, "Compare"), MARKS.map(([value, label]) => choice("mark", value, label, outcome))),
    h("fieldset", { "data-choice": "range" }, h("legend", {}, "over"),
      choice("range", "point", "these 10 s", state.range === "window" ? "window" : "point"),
      choice("range", "window", "the last window", state.range === "window" ? "window" : "point")),
    problem ? errorBox(problem) : comparison && comparison.selection.requests > 0 ? table("compare", [
      { key: "key", label: "Attribute" },
      { key: "value", label: "Value" },
      { key: "selectionShare", label: "Of these", num: true, cell: (r) => h("span", { class: r.selectionShare > r.baselineShare ? "bad" : null }, fmt.pct(r.selectionShare)) },
      { key: "baselineShare", label: "Of the rest", num: true, cell: (r) => fmt.pct(r.baselineShare) },
      { key: "lift", label: "Lift", num: true, cell: (r) => r.lift === null ? "only here" : r.lift.toFixed(1) + "×" },
    ], rows, (r) => r.key + "=" + r.value)
      : h("p", { class: "muted" }, `No ${outcome}s in this range to compare.`),
    comparison ? h("p", { class: "muted" }, `${fmt.count(comparison.selection.requests)} ${outcome}s against ${fmt.count(comparison.baseline.requests)} other requests` +
      (comparison.estimated ? "; estimated: more resources or attribute combinations than investigation.max_values_per_dimension." : ".")) : null,
    h("button", { type: "button", onclick: () => {
      state.point = null; layout.classList.remove("with-panel"); layout.querySelector("aside")?.remove(); resyncCharts();
    } }, "Close"));
  layout.querySelector("aside")?.remove();
  layout.classList.add("with-panel");
  layout.append(panel);
  resyncCharts();
}
