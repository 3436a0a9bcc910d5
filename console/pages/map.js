// @ts-check
// Map: the service map (Cytoscape.js, vendored: the global `cytoscape`) and its edges' table.

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
    { key: "p99", label: "p99", num: true, value: (r) => r.p99Seconds, cell: (r) => fmt.ms(r.p99Seconds) },
  ], map.edges, (r) => r.id);
  return {
    state: "ready",
    content: [h("h1", {}, "Service map"),
      h("div", { class: "legend" }, h("span", {}, h("i", { class: "dot-fault" }), "faults"), h("span", {}, h("i", { class: "dot-error" }), "errors"),
        h("span", {}, h("i", { class: "dot-throttle" }), "throttles"), h("span", {}, "thick outline: SLO breached"), h("span", {}, "click a node to open it")),
      box, h("h2", {}, "Edges"), edges],
    after: () => drawMap(box, map, window),
  };
}

/** @param {{ faults: number, throttles: number, errors: number }} x */
const color = (x) => (x.faults ? "#d62728" : x.throttles ? "#8e44ad" : x.errors ? "#e6a700" : "#4c78a8");

/**
 * The Cytoscape elements of the map: a node per map node, an edge per map edge, with their labels
 * (rates over the window of `windowSeconds`), colours and shapes.
 * @param {ServiceMap} map @param {number} windowSeconds
 */
export function mapElements(map, windowSeconds) {
  return [
    ...map.nodes.map((n) => ({ data: { id: n.id, label: `${n.name}\n${fmt.pct(n.availability)} · p99 ${fmt.ms(n.p99Seconds)}`,
      color: color(n), border: n.sloStatus === "BREACHED" ? 5 : 1, kind: n.kind, name: n.name, environment: n.environment,
      shape: n.kind === "database" ? "barrel" : n.kind === "queue" ? "round-tag" : n.kind === "client" ? "diamond" : "round-rectangle" } })),
    ...map.edges.map((e) => ({ data: { id: e.id, source: e.source, target: e.target, color: color(e),
      label: `${fmt.rate(e.requests / windowSeconds)}/s · ${fmt.pct(e.requests ? e.faults / e.requests : 0)} faults · p99 ${fmt.ms(e.p99Seconds)}` } })),
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
    return;
  }
  const roots = map.nodes.filter((n) => n.kind === "client").map((n) => n.id);
  const previous = cy ? { positions: Object.fromEntries(cy.nodes().map((n) => [n.id(), { ...n.position() }])), zoom: cy.zoom(), pan: { ...cy.pan() } } : null;
  if (cy) cy.destroy();
  const keep = previous && map.nodes.every((n) => previous.positions[n.id]);
  const core = cytoscape({
    container: box, elements, wheelSensitivity: 0.2,
    layout: keep ? { name: "preset", positions: (/** @type {cytoscape.NodeSingular} */ node) => previous.positions[node.id()], fit: false }
      : { name: "breadthfirst", directed: true, roots: roots.length ? roots : undefined, spacingFactor: 1.1, padding: 20 },
    style: [
      { selector: "node", style: { label: "data(label)", "text-wrap": "wrap", "font-size": 10, "text-valign": "bottom", "text-margin-y": 4,
        "background-color": "data(color)", shape: "data(shape)", width: 34, height: 34, "border-width": "data(border)", "border-color": "#111" } },
      { selector: "edge", style: { width: 2, "line-color": "data(color)", "target-arrow-color": "data(color)", "target-arrow-shape": "triangle",
        "curve-style": "bezier", label: "data(label)", "font-size": 8, "text-rotation": "autorotate", "text-background-color": "#fff", "text-background-opacity": 0.8 } },
    ],
  });
  cy = core;
  shownIds = ids;
  if (keep && previous) { core.zoom(previous.zoom); core.pan(previous.pan); }
  core.on("tap", "node", (e) => {
    const d = e.target.data();
    if (d.kind === "service") location.hash = href("service", { service: d.name, environment: d.environment });
  });
  core.on("tap", "edge", (e) => {
    const source = core.getElementById(e.target.data("source")).data();
    if (source.kind === "service") location.hash = href("service", { service: source.name, environment: source.environment });
  });
}
