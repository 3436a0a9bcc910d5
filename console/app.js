// The tracewarden console: a small single page over the instance's own JSON APIs.
//
// - The URL holds the page and its filters (`#/service?service=…&environment=…&range=1h`), so a
//   link can be shared and the back button works; environment and range are chosen once and kept
//   (localStorage) for the next pages.
// - Every page renders into <main id="page" data-page=… data-state=loading|ready|empty|error>,
//   refreshes itself every 10 s without losing the scroll, the sort or the open panel, and shows an
//   API error as a message.
// - Charts are uPlot, the map is Cytoscape.js (both vendored under /console/vendor/).
"use strict";

(() => {
  const REFRESH_MS = 10_000;
  const main = document.getElementById("page");
  const RANGES = { "15m": 900, "30m": 1800, "1h": 3600 };

  // ---- small helpers -------------------------------------------------------------------------

  /** Builds an element: h("a", {href: "#/x", class: "y"}, "text", child…). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  const fmt = {
    count: (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US")),
    rate: (n) => (n === null || n === undefined ? "–" : n >= 100 ? n.toFixed(0) : n >= 1 ? n.toFixed(1) : n.toFixed(2)),
    pct: (r) => (r === null || r === undefined ? "–" : (r * 100).toFixed(r > 0.999 && r < 1 ? 3 : 2) + " %"),
    ms: (s) => (s === null || s === undefined ? "–" : s >= 1 ? s.toFixed(2) + " s" : (s * 1000).toFixed(s < 0.01 ? 2 : 1) + " ms"),
    time: (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" }),
  };

  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
    const s = q.toString();
    return s ? "?" + s : "";
  }

  /** The access token the user gave ([http] bearer_token), for this tab only. */
  const TOKEN_KEY = "tw.token";

  /** An API call refused for want of the access token. */
  class TokenRequired extends Error {}

  /** GET an API path; a non-2xx answer throws its message (and the parameter it names). */
  async function api(path) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = { Accept: "application/json", ...(token ? { Authorization: "Bearer " + token } : {}) };
    const response = await fetch(path, { headers });
    if (response.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      throw new TokenRequired(token ? "That access token was refused." : "This tracewarden asks for an access token.");
    }
    let body = null;
    try { body = await response.json(); } catch (_) { /* not JSON */ }
    if (!response.ok) {
      const what = body && body.error ? body.error + (body.parameter ? ` (parameter ${body.parameter})` : "") : response.statusText;
      throw new Error(`${path}: ${response.status} ${what}`);
    }
    return body;
  }

  // ---- routing and global filters ------------------------------------------------------------

  function route() {
    const hash = location.hash.replace(/^#\/?/, "");
    const [page, search] = hash.split("?");
    return { page: page || "services", params: Object.fromEntries(new URLSearchParams(search || "")) };
  }

  function globals(params) {
    const environment = params.environment ?? localStorage.getItem("tw.environment") ?? "";
    const range = RANGES[params.range] ? params.range : localStorage.getItem("tw.range") || "15m";
    return { environment, range };
  }

  /** A link to a page, carrying the global filters. */
  function href(page, params) {
    const g = globals(route().params);
    return "#/" + page + query({ ...params, environment: params.environment ?? g.environment, range: g.range });
  }

  function link(page, params, text, attrs) {
    return h("a", { href: href(page, params), ...(attrs || {}) }, text);
  }

  for (const select of document.querySelectorAll("[data-filter]")) {
    select.addEventListener("change", () => {
      localStorage.setItem("tw." + select.dataset.filter, select.value);
      const { page, params } = route();
      params[select.dataset.filter] = select.value;
      location.hash = "#/" + page + query(params);
    });
  }

  // ---- tables ---------------------------------------------------------------------------------

  const sorts = {}; // table name -> {col, dir}

  /**
   * A sortable table: columns [{key, label, num, value(row), cell(row)}], rows, key(row).
   * Header cells sort on click or Enter; the sort survives refreshes.
   */
  function table(name, columns, rows, key) {
    const sort = sorts[name];
    if (sort) {
      const col = columns.find((c) => c.key === sort.col);
      if (col) {
        const v = col.value || ((r) => r[col.key]);
        rows = [...rows].sort((a, b) => {
          const x = v(a), y = v(b);
          const c = x === y ? 0 : x === null || x === undefined ? 1 : y === null || y === undefined ? -1 : x < y ? -1 : 1;
          return sort.dir === "asc" ? c : -c;
        });
      }
    }
    const head = h("tr", {}, columns.map((c) => {
      const aria = sort && sort.col === c.key ? (sort.dir === "asc" ? "ascending" : "descending") : null;
      const toggle = () => {
        sorts[name] = { col: c.key, dir: sort && sort.col === c.key && sort.dir === "desc" ? "asc" : "desc" };
        refresh(false);
      };
      return h("th", { class: c.num ? "num" : null, tabindex: 0, "aria-sort": aria, scope: "col",
        onclick: toggle, onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggle(); } } }, c.label);
    }));
    const body = rows.map((r) => h("tr", { "data-row": key(r) }, columns.map((c) =>
      h("td", { "data-col": c.key, class: c.num ? "num" : null }, c.cell ? c.cell(r) : r[c.key]))));
    return h("table", { "data-table": name }, h("thead", {}, head), h("tbody", {}, body));
  }

  function empty(text, ...more) {
    return h("div", { class: "empty" }, text, ...more);
  }

  function statusCell(status) {
    return status ? h("span", { class: "status-" + status }, status) : h("span", { class: "muted" }, "–");
  }

  function outcomePill(outcome) {
    return h("span", { class: "pill " + outcome }, outcome);
  }

  // ---- charts ---------------------------------------------------------------------------------

  const charts = new Map(); // data-chart name -> uPlot

  /**
   * A time chart into `container` (replaced): series [{label, values, color}] over `times` (unix
   * seconds). `onPoint(index)` is called when a point is clicked.
   */
  function chart(container, name, title, times, series, opts) {
    const old = charts.get(name);
    if (old) old.destroy();
    const width = Math.max(300, container.clientWidth - 20);
    const o = {
      width, height: 200, title: undefined,
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      axes: [{}, { values: (u, vals) => vals.map((v) => (opts && opts.format ? opts.format(v) : v)), size: 80 }],
      series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 1.5, points: { show: false },
        value: (u, v) => (v === null ? "–" : opts && opts.format ? opts.format(v) : v) }))],
    };
    const plot = new uPlot(o, [times, ...series.map((s) => s.values)], container);
    charts.set(name, plot);
    if (opts && opts.onPoint) {
      plot.over.addEventListener("click", () => {
        const i = plot.cursor.idx;
        if (i !== null && i !== undefined) opts.onPoint(i);
      });
      plot.over.style.cursor = "pointer";
      plot.over.title = "Click a point: its traces and top contributors";
    }
    return plot;
  }

  function chartBox(name, title) {
    return h("div", { class: "chart", "data-chart": name }, h("h3", {}, title));
  }

  function sparkline(values) {
    const w = 90, hgt = 22, max = Math.max(1, ...values);
    const pts = values.map((v, i) => `${(i / Math.max(1, values.length - 1)) * w},${hgt - (v / max) * (hgt - 2) - 1}`);
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("width", w); svg.setAttribute("height", hgt); svg.setAttribute("class", "spark");
    svg.setAttribute("aria-hidden", "true");
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", pts.join(" ")); line.setAttribute("fill", "none");
    line.setAttribute("stroke", "#4c78a8"); line.setAttribute("stroke-width", "1.5");
    svg.append(line);
    return svg;
  }

  /** History of a series over the chosen range. */
  async function seriesHistory(selection) {
    const g = globals(route().params);
    const from = Math.floor(Date.now() / 1000) - RANGES[g.range];
    return api("/api/history" + query({ ...selection, from }));
  }

  const unix = (iso) => Date.parse(iso) / 1000;

  // ---- pages ----------------------------------------------------------------------------------

  const pages = {};

  pages.services = async ({ environment }) => {
    const [map, series, slos] = await Promise.all([
      api("/api/service-map" + query({ environment })), api("/api/series" + query({ environment })), api("/api/slos"),
    ]);
    const nodes = map.nodes.filter((n) => n.kind === "service");
    fillEnvironments(map.nodes.map((n) => n.environment));
    if (!nodes.length) {
      return { state: "empty", content: empty("No requests in the last window yet. Spans arrive from the input topics (",
        h("code", {}, "kafka.input_topics"), "); the Pipeline page shows what is read.") };
    }
    const sparks = await Promise.all(nodes.map((n) =>
      seriesHistory({ service: n.name, environment: n.environment }).then((hst) => hst.points.map((p) => p.requests)).catch(() => [])));
    const window = series.windowSeconds || 60;
    const rows = nodes.map((n, i) => ({ ...n, rate: n.requests / window, faultRate: n.requests ? n.faults / n.requests : null,
      errorRate: n.requests ? n.errors / n.requests : null, spark: sparks[i] }));
    const cols = [
      { key: "name", label: "Service", cell: (r) => link("service", { service: r.name, environment: r.environment }, r.name) },
      { key: "environment", label: "Environment" },
      { key: "requests", label: "Requests/s", num: true, value: (r) => r.rate, cell: (r) => fmt.rate(r.rate) },
      { key: "availability", label: "Availability", num: true, cell: (r) => h("span", { class: r.availability < 0.99 ? "bad" : null }, fmt.pct(r.availability)) },
      { key: "faults", label: "Fault rate", num: true, value: (r) => r.faultRate, cell: (r) => h("span", { class: r.faults ? "bad" : null }, fmt.pct(r.faultRate)) },
      { key: "errors", label: "Error rate", num: true, value: (r) => r.errorRate, cell: (r) => h("span", { class: r.errors ? "warn" : null }, fmt.pct(r.errorRate)) },
      { key: "p99", label: "p99", num: true, value: (r) => r.p99Seconds, cell: (r) => fmt.ms(r.p99Seconds) },
      { key: "slo", label: "SLO", value: (r) => r.sloStatus, cell: (r) => statusCell(r.sloStatus) },
      { key: "trend", label: "Requests (" + g(route()).range + ")", value: (r) => r.spark.reduce((a, b) => a + b, 0), cell: (r) => sparkline(r.spark) },
    ];
    return { state: "ready", content: [h("h1", {}, "Services"),
      h("p", { class: "muted" }, `Figures over the last ${window} s (metrics.window), from every instance of the group.`),
      table("services", cols, rows, (r) => r.name + ":" + r.environment),
      slos.slos.length ? null : h("p", { class: "muted" }, "No SLOs configured — see config/tracewarden.toml ([[slo]]).")] };
  };

  const g = (r) => globals(r.params);

  pages.service = async ({ service, environment, operation }, state) => {
    if (!service) return { state: "error", content: errorBox("Which service? Open one from the Services page.") };
    const sel = { service, environment, operation };
    const [series, hst] = await Promise.all([api("/api/series" + query({ service, environment })), seriesHistory(sel)]);
    const times = hst.points.map((p) => unix(p.time));
    const content = h("div", {});
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
      { key: "remoteService", label: "Calls", cell: (r) => link("service", { service: r.remoteService, environment: r.environment }, r.remoteService) },
      { key: "remoteOperation", label: "Remote operation" },
      { key: "operation", label: "From operation" },
      { key: "requests", label: "Requests", num: true, cell: (r) => fmt.count(r.requests) },
      { key: "faults", label: "Faults", num: true, cell: (r) => h("span", { class: r.faults ? "bad" : null }, fmt.count(r.faults)) },
      { key: "throttles", label: "Throttles", num: true, cell: (r) => fmt.count(r.throttles) },
      { key: "p99", label: "p99", num: true, value: (r) => r.p99Seconds, cell: (r) => fmt.ms(r.p99Seconds) },
    ], series.dependencies, (r) => r.remoteService + "/" + r.remoteOperation + "/" + r.operation);
    const boxes = [chartBox("requests", "Requests and errors per 10 s"), chartBox("faults", "Faults per 10 s"), chartBox("latency", "Latency")];
    const layout = h("div", { class: "layout" }, h("div", {}, h("div", { class: "grid" }, boxes)));
    content.append(
      h("h1", {}, service, operation ? h("span", { class: "muted" }, " · " + operation) : null,
        environment ? h("span", { class: "muted" }, " · " + environment) : null),
      layout,
      h("h2", {}, "Operations"), series.operations.length ? operations : empty("No requests to this service in the last window."),
      h("h2", {}, "Dependencies"), series.dependencies.length ? dependencies : empty("No calls out of this service in the last window."));
    const onPoint = (i) => {
      state.point = { time: hst.points[i].time, traceIds: hst.points[i].traceIds, requests: hst.points[i].requests, faults: hst.points[i].faults };
      showPointPanel(layout, sel, state);
    };
    return {
      state: "ready", content,
      after: () => {
        chart(boxes[0], "requests", "", times, [
          { label: "requests", values: hst.points.map((p) => p.requests), color: "#4c78a8" },
          { label: "errors", values: hst.points.map((p) => p.errors), color: "#e6a700" },
          { label: "throttles", values: hst.points.map((p) => p.throttles), color: "#8e44ad" }], { onPoint });
        chart(boxes[1], "faults", "", times, [{ label: "faults", values: hst.points.map((p) => p.faults), color: "#d62728" }], { onPoint });
        chart(boxes[2], "latency", "", times, [
          { label: "p50", values: hst.points.map((p) => p.p50Seconds), color: "#2e8540" },
          { label: "p90", values: hst.points.map((p) => p.p90Seconds), color: "#e6a700" },
          { label: "p99", values: hst.points.map((p) => p.p99Seconds), color: "#d62728" }], { onPoint, format: (v) => fmt.ms(v) });
        if (state.point) showPointPanel(layout, sel, state);
      },
    };
  };

  /** The panel of a clicked chart point: its traces and the top contributors. */
  async function showPointPanel(layout, sel, state) {
    const point = state.point;
    const dims = await api("/api/contributors/dimensions" + query({ service: sel.service, environment: sel.environment, operation: sel.operation })).catch(() => ({ dimensions: [] }));
    const dimension = state.dimension && dims.dimensions.includes(state.dimension) ? state.dimension
      : dims.dimensions.includes("k8s.pod.name") ? "k8s.pod.name" : dims.dimensions[0];
    let contributors = null, problem = null;
    if (dimension) {
      contributors = await api("/api/contributors" + query({ ...sel, dimension, by: state.by || "faults" })).catch((e) => { problem = e.message; return null; });
    }
    const start = Math.floor(unix(point.time));
    const panel = h("aside", { "data-panel": "point", "aria-label": "The clicked point" },
      h("h2", {}, "At " + fmt.time(point.time)),
      h("p", {}, `${fmt.count(point.requests)} requests, `, h("span", { class: point.faults ? "bad" : null }, `${fmt.count(point.faults)} faults`), " in these 10 s."),
      h("h3", {}, "Example traces"),
      point.traceIds.length ? h("ul", {}, point.traceIds.map((id) => h("li", {}, link("trace", { id }, id.slice(0, 16) + "…")))) : h("p", { class: "muted" }, "none"),
      link("traces", { service: sel.service, environment: sel.environment, operation: sel.operation, from: start - 10, to: start + 20 }, "All traces around this point →", { "data-link": "traces" }),
      h("h3", {}, "Top contributors (last window)"),
      dimension ? h("label", {}, "by ", h("select", { onchange: (e) => { state.dimension = e.target.value; showPointPanel(layout, sel, state); } },
        dims.dimensions.map((d) => h("option", { value: d, selected: d === dimension }, d)))) : null,
      problem ? errorBox(problem) : contributors ? table("contributors", [
        { key: "value", label: dimension },
        { key: "requests", label: "Req", num: true, cell: (r) => fmt.count(r.requests) },
        { key: "faults", label: "Faults", num: true, cell: (r) => h("span", { class: r.faults ? "bad" : null }, fmt.count(r.faults)) },
        { key: "p99", label: "p99", num: true, value: (r) => r.p99Seconds, cell: (r) => fmt.ms(r.p99Seconds) },
      ], contributors.contributors, (r) => r.value) : h("p", { class: "muted" }, "No resource attributes (investigation.dimensions) seen for this series."),
      contributors && contributors.estimated ? h("p", { class: "muted" }, "Estimated: more resources than investigation.max_values_per_dimension.") : null,
      h("button", { type: "button", onclick: () => { state.point = null; layout.classList.remove("with-panel"); layout.querySelector("aside")?.remove(); resyncCharts(); } }, "Close"));
    layout.querySelector("aside")?.remove();
    layout.classList.add("with-panel");
    layout.append(panel);
    resyncCharts();
  }

  /** The charts moved (a panel opened or closed): uPlot must measure where its plots are again. */
  function resyncCharts() {
    for (const plot of charts.values()) plot.syncRect(true);
  }

  pages.map = async ({ environment }) => {
    const [map, series] = await Promise.all([api("/api/service-map" + query({ environment })), api("/api/series" + query({ environment }))]);
    const window = series.windowSeconds || 60;
    fillEnvironments(map.nodes.map((n) => n.environment));
    if (!map.nodes.length) return { state: "empty", content: empty("No requests in the last window: the map draws itself from the service and dependency metrics.") };
    const box = h("div", { id: "map", role: "img", "aria-label": "Service map; the table below lists its edges" });
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
  };

  let cy = null;
  function drawMap(box, map, window) {
    const color = (x) => (x.faults ? "#d62728" : x.throttles ? "#8e44ad" : x.errors ? "#e6a700" : "#4c78a8");
    const elements = [
      ...map.nodes.map((n) => ({ data: { id: n.id, label: `${n.name}\n${fmt.pct(n.availability)} · p99 ${fmt.ms(n.p99Seconds)}`,
        color: color(n), border: n.sloStatus === "BREACHED" ? 5 : 1, kind: n.kind, name: n.name, environment: n.environment,
        shape: n.kind === "database" ? "barrel" : n.kind === "queue" ? "round-tag" : n.kind === "client" ? "diamond" : "round-rectangle" } })),
      ...map.edges.map((e) => ({ data: { id: e.id, source: e.source, target: e.target, color: color(e),
        label: `${fmt.rate(e.requests / window)}/s · ${fmt.pct(e.requests ? e.faults / e.requests : 0)} faults · p99 ${fmt.ms(e.p99Seconds)}` } })),
    ];
    const roots = map.nodes.filter((n) => n.kind === "client").map((n) => n.id);
    // Node ids are stable: a refresh keeps the layout (and the zoom) as long as no node is new.
    const previous = cy ? { positions: Object.fromEntries(cy.nodes().map((n) => [n.id(), { ...n.position() }])), zoom: cy.zoom(), pan: { ...cy.pan() } } : null;
    if (cy) cy.destroy();
    const keep = previous && map.nodes.every((n) => previous.positions[n.id]);
    cy = cytoscape({
      container: box, elements, wheelSensitivity: 0.2,
      layout: keep ? { name: "preset", positions: (node) => previous.positions[node.id()], fit: false }
        : { name: "breadthfirst", directed: true, roots: roots.length ? roots : undefined, spacingFactor: 1.1, padding: 20 },
      style: [
        { selector: "node", style: { label: "data(label)", "text-wrap": "wrap", "font-size": 10, "text-valign": "bottom", "text-margin-y": 4,
          "background-color": "data(color)", shape: "data(shape)", width: 34, height: 34, "border-width": "data(border)", "border-color": "#111" } },
        { selector: "edge", style: { width: 2, "line-color": "data(color)", "target-arrow-color": "data(color)", "target-arrow-shape": "triangle",
          "curve-style": "bezier", label: "data(label)", "font-size": 8, "text-rotation": "autorotate", "text-background-color": "#fff", "text-background-opacity": 0.8 } },
      ],
    });
    if (keep) { cy.zoom(previous.zoom); cy.pan(previous.pan); }
    cy.on("tap", "node", (e) => {
      const d = e.target.data();
      if (d.kind === "service") location.hash = href("service", { service: d.name, environment: d.environment });
    });
    cy.on("tap", "edge", (e) => {
      const source = cy.getElementById(e.target.data("source")).data();
      if (source.kind === "service") location.hash = href("service", { service: source.name, environment: source.environment });
    });
  }

  pages.traces = async (params) => {
    const filters = { service: params.service, operation: params.operation, environment: params.environment, outcome: params.outcome,
      min_duration: params.min_duration, decision: params.decision, from: params.from, to: params.to, limit: params.limit || 100 };
    const answer = await api("/api/traces" + query(filters));
    const field = (name, label, el) => h("label", {}, label, el || h("input", { name, value: params[name] || "", size: 14 }));
    const form = h("form", { class: "search", onsubmit: (e) => {
      e.preventDefault();
      const data = Object.fromEntries(new FormData(e.target));
      location.hash = href("traces", { ...data, from: params.from, to: params.to });
    } },
      field("service", "Service"), field("operation", "Operation"),
      field("outcome", "Outcome", h("select", { name: "outcome" }, ["", "fault", "error", "throttle", "ok"].map((o) => h("option", { value: o, selected: (params.outcome || "") === o }, o || "any")))),
      field("min_duration", "Min duration (250ms)"),
      field("decision", "Decision", h("select", { name: "decision" }, ["", "kept", "dropped"].map((o) => h("option", { value: o, selected: (params.decision || "") === o }, o || "any")))),
      h("button", { type: "submit" }, "Search"));
    const title = [h("h1", {}, "Traces"), params.from ? h("p", { class: "muted" }, `Between ${new Date(params.from * 1000).toLocaleTimeString()} and ${new Date(params.to * 1000).toLocaleTimeString()}.`) : null, form];
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
    ], answer.traces, (r) => r.traceId);
    for (const tr of rows.querySelectorAll("tbody tr")) {
      tr.addEventListener("click", (e) => { if (e.target.tagName !== "A") location.hash = href("trace", { id: tr.dataset.row }); });
    }
    return { state: "ready", content: [...title, rows] };
  };

  pages.trace = async ({ id }, state) => {
    if (!id) return { state: "error", content: errorBox("Which trace? Open one from the Traces page.") };
    const trace = await api(`/api/traces/${encodeURIComponent(id)}?redirect=false`);
    const head = [h("h1", {}, "Trace ", h("code", {}, trace.traceId)),
      h("p", {}, `${trace.rootService} · ${trace.rootOperation} — `, outcomePill(trace.outcome), ` ${fmt.ms(trace.durationSeconds)}, ${trace.spanCount} spans, ${trace.decision} by ${trace.rule}`)];
    if (!trace.spans) {
      const elsewhere = trace.heldBy && trace.decision === "kept";
      return { state: "empty", content: [...head, empty(elsewhere ? "Its spans are held by another instance: " : "Its spans are no longer held here (only the most recent kept traces are, up to investigation.max_trace_bytes).",
        elsewhere ? h("a", { href: trace.heldBy + "/#/trace?id=" + trace.traceId }, trace.heldBy) : null)] };
    }
    const t0 = Math.min(...trace.spans.map((s) => Number(s.startUnixNano)));
    const total = Math.max(1, ...trace.spans.map((s) => Number(s.startUnixNano) - t0 + s.durationSeconds * 1e9));
    const depth = {};
    const byId = Object.fromEntries(trace.spans.map((s) => [s.spanId, s]));
    const depthOf = (s) => depth[s.spanId] ?? (depth[s.spanId] = s.parentSpanId && byId[s.parentSpanId] ? depthOf(byId[s.parentSpanId]) + 1 : 0);
    state.open = state.open || {};
    const rows = trace.spans.map((s) => {
      const left = ((Number(s.startUnixNano) - t0) / total) * 100, width = ((s.durationSeconds * 1e9) / total) * 100;
      const toggle = () => { state.open[s.spanId] = !state.open[s.spanId]; refresh(false); };
      const row = h("div", { class: "span-row", "data-span": s.spanId, "data-outcome": s.outcome, tabindex: 0, role: "button", "aria-expanded": !!state.open[s.spanId],
        onclick: toggle, onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggle(); } } },
        h("div", { class: "span-name", style: `padding-left:${depthOf(s) * 14}px`, title: s.name }, `${s.service} · ${s.name} `, h("span", { class: "muted" }, s.kind)),
        h("div", { class: "bar-track" }, h("div", { class: "bar " + s.outcome, style: `left:${left}%;width:${Math.max(width, 0.2)}%` })),
        h("div", { class: "num" }, fmt.ms(s.durationSeconds)));
      if (state.open[s.spanId]) {
        row.append(h("div", { class: "attrs" }, h("table", {}, h("tbody", {},
          h("tr", {}, h("td", {}, "outcome"), h("td", {}, outcomePill(s.outcome), s.httpStatus ? ` HTTP ${s.httpStatus}` : "", ` status ${s.status}`)),
          Object.entries(s.attributes || {}).map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", {}, typeof v === "object" ? JSON.stringify(v) : String(v))))))));
      }
      return row;
    });
    return { state: "ready", content: [...head, h("div", { class: "waterfall", "data-waterfall": "" }, rows)] };
  };

  pages.slos = async () => {
    const { slos } = await api("/api/slos");
    if (!slos.length) return { state: "empty", content: [h("h1", {}, "SLOs"), empty("No SLOs configured — see config/tracewarden.toml ([[slo]]).")] };
    return { state: "ready", content: [h("h1", {}, "SLOs"), table("slos", [
      { key: "name", label: "SLO", cell: (r) => link("slo", { name: r.name }, r.name) },
      { key: "service", label: "Service", cell: (r) => r.service + (r.operation ? " · " + r.operation : "") },
      { key: "sli", label: "SLI" },
      { key: "goal", label: "Goal", num: true, cell: (r) => fmt.pct(r.goal) },
      { key: "attainment", label: "Attainment", num: true, cell: (r) => fmt.pct(r.attainment) },
      { key: "budget", label: "Budget left", num: true, value: (r) => r.errorBudget.remainingRatio, cell: (r) => h("span", { class: r.errorBudget.remainingRatio < 0 ? "bad" : null }, fmt.pct(r.errorBudget.remainingRatio)) },
      { key: "burn", label: "Burn rates", value: (r) => Math.max(0, ...r.burnRates.map((b) => b.burnRate)), cell: (r) => r.burnRates.map((b) => `${b.window} ${b.burnRate.toFixed(1)}`).join(" · ") },
      { key: "status", label: "Status", cell: (r) => statusCell(r.status) },
      { key: "firing", label: "Firing", value: (r) => r.firing.length, cell: (r) => r.firing.join(", ") || "–" },
    ], slos, (r) => r.name)] };
  };

  pages.slo = async ({ name }) => {
    if (!name) return { state: "error", content: errorBox("Which SLO? Open one from the SLOs page.") };
    const [{ slos }, hst] = await Promise.all([api("/api/slos"), api(`/api/slos/${encodeURIComponent(name)}/history`)]);
    const report = slos.find((s) => s.name === name);
    const points = hst.points;
    const times = points.map((p) => unix(p.time));
    const windows = [...new Set(points.flatMap((p) => p.burnRates.map((b) => b.window)))];
    const palette = ["#d62728", "#e6a700", "#4c78a8", "#2e8540", "#8e44ad", "#17becf"];
    const budget = chartBox("budget", "Error budget remaining");
    const burn = chartBox("burn", "Burn rates");
    // The alert timeline: when each alert started and stopped firing, from the evaluations.
    const timeline = [];
    let previous = new Set();
    for (const p of points) {
      const now = new Set(p.firing);
      for (const a of now) if (!previous.has(a)) timeline.push({ time: p.time, alert: a, change: "firing" });
      for (const a of previous) if (!now.has(a)) timeline.push({ time: p.time, alert: a, change: "resolved" });
      previous = now;
    }
    const firing = report ? report.firing : [];
    return {
      state: "ready",
      content: [h("h1", {}, "SLO ", name),
        report ? h("p", {}, `${report.service}${report.operation ? " · " + report.operation : ""} — ${report.sli}, goal ${fmt.pct(report.goal)} over ${report.window}: attainment ${fmt.pct(report.attainment)}, `, statusCell(report.status)) : h("p", { class: "muted" }, "Not evaluated yet."),
        h("h2", {}, "Firing alerts"),
        firing.length ? table("alerts", [{ key: "name", label: "Alert" }], firing.map((a) => ({ name: a })), (r) => r.name) : h("table", { "data-table": "alerts" }, h("tbody", {}, h("tr", {}, h("td", { class: "muted" }, "None firing.")))),
        h("div", { class: "grid" }, budget, burn),
        h("h2", {}, "Alert timeline (last hour)"),
        timeline.length ? table("alert-timeline", [{ key: "time", label: "Time", cell: (r) => fmt.time(r.time) }, { key: "alert", label: "Alert" }, { key: "change", label: "Change" }], timeline.reverse(), (r) => r.time + r.alert)
          : h("p", { class: "muted" }, "No alert started or stopped in the last hour.")],
      after: () => {
        if (!points.length) return;
        chart(budget, "budget", "", times, [{ label: "remaining", values: points.map((p) => p.errorBudget.remainingRatio * 100), color: "#4c78a8" }], { format: (v) => v.toFixed(1) + " %" });
        chart(burn, "burn", "", times, windows.map((w, i) => ({ label: w, color: palette[i % palette.length],
          values: points.map((p) => (p.burnRates.find((b) => b.window === w) || {}).burnRate ?? null) })));
      },
    };
  };

  let lastPipeline = null;
  pages.pipeline = async () => {
    const p = await api("/api/pipeline");
    const now = Date.now();
    const rate = (key) => (lastPipeline && now > lastPipeline.at ? (p[key] - lastPipeline.body[key]) / ((now - lastPipeline.at) / 1000) : null);
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
    lastPipeline = { at: now, body: p };
    return { state: "ready", content: [h("h1", {}, "Pipeline (this instance)"),
      h("p", { class: "muted" }, "Rates are measured between refreshes (every 10 s)."),
      table("pipeline", [{ key: "name", label: "Measure" }, { key: "value", label: "Value", num: true }], rows, (r) => r.name),
      h("h2", {}, "Decisions by rule"),
      table("decisions", [{ key: "decision", label: "Decision" }, { key: "rule", label: "Rule" }, { key: "value", label: "Traces", num: true, cell: (r) => fmt.count(r.value) }],
        p.decisions, (r) => r.decision + "/" + r.rule),
      h("h2", {}, "Consumer lag by partition"),
      p.consumerLag.length ? table("lag", [{ key: "topic", label: "Topic" }, { key: "partition", label: "Partition" }, { key: "value", label: "Lag", num: true, cell: (r) => fmt.count(r.value) }],
        p.consumerLag, (r) => r.topic + "/" + r.partition) : h("p", { class: "muted" }, "No partition assigned yet.")] };
  };

  // ---- rendering ------------------------------------------------------------------------------

  /** The page asking for the access token; the token is kept in this tab's session storage. */
  function tokenForm(message) {
    const input = h("input", { type: "password", id: "access-token", name: "token", autocomplete: "current-password", required: true });
    const form = h("form", { class: "search", onsubmit: (e) => {
      e.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      refresh(true);
    } }, h("label", { for: "access-token" }, "Access token "), input, h("button", { type: "submit" }, "Open"));
    return [h("h1", {}, "Access token"), h("p", { class: "muted" }, message, " Ask whoever runs it for the token ([http] bearer_token)."), form];
  }

  function errorBox(message) {
    return h("div", { class: "error-box", "data-error": "", role: "alert" }, message);
  }

  const seenEnvironments = new Set();
  function fillEnvironments(environments) {
    const select = document.getElementById("environment");
    for (const e of environments) {
      if (!e || seenEnvironments.has(e)) continue;
      seenEnvironments.add(e);
      select.append(h("option", { value: e }, e));
    }
    select.value = globals(route().params).environment;
  }

  let pageState = {}; // per page visit: clicked point, open spans…
  let current = null;
  let generation = 0;

  /** Renders the current route; `fresh` when it is a new visit (not a refresh). */
  async function refresh(fresh) {
    const r = route();
    const key = location.hash;
    if (fresh || current !== key) {
      pageState = {};
      if (cy) { cy.destroy(); cy = null; }
      current = key;
      main.dataset.state = "loading";
    }
    const { environment, range } = globals(r.params);
    localStorage.setItem("tw.environment", environment);
    localStorage.setItem("tw.range", range);
    document.getElementById("range").value = range;
    fillEnvironments([environment]);
    for (const a of document.querySelectorAll("[data-nav]")) {
      if (a.dataset.nav === r.page) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
      a.setAttribute("href", "#/" + a.dataset.nav + query({ environment, range }));
    }
    const render = pages[r.page];
    const mine = ++generation;
    const scroll = window.scrollY;
    let result;
    try {
      result = render ? await render({ ...r.params, environment, range }, pageState) : { state: "error", content: errorBox(`No page "${r.page}".`) };
    } catch (e) {
      result = e instanceof TokenRequired
        ? { state: "token", content: tokenForm(e.message) }
        : { state: "error", content: [h("h1", {}, r.page), errorBox(e.message)] };
    }
    if (mine !== generation) return; // a newer render started meanwhile
    main.dataset.page = r.page;
    main.replaceChildren(...[result.content].flat().filter(Boolean));
    if (result.after) {
      try { result.after(); } catch (e) { main.append(errorBox(e.message)); }
    }
    main.dataset.state = result.state;
    window.scrollTo(0, scroll);
    document.getElementById("refreshed").textContent = "updated " + new Date().toLocaleTimeString();
    document.title = `tracewarden · ${r.page}`;
  }

  window.addEventListener("hashchange", () => { refresh(true); main.focus({ preventScroll: true }); });
  // A refresh re-renders the page: not while the user is typing in or choosing from one of its fields.
  const busy = () => main.contains(document.activeElement) && ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
  setInterval(() => { if (!document.hidden && !busy()) refresh(false); }, REFRESH_MS);
  if (!location.hash) history.replaceState(null, "", "#/services");
  refresh(true);
})();
