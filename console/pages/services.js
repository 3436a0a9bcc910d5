// @ts-check
// Services: the Application Signals table, a sparkline of requests per row.

import { api } from "../lib/api.js";
import { sparkline } from "../lib/charts.js";
import { empty, h, statusCell } from "../lib/dom.js";
import { fmt, query } from "../lib/format.js";
import { RANGES, fillEnvironments, link } from "../lib/router.js";
import { table } from "../lib/table.js";

/** @import { PageResult } from "../lib/dom.js" */
/** @typedef {MapNode & { rate: number, faultRate: number | null, errorRate: number | null, spark: number[] }} ServiceRow */

/**
 * A row per service node: its rates over the window of `windowSeconds`, and `sparks[i]` for node i.
 * @param {MapNode[]} nodes @param {number} windowSeconds @param {number[][]} sparks
 * @returns {ServiceRow[]}
 */
export function serviceRows(nodes, windowSeconds, sparks) {
  return nodes.map((n, i) => ({ ...n, rate: n.requests / windowSeconds, faultRate: n.requests ? n.faults / n.requests : null,
    errorRate: n.requests ? n.errors / n.requests : null, spark: sparks[i] }));
}

/** @param {{ environment: string, range: string }} params @returns {Promise<PageResult>} */
export async function render({ environment, range }) {
  // One request: the figures, each service's trend (from its owner) and the environments seen.
  const from = Math.floor(Date.now() / 1000) - RANGES[range];
  /** @type {ServicesOverview} */
  const overview = await api("/api/services/overview" + query({ environment, from }));
  const nodes = overview.services;
  fillEnvironments(overview.environments);
  if (!nodes.length) {
    return { state: "empty", content: empty("No requests in the last window yet. Spans arrive from the input topics (",
      h("code", {}, "kafka.input_topics"), "); the Pipeline page shows what is read.") };
  }
  const sparks = nodes.map((n) => n.trend ?? []);
  const window = overview.windowSeconds || 60;
  const rows = serviceRows(nodes, window, sparks);
  /** @type {import("../lib/table.js").Column<ServiceRow>[]} */
  const cols = [
    { key: "name", label: "Service", cell: (r) => link("service", { service: r.name, environment: r.environment }, r.name) },
    { key: "environment", label: "Environment" },
    { key: "requests", label: "Requests/s", num: true, value: (r) => r.rate, cell: (r) => fmt.rate(r.rate) },
    { key: "availability", label: "Availability", num: true, cell: (r) => h("span", { class: /** @type {number} */ (r.availability) < 0.99 ? "bad" : null }, fmt.pct(r.availability)) },
    { key: "faults", label: "Fault rate", num: true, value: (r) => r.faultRate, cell: (r) => h("span", { class: r.faults ? "bad" : null }, fmt.pct(r.faultRate)) },
    { key: "errors", label: "Error rate", num: true, value: (r) => r.errorRate, cell: (r) => h("span", { class: r.errors ? "warn" : null }, fmt.pct(r.errorRate)) },
    { key: "p99", label: "p99", num: true, value: (r) => r.p99Seconds, cell: (r) => fmt.ms(r.p99Seconds) },
    { key: "slo", label: "SLO", value: (r) => r.sloStatus, cell: (r) => statusCell(r.sloStatus) },
    { key: "trend", label: "Requests (" + range + ")", value: (r) => r.spark.reduce((a, b) => a + b, 0), cell: (r) => sparkline(r.spark) },
  ];
  return { state: "ready", content: [h("h1", {}, "Services"),
    h("p", { class: "muted" }, `Figures over the last ${window} s (metrics.window), from every instance of the group.`),
    table("services", cols, rows, (r) => r.name + ":" + r.environment),
    overview.partial.length ? h("p", { class: "muted" }, "No trend from " + overview.partial.join(", ") + " (not answering).") : null,
    overview.slosConfigured ? null : h("p", { class: "muted" }, "No SLOs configured — see config/tracewarden.toml ([[slo]]).")] };
}
