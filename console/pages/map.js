// @ts-check
// Map: the service map (Cytoscape.js, vendored: the global `cytoscape`) and its edges' table. Each
// node's health is a ring split by the shares of its requests that were ok, errors, faults and
// throttles (as the X-Ray map draws it); edge labels are moved off each other and off the nodes.

import { api } from "../lib/api.js";
import { empty, h, kept } from "../lib/dom.js";
import { fmt, query } from "../lib/format.js";
import { fillEnvironments, href } from "../lib/router.js";
import { table } from "../lib/table.js";

/** @import { PageResult } from "../lib/dom.js" */

/** @param {{ environment: string }} params @returns {Promise<PageResult>} */
export async function render({ environment }) {
  /** @type {[ServiceMap, SeriesAnswer]} */
  const [map, series] = await Promise.all([api("/api/service-map" + query({ environment })), api("/api/series" + query({ environment }))]);
  const window = series.windowSeconds || 60;
  fillEnvironments(map.nodes.map((n) => n.environment));
  if (!map.nodes.length) return { state: "empty", content: empty("No requests in the last window: the map draws itself from the service and dependency metrics.") };
  const box = kept("map", null, () => h("div", { id: "map", role: "img", "aria-label": "Service map; the table below lists its edges" }));
  const edges = table("edges", [
    { key: "id", label: "Edge", cell: (r) => r.id },
    { key: "requests", label: "Requests", num: true, cell: (r) => fmt.count(r.requests) },
    { key: "faults", label: "Faults", num: true, cell: (r) => h("span", { class: r.faults ? "bad" : null }, fmt.count(r.faults)) },
    { key: "errors", label: "Errors", num: true, cell: (r) => fmt.count(r.errors) },
    { key: "kind", label: "Kind", cell: (r) => r.kind === "delivery" ? h("span", { title: "p50 and p99 are the delay from publish to consumption" }, "delivery") : r.kind },
    { key: "p50", label: "p50", num: true, value: (r) => r.p50Seconds, cell: (r) => fmt.ms(r.p50Seconds) },
    { key: "p99", label: "p99", num: true, value: (r) => r.p99Seconds, cell: (r) => fmt.ms(r.p99Seconds) },
  ], map.edges, (r) => r.id);
  return {
    state: "ready",
    content: [h("h1", {}, "Service map"),
      h("div", { class: "legend" }, h("span", {}, "ring: share of requests "), h("span", {}, h("i", { class: "dot-ok" }), "ok"),
        h("span", {}, h("i", { class: "dot-error" }), "errors"), h("span", {}, h("i", { class: "dot-fault" }), "faults"),
        h("span", {}, h("i", { class: "dot-throttle" }), "throttles"), h("span", {}, "thick outline: SLO breached"), h("span", {}, "click a node to open it")),
      box, h("h2", {}, "Edges"), edges],
    after: () => drawMap(box, map, window),
  };
}

/** The colours of the outcomes, as the legend shows them. */
const OUTCOME_COLORS = { ok: "#2e8540", error: "#e6a700", fault: "#d62728", throttle: "#8e44ad" };

/** An edge's colour: its worst outcome. @param {{ faults: number, throttles: number, errors: number }} x */
const color = (x) => (x.faults ? OUTCOME_COLORS.fault : x.throttles ? OUTCOME_COLORS.throttle : x.errors ? OUTCOME_COLORS.error : "#4c78a8");

/**
 * The shares (percent, adding up to 100) of a node's requests that were ok, errors (4xx other than
 * throttles), faults and throttles: the slices of its ring. Without requests, all ok.
 * @param {{ requests: number, faults: number, errors: number, throttles: number }} x
 */
export function healthShares(x) {
  if (!x.requests) return { ok: 100, error: 0, fault: 0, throttle: 0 };
  const percent = (/** @type {number} */ n) => (100 * n) / x.requests;
  const fault = percent(x.faults), throttle = percent(x.throttles), error = percent(Math.max(0, x.errors - x.throttles));
  return { ok: Math.max(0, 100 - fault - throttle - error), error, fault, throttle };
}

/**
 * The Cytoscape elements of the map: a node per map node, an edge per map edge, with their labels
 * (rates over the window of `windowSeconds`), colours and shapes.
 * @param {ServiceMap} map @param {number} windowSeconds
 */
