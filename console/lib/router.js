// @ts-check
// The URL holds the page and its filters (`#/service?service=…&environment=…&range=1h`), so a link
// can be shared and the back button works; environment and range are chosen once and kept
// (localStorage) for the next pages.

import { h } from "./dom.js";
import { query } from "./format.js";

/** @import { Child } from "./dom.js" */
/** @typedef {Record<string, string>} Params */
/** @typedef {{ environment: string, range: string }} Globals */

/** The ranges a chart can cover, in seconds. @type {Readonly<Record<string, number>>} */
export const RANGES = { "15m": 900, "30m": 1800, "1h": 3600 };

/** Whether `range` is one of RANGES. @param {string | null | undefined} range @returns {range is string} */
export const isRange = (range) => typeof range === "string" && Object.hasOwn(RANGES, range);

/** The page and parameters of a location hash ("#/traces?outcome=fault"). @param {string} hash */
export function parseHash(hash) {
  const [page, search] = hash.replace(/^#\/?/, "").split("?");
  /** @type {Params} */
  const params = Object.fromEntries(new URLSearchParams(search || ""));
  return { page: page || "services", params };
}

/** The page and parameters of the current URL. */
export function route() {
  return parseHash(location.hash);
}

/**
 * The global filters: those in the URL, else those chosen last (`stored`), else every environment
 * over 15 minutes.
 * @param {Params} params
 * @param {{ environment: string | null, range: string | null }} stored
 * @returns {Globals}
 */
export function pickGlobals(params, stored) {
  const environment = params.environment ?? stored.environment ?? "";
  const range = isRange(params.range) ? params.range : stored.range || "15m";
  return { environment, range };
}

/** The global filters of `params` or, for those it lacks, of the last pages. @param {Params} params */
export function globals(params) {
  return pickGlobals(params, { environment: localStorage.getItem("tw.environment"), range: localStorage.getItem("tw.range") });
}

/**
 * A link to a page carrying the global filters `g` (an environment in `params` wins).
 * @param {string} page
 * @param {import("./format.js").QueryParams} params
 * @param {Globals} g
 */
export function pageHref(page, params, g) {
  return "#/" + page + query({ ...params, environment: params.environment ?? g.environment, range: g.range });
}

/** A link to a page, carrying the current global filters. @param {string} page @param {import("./format.js").QueryParams} params */
export function href(page, params) {
  return pageHref(page, params, globals(route().params));
}

/**
 * @param {string} page
 * @param {import("./format.js").QueryParams} params
 * @param {Child} text
 * @param {Record<string, unknown>} [attrs]
 */
export function link(page, params, text, attrs) {
  return h("a", { href: href(page, params), ...(attrs || {}) }, text);
}

// ---- rendering again ---------------------------------------------------------------------------

/** @type {(fresh: boolean) => void} */
let renderer = () => {};

/** Says what renders the page (app.js). @param {(fresh: boolean) => void} render */
export function setRenderer(render) {
  renderer = render;
}

/** Renders the page again: `fresh` forgets what the visit kept (a new visit), else a refresh. */
export function rerender(fresh = false) {
  renderer(fresh);
}

// ---- the environment filter ----------------------------------------------------------------------

const seenEnvironments = new Set();

/** Adds the environments not offered yet to the filter, and selects the current one. @param {string[]} environments */
export function fillEnvironments(environments) {
  const select = /** @type {HTMLSelectElement} */ (document.getElementById("environment"));
  for (const e of environments) {
    if (!e || seenEnvironments.has(e)) continue;
    seenEnvironments.add(e);
    select.append(h("option", { value: e }, e));
  }
  select.value = globals(route().params).environment;
}
