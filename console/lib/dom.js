// @ts-check
// Building the page: elements, the small pieces every page shows, and the parts kept from one
// refresh to the next.

/** @typedef {Node | string | number | boolean | null | undefined} Leaf */
/** @typedef {Leaf | Leaf[]} Child */

/**
 * What a page's render gives: its data-state, its content, and what to do once the content is in
 * the page (draw charts, the map).
 * @typedef {{ state: "ready" | "empty" | "error" | "token", content: Child | Child[], after?: () => void }} PageResult
 */

/**
 * Builds an element: h("a", {href: "#/x", class: "y"}, "text", child…). An attribute whose name
 * starts with "on" is an event listener; null, undefined and false attributes and children are left
 * out, true is an empty attribute.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, unknown> | null} [attrs]
 * @param {...Child} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), /** @type {EventListener} */ (v));
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** @param {...Child} what */
export function empty(...what) {
  return h("div", { class: "empty" }, ...what);
}

/** @param {string} message */
export function errorBox(message) {
  return h("div", { class: "error-box", "data-error": "", role: "alert" }, message);
}

/** @param {string | null | undefined} status */
export function statusCell(status) {
  return status ? h("span", { class: "status-" + status }, status) : h("span", { class: "muted" }, "–");
}

/** @param {string} outcome */
export function outcomePill(outcome) {
  return h("span", { class: "pill " + outcome }, outcome);
}

// ---- parts kept across refreshes --------------------------------------------------------------

/** @type {Map<string, { data: string, node: Node }>} name -> the part built last, and from what */
const parts = new Map();

/**
 * The part `name` of the page: the node built last time when `data` (compared as JSON) is the
 * same, so that a refresh leaves it as it is (its scroll, focus, chart); else a new one from
 * `build`. `build` may depend only on `data` and on what is fixed for the visit (the URL).
 * @template {Node} T
 * @param {string} name
 * @param {unknown} data
 * @param {() => T} build
 * @returns {T}
 */
export function kept(name, data, build) {
  const json = JSON.stringify(data) ?? "";
  const old = parts.get(name);
  if (old && old.data === json) return /** @type {T} */ (old.node);
  const node = build();
  parts.set(name, { data: json, node });
  return node;
}

/** A new visit (another URL): nothing is kept from the last one. */
export function forgetParts() {
  parts.clear();
}
