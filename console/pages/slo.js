// @ts-check
// SLO: its report, firing alerts, the budget burn-down and burn-rate charts (every service's
// deployments marked), and its alert timeline.

import { api } from "../lib/api.js";
import { chart, chartBox, removeChart } from "../lib/charts.js";
import { deploymentMarkers, everyDeployment } from "../lib/deployments.js";
import { errorBox, h, statusCell } from "../lib/dom.js";
import { fmt, unix } from "../lib/format.js";
import { table } from "../lib/table.js";

/** @import { PageResult } from "../lib/dom.js" */
/** @typedef {{ time: string, alert: string, change: "firing" | "resolved" }} AlertChange */

const PALETTE = ["#d62728", "#e6a700", "#4c78a8", "#2e8540", "#8e44ad", "#17becf"];

/**
 * When each alert started and stopped firing, from the evaluations (oldest first), newest first.
 * @param {SloHistoryPoint[]} points
 * @returns {AlertChange[]}
 */
export function alertTimeline(points) {
  /** @type {AlertChange[]} */
  const timeline = [];
  /** @type {Set<string>} */
  let previous = new Set();
  for (const p of points) {
    const now = new Set(p.firing);
    for (const a of now) if (!previous.has(a)) timeline.push({ time: p.time, alert: a, change: "firing" });
    for (const a of previous) if (!now.has(a)) timeline.push({ time: p.time, alert: a, change: "resolved" });
    previous = now;
  }
  return timeline.reverse();
}

/** Each burn-rate window of the points once, in the order first seen. @param {SloHistoryPoint[]} points */
export function burnWindows(points) {
  return [...new Set(points.flatMap((p) => p.burnRates.map((b) => b.window)))];
}

/** @param {{ name?: string }} params @returns {Promise<PageResult>} */
export async function render({ name }) {
  if (!name) return { state: "error", content: errorBox("Which SLO? Open one from the SLOs page.") };
  /** @type {[{ slos: SloReport[] }, { points: SloHistoryPoint[] }]} */
  const [{ slos }, hst] = await Promise.all([api("/api/slos"), api(`/api/slos/${encodeURIComponent(name)}/history`)]);
  const report = slos.find((s) => s.name === name);
  // Every service's deployments, marked on the charts: the SLO's requests pass through several.
  const markers = deploymentMarkers(await everyDeployment(), { named: true });
  const points = hst.points;
  const times = points.map((p) => unix(p.time));
  const windows = burnWindows(points);
  const budget = chartBox("budget", "Error budget remaining");
  const burn = chartBox("burn", "Burn rates");
  const timeline = alertTimeline(points);
  const firing = report ? report.firing : [];
  return {
    state: "ready",
    content: [h("h1", {}, "SLO ", name),
      report ? h("p", {}, `${report.service}${report.operation ? " · " + report.operation : ""} — ${report.sli}, goal ${fmt.pct(report.goal)} over ${report.window}: attainment ${fmt.pct(report.attainment)}, `, statusCell(report.status)) : h("p", { class: "muted" }, "Not evaluated yet."),
      h("h2", {}, "Firing alerts"),
      firing.length ? table("alerts", [{ key: "name", label: "Alert" }], firing.map((a) => ({ name: a })), (r) => r.name) : h("table", { "data-table": "alerts" }, h("tbody", {}, h("tr", {}, h("td", { class: "muted" }, "None firing.")))),
      h("div", { class: "grid" }, budget, burn),
      h("h2", {}, "Alert timeline (last hour)"),
      timeline.length ? table("alert-timeline", [{ key: "time", label: "Time", cell: (r) => fmt.time(r.time) }, { key: "alert", label: "Alert" }, { key: "change", label: "Change" }], timeline, (r) => r.time + r.alert)
        : h("p", { class: "muted" }, "No alert started or stopped in the last hour.")],
    after: () => {
      if (!points.length) { removeChart("budget"); removeChart("burn"); return; }
      chart(budget, "budget", times, [{ label: "remaining", values: points.map((p) => p.errorBudget.remainingRatio * 100), color: "#4c78a8" }], { format: (v) => v.toFixed(1) + " %", markers });
      chart(burn, "burn", times, windows.map((w, i) => ({ label: w, color: PALETTE[i % PALETTE.length],
        values: points.map((p) => p.burnRates.find((b) => b.window === w)?.burnRate ?? null) })), { markers });
    },
  };
}
