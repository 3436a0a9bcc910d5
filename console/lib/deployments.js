// @ts-check
// Deployments (/api/deployments) as the pages show them: the markers of every time chart and the
// Deployments table of the service page.

import { api, otherwise } from "./api.js";
import { h } from "./dom.js";
import { fmt, query, unix } from "./format.js";
import { table } from "./table.js";

/** @import { Marker } from "./charts.js" */

/**
 * The deployments of a service (in an environment, or in each); none when they cannot be had
 * (the page shows the rest).
 * @param {string} service @param {string | undefined} environment
 * @returns {Promise<Deployment[]>}
 */
export async function deploymentsOf(service, environment) {
  /** @type {DeploymentsAnswer} */
  const answer = await api("/api/deployments" + query({ service, environment })).catch(otherwise(() => ({ deployments: [] })));
  return answer.deployments;
}

/**
 * The deployments of every service the group sees (an SLO's requests go through several, and a
 * deployment of any of them may be what moved it).
 * @returns {Promise<Deployment[]>}
 */
export async function everyDeployment() {
  /** @type {ServicesOverview} */
  const overview = await api("/api/services/overview").catch(otherwise(() => ({ services: [] })));
  const services = [...new Set(overview.services.filter((s) => s.kind === "service").map((s) => s.name))];
  return (await Promise.all(services.map((name) => deploymentsOf(name, undefined)))).flat();
}

/** What a deployment's state is, in a word: its verdict, or `rolled back`. @param {Deployment} d */
export function deploymentState(d) {
  return d.rolledBack ? `${d.verdict}, rolled back` : d.verdict;
}

/**
 * A chart marker per deployment, at its first-seen time, oldest first; labelled by version, and
 * by service too when `named` (the chart is not one service's).
 * @param {Deployment[]} deployments @param {{ named?: boolean }} [opts]
 * @returns {Marker[]}
 */
export function deploymentMarkers(deployments, { named = false } = {}) {
  return deployments
    .map((d) => ({
      time: unix(d.firstSeen),
      label: named ? `${d.service} ${d.version}` : d.version,
      kind: d.verdict,
      title: `${d.service} ${d.version} deployed (after ${d.previousVersion}) in ${d.environment}: ${deploymentState(d)}`,
    }))
    .sort((a, b) => a.time - b.time);
}

/** The before → after of a figure. @param {string} before @param {string} after */
const change = (before, after) => `${before} → ${after}`;

/** The Deployments table. @param {Deployment[]} deployments */
export function deploymentsTable(deployments) {
  return table("deployments", [
    { key: "version", label: "Version", cell: (r) => h("code", {}, r.version) },
    { key: "previousVersion", label: "Replaced", cell: (r) => h("code", {}, r.previousVersion) },
    { key: "environment", label: "Environment" },
    { key: "firstSeen", label: "First seen", cell: (r) => fmt.time(r.firstSeen) },
    { key: "verdict", label: "Verdict", value: (r) => deploymentState(r),
      cell: (r) => h("span", { "data-verdict": r.verdict, title: r.zScore === null ? null : `z = ${r.zScore.toFixed(2)}` },
        h("span", { class: "verdict-" + r.verdict }, r.verdict), r.rolledBack ? h("span", { class: "muted" }, ", rolled back") : null) },
    { key: "faultRate", label: "Fault rate", value: (r) => r.after.faultRate,
      cell: (r) => change(fmt.pct(r.before.faultRate), fmt.pct(r.after.faultRate)) },
    { key: "errorRate", label: "Error rate", value: (r) => r.after.errorRate,
      cell: (r) => change(fmt.pct(r.before.errorRate), fmt.pct(r.after.errorRate)) },
    { key: "p99", label: "p99", value: (r) => r.after.p99Seconds, cell: (r) => change(fmt.ms(r.before.p99Seconds), fmt.ms(r.after.p99Seconds)) },
    { key: "requests", label: "Requests", num: true, value: (r) => r.after.requests,
      cell: (r) => change(fmt.count(r.before.requests), fmt.count(r.after.requests)) },
    { key: "instances", label: "Instances", num: true, value: (r) => r.instances.length,
      cell: (r) => h("span", { title: r.instances.join("\n") }, String(r.instances.length)) },
  ], deployments, (r) => r.environment + ":" + r.version);
}
