// @ts-check
// Trace: a waterfall of the spans with their outcomes; a span opens on click to its attributes.

import { api } from "../lib/api.js";
import { empty, errorBox, h, kept, outcomePill } from "../lib/dom.js";
import { fmt } from "../lib/format.js";
import { rerender } from "../lib/router.js";

/** @import { PageResult } from "../lib/dom.js" */
/** @typedef {{ open?: Record<string, boolean> }} TraceState */

/**
 * Where each span sits in the waterfall: its depth under its parent (0 for a root or a span whose
 * parent is not in the trace), and its bar's left edge and width as percentages of the trace.
 * @param {Span[]} spans
 * @returns {Map<string, { depth: number, left: number, width: number }>} by span id
 */
export function waterfallLayout(spans) {
  const t0 = Math.min(...spans.map((s) => Number(s.startUnixNano)));
  const total = Math.max(1, ...spans.map((s) => Number(s.startUnixNano) - t0 + s.durationSeconds * 1e9));
  /** @type {Record<string, number>} */
  const depth = {};
  const byId = Object.fromEntries(spans.map((s) => [s.spanId, s]));
  /** @param {Span} s @returns {number} */
  const depthOf = (s) => depth[s.spanId] ?? (depth[s.spanId] = s.parentSpanId && byId[s.parentSpanId] ? depthOf(byId[s.parentSpanId]) + 1 : 0);
  return new Map(spans.map((s) => [s.spanId, {
    depth: depthOf(s),
    left: ((Number(s.startUnixNano) - t0) / total) * 100,
    width: ((s.durationSeconds * 1e9) / total) * 100,
  }]));
}

/** @param {{ id?: string }} params @param {TraceState} state @returns {Promise<PageResult>} */
export async function render({ id }, state) {
  if (!id) return { state: "error", content: errorBox("Which trace? Open one from the Traces page.") };
  /** @type {Trace} */
  const trace = await api(`/api/traces/${encodeURIComponent(id)}?redirect=false`);
  const head = [h("h1", {}, "Trace ", h("code", {}, trace.traceId)),
    h("p", {}, `${trace.rootService} · ${trace.rootOperation} — `, outcomePill(trace.outcome), ` ${fmt.ms(trace.durationSeconds)}, ${trace.spanCount} spans, ${trace.decision} by ${trace.rule}`)];
  const spans = trace.spans;
  if (!spans) {
    const elsewhere = trace.heldBy && trace.decision === "kept";
    return { state: "empty", content: [...head, empty(elsewhere ? "Its spans are held by another instance: " : "Its spans are no longer held here (only the most recent kept traces are, up to investigation.max_trace_bytes).",
      elsewhere ? h("a", { href: trace.heldBy + "/#/trace?id=" + trace.traceId }, trace.heldBy) : null)] };
  }
  const open = (state.open = state.open || {});
  const waterfall = kept("waterfall", { spans, open }, () => {
    const layout = waterfallLayout(spans);
    const rows = spans.map((s) => {
      const at = /** @type {{ depth: number, left: number, width: number }} */ (layout.get(s.spanId));
      const toggle = () => { open[s.spanId] = !open[s.spanId]; rerender(); };
      const row = h("div", { class: "span-row", "data-span": s.spanId, "data-outcome": s.outcome, tabindex: 0, role: "button", "aria-expanded": !!open[s.spanId],
        onclick: toggle, onkeydown: (/** @type {KeyboardEvent} */ e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggle(); } } },
        h("div", { class: "span-name", style: `padding-left:${at.depth * 14}px`, title: s.name }, `${s.service} · ${s.name} `, h("span", { class: "muted" }, s.kind)),
        h("div", { class: "bar-track" }, h("div", { class: "bar " + s.outcome, style: `left:${at.left}%;width:${Math.max(at.width, 0.2)}%` })),
        h("div", { class: "num" }, fmt.ms(s.durationSeconds)));
      if (open[s.spanId]) {
        row.append(h("div", { class: "attrs" }, h("table", {}, h("tbody", {},
          h("tr", {}, h("td", {}, "outcome"), h("td", {}, outcomePill(s.outcome), s.httpStatus ? ` HTTP ${s.httpStatus}` : "", ` status ${s.status}`)),
          Object.entries(s.attributes || {}).map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", {}, typeof v === "object" ? JSON.stringify(v) : String(v))))))));
      }
      return row;
    });
    return h("div", { class: "waterfall", "data-waterfall": "" }, rows);
  });
  return { state: "ready", content: [...head, waterfall] };
}
