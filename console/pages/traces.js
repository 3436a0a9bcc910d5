// @ts-check
// Traces: the search form and the decided traces that match.

import { api } from "../lib/api.js";
import { empty, h, kept, outcomePill } from "../lib/dom.js";
import { fmt, query } from "../lib/format.js";
import { href, link } from "../lib/router.js";
import { table } from "../lib/table.js";

/** @import { PageResult } from "../lib/dom.js" */
/** @import { Params } from "../lib/router.js" */

/** The /api/traces query of the page's parameters (100 traces unless it says). @param {Params} params */
export function tracesQuery(params) {
  return query({ service: params.service, operation: params.operation, environment: params.environment, outcome: params.outcome,
    min_duration: params.min_duration, decision: params.decision, from: params.from, to: params.to, limit: params.limit || 100 });
}

/** @param {Params} params @returns {Promise<PageResult>} */
export async function render(params) {
  /** @type {{ traces: TraceSummary[] }} */
  const answer = await api("/api/traces" + tracesQuery(params));
  // The form is the visit's (its URL's): kept as the user left it.
  const form = kept("traces-form", null, () => searchForm(params));
  const title = [h("h1", {}, "Traces"), params.from ? h("p", { class: "muted" }, `Between ${new Date(Number(params.from) * 1000).toLocaleTimeString()} and ${new Date(Number(params.to) * 1000).toLocaleTimeString()}.`) : null, form];
  if (!answer.traces.length) return { state: "empty", content: [...title, empty("No decided trace matches. Traces appear once decided (window.decision_wait after their last span).")] };
  const rows = table("traces", [
    { key: "traceId", label: "Trace", cell: (r) => link("trace", { id: r.traceId }, r.traceId.slice(0, 16) + "…") },
    { key: "start", label: "Start", value: (r) => Number(r.startUnixNano), cell: (r) => new Date(Number(r.startUnixNano) / 1e6).toLocaleTimeString() },
    { key: "root", label: "Root", value: (r) => r.rootService + " " + r.rootOperation, cell: (r) => `${r.rootService} · ${r.rootOperation}` },
    { key: "durationSeconds", label: "Duration", num: true, cell: (r) => fmt.ms(r.durationSeconds) },
    { key: "spanCount", label: "Spans", num: true },
    { key: "outcome", label: "Outcome", cell: (r) => outcomePill(r.outcome) },
    { key: "httpStatus", label: "HTTP", num: true, cell: (r) => r.httpStatus ?? "–" },
    { key: "decision", label: "Decision", cell: (r) => `${r.decision} (${r.rule})` },
  ], answer.traces, (r) => r.traceId, {
    rowClick: (id, e) => { if (/** @type {Element} */ (e.target).tagName !== "A") location.hash = href("trace", { id }); },
  });
  return { state: "ready", content: [...title, rows] };
}

/** @param {Params} params */
function searchForm(params) {
  /** @param {string} name @param {string} label @param {HTMLElement} [el] */
  const field = (name, label, el) => h("label", {}, label, el || h("input", { name, value: params[name] || "", size: 14 }));
  /** @param {string} name @param {string[]} options */
  const choice = (name, options) => h("select", { name }, options.map((o) => h("option", { value: o, selected: (params[name] || "") === o }, o || "any")));
  return h("form", { class: "search", onsubmit: (/** @type {SubmitEvent} */ e) => {
    e.preventDefault();
    /** @type {Record<string, string>} */
    const data = Object.fromEntries(/** @type {[string, string][]} */ ([...new FormData(/** @type {HTMLFormElement} */ (e.target))]));
    location.hash = href("traces", { ...data, from: params.from, to: params.to });
  } },
    field("service", "Service"), field("operation", "Operation"),
    field("outcome", "Outcome", choice("outcome", ["", "fault", "error", "throttle", "ok"])),
    field("min_duration", "Min duration (250ms)"),
    field("decision", "Decision", choice("decision", ["", "kept", "dropped"])),
    h("button", { type: "submit" }, "Search"));
}
