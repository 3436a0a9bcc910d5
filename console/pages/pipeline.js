// @ts-check
// Pipeline: this instance's spans in and out per second, its counters, decisions by rule and lag.

import { api } from "../lib/api.js";
import { h } from "../lib/dom.js";
import { fmt } from "../lib/format.js";
import { table } from "../lib/table.js";

/** @import { PageResult } from "../lib/dom.js" */
/** @typedef {{ at: number, body: Pipeline }} Reading */

/**
 * The rate per second of counter `key` between two readings (`at` in ms), or null without an
 * earlier reading.
 * @param {Reading | null} before @param {Reading} now @param {"spansReceived" | "spansForwarded"} key
 */
export function ratePerSecond(before, now, key) {
  return before && now.at > before.at ? (now.body[key] - before.body[key]) / ((now.at - before.at) / 1000) : null;
}

/** @type {Reading | null} */
let lastReading = null;

/** @returns {Promise<PageResult>} */
export async function render() {
  /** @type {Pipeline} */
  const p = await api("/api/pipeline");
  const reading = { at: Date.now(), body: p };
  /** @param {"spansReceived" | "spansForwarded"} key */
  const rate = (key) => ratePerSecond(lastReading, reading, key);
  const rows = [
    { name: "Spans in per second", value: fmt.rate(rate("spansReceived")) },
    { name: "Spans out (forwarded) per second", value: fmt.rate(rate("spansForwarded")) },
    { name: "Spans received", value: fmt.count(p.spansReceived) },
    { name: "Spans rejected", value: fmt.count(p.spansRejected) },
    { name: "Spans forwarded", value: fmt.count(p.spansForwarded) },
    { name: "Dead letters", value: fmt.count(p.deadLetters) },
    { name: "Buffered spans", value: fmt.count(p.bufferedSpans) },
    { name: "Buffered traces", value: fmt.count(p.bufferedTraces) },
    { name: "Forward retries", value: fmt.count(p.forwardRetries) },
    { name: "Consumer lag (messages)", value: fmt.count(p.consumerLag.reduce((a, l) => a + l.value, 0)) },
  ];
  lastReading = reading;
  return { state: "ready", content: [h("h1", {}, "Pipeline (this instance)"),
    h("p", { class: "muted" }, "Rates are measured between refreshes (every 10 s)."),
    table("pipeline", [{ key: "name", label: "Measure" }, { key: "value", label: "Value", num: true }], rows, (r) => r.name),
    h("h2", {}, "Decisions by rule"),
    table("decisions", [{ key: "decision", label: "Decision" }, { key: "rule", label: "Rule" }, { key: "value", label: "Traces", num: true, cell: (r) => fmt.count(r.value) }],
      p.decisions, (r) => r.decision + "/" + r.rule),
    h("h2", {}, "Consumer lag by partition"),
    p.consumerLag.length ? table("lag", [{ key: "topic", label: "Topic" }, { key: "partition", label: "Partition" }, { key: "value", label: "Lag", num: true, cell: (r) => fmt.count(r.value) }],
      p.consumerLag, (r) => r.topic + "/" + r.partition) : h("p", { class: "muted" }, "No partition assigned yet.")] };
}