export function mapElements(map, windowSeconds) {
  return [
    ...map.nodes.map((n) => ({ data: { id: n.id, label: `${n.name}\n${fmt.pct(n.availability)} · p99 ${fmt.ms(n.p99Seconds)}`,
      ...healthShares(n), border: n.sloStatus === "BREACHED" ? 5 : 1, kind: n.kind, name: n.name, environment: n.environment,
      shape: n.kind === "database" ? "barrel" : n.kind === "queue" ? "round-tag" : n.kind === "client" ? "diamond" : "ellipse" } })),
    ...map.edges.map((e) => ({ data: { id: e.id, source: e.source, target: e.target, color: color(e), kind: e.kind,
      label: e.kind === "delivery"
        // Deliveries: the latency is the time a message waited in the queue.
        ? `${fmt.rate(e.requests / windowSeconds)}/s · ${fmt.pct(e.requests ? e.faults / e.requests : 0)} faults · delay p50 ${fmt.ms(e.p50Seconds)} p99 ${fmt.ms(e.p99Seconds)}`
        : `${fmt.rate(e.requests / windowSeconds)}/s · ${fmt.pct(e.requests ? e.faults / e.requests : 0)} faults · p99 ${fmt.ms(e.p99Seconds)}` } })),
  ];
}

/** @type {cytoscape.Core | null} */
let cy = null;
/** The ids of the elements `cy` shows, sorted, one a line. */
let shownIds = "";

/** A new visit: the map of the last one goes. */
export function forgetMap() {
  if (cy) { cy.destroy(); cy = null; }
  shownIds = "";
}

/**
 * Draws the map into `box`. The same elements as last time (same ids) only get their new labels
 * and colours; else it is drawn anew, keeping the layout (and the zoom) when no node is new.
 * @param {HTMLElement} box @param {ServiceMap} map @param {number} windowSeconds
 */
function drawMap(box, map, windowSeconds) {
  const elements = mapElements(map, windowSeconds);
  const ids = elements.map((e) => e.data.id).sort().join("\n");
  if (cy && cy.container() === box && ids === shownIds) {
    const same = cy;
    same.resize(); // the box may have moved
    same.batch(() => { for (const e of elements) same.getElementById(e.data.id).data(e.data); });
    placeLabels(same, box); // new labels, new sizes
    return;
  }
  const roots = map.nodes.filter((n) => n.kind === "client").map((n) => n.id);
  const previous = cy ? { positions: Object.fromEntries(cy.nodes().map((n) => [n.id(), { ...n.position() }])), zoom: cy.zoom(), pan: { ...cy.pan() } } : null;
  if (cy) cy.destroy();
  const keep = previous && map.nodes.every((n) => previous.positions[n.id]);
  const core = cytoscape({
    container: box, elements, wheelSensitivity: 0.2,
    layout: keep ? { name: "preset", positions: (/** @type {cytoscape.NodeSingular} */ node) => previous.positions[node.id()], fit: false }
      : { name: "breadthfirst", directed: true, roots: roots.length ? roots : undefined, spacingFactor: 1.5, padding: 20 },
    style: [
      { selector: "node", style: { label: "data(label)", "text-wrap": "wrap", "font-size": 10, "text-valign": "bottom", "text-margin-y": 4,
        "background-color": "#f4f6f8", shape: "data(shape)", width: 38, height: 38, "border-width": "data(border)", "border-color": "#111",
        "pie-size": "100%", "pie-hole": "58%",
        "pie-1-background-color": OUTCOME_COLORS.ok, "pie-1-background-size": "data(ok)",
        "pie-2-background-color": OUTCOME_COLORS.error, "pie-2-background-size": "data(error)",
        "pie-3-background-color": OUTCOME_COLORS.fault, "pie-3-background-size": "data(fault)",
        "pie-4-background-color": OUTCOME_COLORS.throttle, "pie-4-background-size": "data(throttle)" } },
      { selector: "edge", style: { width: 2, "line-color": "data(color)", "target-arrow-color": "data(color)", "target-arrow-shape": "triangle",
        "curve-style": "bezier", label: "data(label)", "font-size": 8, "text-background-color": "#fff", "text-background-opacity": 0.85,
        "text-background-padding": "1px" } },
    ],
  });
  cy = core;
  shownIds = ids;
  if (keep && previous) { core.zoom(previous.zoom); core.pan(previous.pan); }
  bendPastNodes(core);
  placeLabels(core, box);
  core.on("tap", "node", (e) => {
    const d = e.target.data();
    if (d.kind === "service") location.hash = href("service", { service: d.name, environment: d.environment });
  });
  core.on("tap", "edge", (e) => {
    const source = core.getElementById(e.target.data("source")).data();
    if (source.kind === "service") location.hash = href("service", { service: source.name, environment: source.environment });
  });
}

