// @ts-check
// SLOs: every SLO with its attainment, budget left, burn rates and firing alerts.

import { api } from "../lib/api.js";
import { empty, h, statusCell } from "../lib/dom.js";
import { fmt } from "../lib/format.js";
import { link } from "../lib/router.js";
import { table } from "../lib/table.js";

/** @import { PageResult } from "../lib/dom.js" */

/** The burn rates of an SLO, one decimal each: "1h 14.4 · 5m 2.0". @param {{ window: string, burnRate: number }[]} burnRates */
export const burnRatesText = (burnRates) => burnRates.map((b) => `${b.window} ${b.burnRate.toFixed(1)}`).join(" · ");

/** @returns {Promise<PageResult>} */
export async function render() {
  /** @type {{ slos: SloReport[] }} */
  const { slos } = await api("/api/slos");
  if (!slos.length) return { state: "empty", content: [h("h1", {}, "SLOs"), empty("No SLOs configured — see config/tracewarden.toml ([[slo]]).")] };
  return { state: "ready", content: [h("h1", {}, "SLOs"), table("slos", [
    { key: "name", label: "SLO", cell: (r) => link("slo", { name: r.name }, r.name) },
    { key: "service", label: "Service", cell: (r) => r.service + (r.operation ? " · " + r.operation : "") },
    { key: "sli", label: "SLI" },
    { key: "goal", label: "Goal", num: true, cell: (r) => fmt.pct(r.goal) },
    { key: "attainment", label: "Attainment", num: true, cell: (r) => fmt.pct(r.attainment) },
    { key: "budget", label: "Budget left", num: true, value: (r) => r.errorBudget.remainingRatio, cell: (r) => h("span", { class: r.errorBudget.remainingRatio < 0 ? "bad" : null }, fmt.pct(r.errorBudget.remainingRatio)) },
    { key: "burn", label: "Burn rates", value: (r) => Math.max(0, ...r.burnRates.map((b) => b.burnRate)), cell: (r) => burnRatesText(r.burnRates) },
    { key: "status", label: "Status", cell: (r) => statusCell(r.status) },
    { key: "firing", label: "Firing", value: (r) => r.firing.length, cell: (r) => r.firing.join(", ") || "–" },
  ], slos, (r) => r.name)] };
}
