// @ts-check
// The tracewarden console: a small single page over the instance's own JSON APIs, in ES modules
// loaded as they are (no build step). This one renders the page of the URL and refreshes it.
//
// - The URL holds the page and its filters (lib/router.js), so a link can be shared and the back
//   button works; environment and range are chosen once and kept for the next pages.
// - Every page (pages/*.js) renders into <main id="page" data-page=… data-state=loading|ready|
//   empty|error|token>, refreshes itself every 10 s without losing the scroll, the sort or the open
//   panel, and shows an API error as a message. A refresh keeps what did not change: a table with
//   the same rows (lib/table.js), a chart with the same series gets only its new data
//   (lib/charts.js), the map its new labels (pages/map.js).
// - Charts are uPlot, the map is Cytoscape.js (both vendored under /console/vendor/, loaded by the
//   page as classic scripts: the globals `uPlot` and `cytoscape`).

import { TOKEN_KEY, TokenRequired, supersede } from "./lib/api.js";
import { forgetCharts, resyncCharts } from "./lib/charts.js";
import { errorBox, forgetParts, h } from "./lib/dom.js";
import { query } from "./lib/format.js";
import { fillEnvironments, globals, route, setRenderer } from "./lib/router.js";
import * as map from "./pages/map.js";
import * as pipeline from "./pages/pipeline.js";
import * as service from "./pages/service.js";
import * as services from "./pages/services.js";
import * as slo from "./pages/slo.js";
import * as slos from "./pages/slos.js";
import * as trace from "./pages/trace.js";
import * as traces from "./pages/traces.js";

/** @import { PageResult } from "./lib/dom.js" */

const REFRESH_MS = 10_000;
const main = /** @type {HTMLElement} */ (document.getElementById("page"));

/** @type {Record<string, (params: any, state: any) => Promise<PageResult>>} */
const pages = {
  services: services.render, service: service.render, map: map.render, traces: traces.render,
  trace: trace.render, slos: slos.render, slo: slo.render, pipeline: pipeline.render,
};

for (const select of /** @type {NodeListOf<HTMLSelectElement>} */ (document.querySelectorAll("[data-filter]"))) {
  select.addEventListener("change", () => {
    const filter = /** @type {string} */ (select.dataset.filter);
    localStorage.setItem("tw." + filter, select.value);
    const { page, params } = route();
    params[filter] = select.value;
    location.hash = "#/" + page + query(params);
  });
}

/** The page asking for the access token; the token is kept in this tab's session storage. @param {string} message */
function tokenForm(message) {
  const input = h("input", { type: "password", id: "access-token", name: "token", autocomplete: "current-password", required: true });
  const form = h("form", { class: "search", onsubmit: (/** @type {SubmitEvent} */ e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    refresh(true);
  } }, h("label", { for: "access-token" }, "Access token "), input, h("button", { type: "submit" }, "Open"));
  return [h("h1", {}, "Access token"), h("p", { class: "muted" }, message, " Ask whoever runs it for the token ([http] bearer_token)."), form];
}

/** Per page visit: clicked point, open spans… */
let pageState = {};
/** The URL of the visit, and its number. */
let current = /** @type {string | null} */ (null);
let visit = 0;
/** The visit whose content the page shows. */
let shown = -1;
let generation = 0;

/** Renders the current route; `fresh` when it is a new visit (not a refresh). @param {boolean} fresh */
async function refresh(fresh) {
  const r = route();
  const key = location.hash;
  if (fresh || current !== key) {
    pageState = {};
    forgetParts();
    current = key;
    visit += 1;
    main.dataset.state = "loading";
  }
  const mine = ++generation;
  const ofVisit = visit;
  supersede();
  const { environment, range } = globals(r.params);
  localStorage.setItem("tw.environment", environment);
  localStorage.setItem("tw.range", range);
  /** @type {HTMLSelectElement} */ (document.getElementById("range")).value = range;
  fillEnvironments([environment]);
  for (const a of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll("[data-nav]"))) {
    if (a.dataset.nav === r.page) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    a.setAttribute("href", "#/" + a.dataset.nav + query({ environment, range }));
  }
  const render = pages[r.page];
  const scroll = window.scrollY;
  const focused = document.activeElement;
  /** @type {PageResult} */
  let result;
  try {
    result = render ? await render({ ...r.params, environment, range }, pageState) : { state: "error", content: errorBox(`No page "${r.page}".`) };
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    result = e instanceof TokenRequired
      ? { state: "token", content: tokenForm(message) }
      : { state: "error", content: [h("h1", {}, r.page), errorBox(message)] };
  }
  if (mine !== generation) return; // a newer render started meanwhile
  if (shown !== ofVisit) {
    // Another visit's content goes: its charts and map with it.
    forgetCharts();
    map.forgetMap();
    shown = ofVisit;
  }
  main.dataset.page = r.page;
  main.replaceChildren(.../** @type {(Node | string)[]} */ ([result.content].flat().filter(Boolean)));
  if (result.after) {
    try { result.after(); } catch (e) { main.append(errorBox(e instanceof Error ? e.message : String(e))); }
  }
  resyncCharts();
  main.dataset.state = result.state;
  window.scrollTo(0, scroll);
  // A part kept from the last render (a sorted table's header) keeps the focus it had.
  if (focused instanceof HTMLElement && document.activeElement === document.body && main.contains(focused)) {
    focused.focus({ preventScroll: true });
  }
  /** @type {HTMLElement} */ (document.getElementById("refreshed")).textContent = "updated " + new Date().toLocaleTimeString();
  document.title = `tracewarden · ${r.page}`;
}

setRenderer(refresh);
window.addEventListener("hashchange", () => { refresh(true); main.focus({ preventScroll: true }); });
// A refresh renders the page again: not while the user is typing in or choosing from one of its fields.
const busy = () => {
  const active = document.activeElement;
  return !!active && main.contains(active) && ["INPUT", "SELECT", "TEXTAREA"].includes(active.tagName);
};
setInterval(() => { if (!document.hidden && !busy()) refresh(false); }, REFRESH_MS);
if (!location.hash) history.replaceState(null, "", "#/services");
refresh(true);