/** How far an edge that would cross a node (or its label) bows out, in pixels. */
const BOW = 50;

/**
 * Whether the segment from `a` to `b` passes through `box` (sampled every few pixels).
 * @param {cytoscape.Position} a @param {cytoscape.Position} b @param {Box} box
 */
function crosses(a, b, box) {
  const steps = Math.max(2, Math.ceil(Math.hypot(b.x - a.x, b.y - a.y) / 4));
  for (let i = 1; i < steps; i++) {
    const x = a.x + ((b.x - a.x) * i) / steps, y = a.y + ((b.y - a.y) * i) / steps;
    if (x > box.x1 && x < box.x2 && y > box.y1 && y < box.y2) return true;
  }
  return false;
}

/**
 * An edge whose straight line would pass through a node other than its own two bows out around
 * it (layouts by layer put a caller and its callee's callee on one row).
 * @param {cytoscape.Core} core
 */
function bendPastNodes(core) {
  const nodes = core.nodes();
  core.edges().forEach((edge) => {
    const [from, to] = [edge.data("source"), edge.data("target")];
    const a = core.getElementById(from).position(), b = core.getElementById(to).position();
    const blocker = nodes.find((n) => n.id() !== from && n.id() !== to && crosses(a, b, n.boundingBox({ includeLabels: true })));
    if (!blocker) return;
    // Cytoscape bows a positive distance towards `normal` (the source → target direction turned
    // clockwise on screen); away from the blocker's centre, or, through it, upwards (its label
    // hangs below it).
    const length = Math.hypot(b.x - a.x, b.y - a.y) || 1;
    const normal = { x: -(b.y - a.y) / length, y: (b.x - a.x) / length };
    const c = blocker.position();
    const side = (c.x - a.x) * normal.x + (c.y - a.y) * normal.y;
    const distance = Math.abs(side) > 5 ? -Math.sign(side) * BOW : normal.y > 0 ? -BOW : BOW;
    edge.style("curve-style", "unbundled-bezier").style("control-point-distances", distance).style("control-point-weights", 0.5);
  });
}

/** How far an edge label may be moved off its edge's midpoint, in steps of this many pixels. */
const LABEL_STEP = 12;
const LABEL_STEPS = 6;

/**
 * @typedef {{ x1: number, y1: number, x2: number, y2: number }} Box
 * @param {Box} a @param {Box} b
 */
const overlaps = (a, b) => a.x1 < b.x2 && b.x1 < a.x2 && a.y1 < b.y2 && b.y1 < a.y2;

/** An edge's label alone. @param {cytoscape.EdgeSingular} edge @returns {Box} */
const labelBox = (edge) => edge.boundingBox({ includeNodes: false, includeEdges: false, includeLabels: true, includeOverlays: false });

/**
 * Moves each edge label up or down its edge's midpoint, nearest first, until it overlaps no node
 * (with its label) and no label placed before it; a label with no free place within
 * `LABEL_STEPS` steps is hidden (the edges table has every figure). Says on `box` how many labels
 * overlap anything afterwards (`data-label-overlaps`) and how many were hidden
 * (`data-labels-hidden`).
 * @param {cytoscape.Core} core @param {HTMLElement} box
 */
function placeLabels(core, box) {
  /** @type {Box[]} */
  const taken = core.nodes().map((n) => n.boundingBox({ includeLabels: true, includeOverlays: false }));
  let hidden = 0;
  core.batch(() => core.edges().forEach((edge) => { edge.removeStyle("text-margin-y label"); }));
  core.edges().forEach((edge) => {
    const offsets = [0];
    for (let i = 1; i <= LABEL_STEPS; i++) offsets.push(-i * LABEL_STEP, i * LABEL_STEP);
    for (const offset of offsets) {
      edge.style("text-margin-y", offset);
      const label = labelBox(edge);
      if (!taken.some((t) => overlaps(t, label))) {
        taken.push(label);
        return;
      }
    }
    edge.style("label", "");
    hidden++;
  });
  // Counted afresh, every label against every node and every other label.
  const labels = core.edges().filter((e) => e.style("label") !== "").map(labelBox);
  const bodies = core.nodes().map((n) => n.boundingBox({ includeLabels: true, includeOverlays: false }));
  let overlapping = 0;
  labels.forEach((label, i) => {
    if (bodies.some((b) => overlaps(b, label)) || labels.some((other, j) => j !== i && overlaps(other, label))) overlapping++;
  });
  box.dataset.labelOverlaps = String(overlapping);
  box.dataset.labelsHidden = String(hidden);
}
