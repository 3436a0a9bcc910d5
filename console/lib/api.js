// @ts-check
// The instance's JSON APIs: GET with the access token, errors as messages, and the calls of a
// render that another render superseded cancelled (so that it never builds a page out of date).

import { query } from "./format.js";
import { RANGES, globals, route } from "./router.js";

/** Where the access token the user gave ([http] bearer_token) is kept, for this tab only. */
export const TOKEN_KEY = "tw.token";

/** An API call refused for want of the access token. */
export class TokenRequired extends Error {}

let calls = new AbortController();

/** A new render starts: the API calls still running for the one before are cancelled. */
export function supersede() {
  calls.abort();
  calls = new AbortController();
}

/** Whether `e` is the failure of a call that `supersede` cancelled. @param {unknown} e */
export function isCancelled(e) {
  return e instanceof DOMException && e.name === "AbortError";
}

/**
 * A fallback for a call whose failure the page can do without; a cancelled call still fails, so
 * that the render it belongs to stops.
 * @template T
 * @param {(e: Error) => T} fallback
 * @returns {(e: unknown) => T}
 */
export function otherwise(fallback) {
  return (e) => {
    if (isCancelled(e)) throw e;
    return fallback(e instanceof Error ? e : new Error(String(e)));
  };
}

/**
 * GET an API path; a non-2xx answer throws its message (and the parameter it names).
 * @param {string} path
 * @returns {Promise<any>} the JSON answer, of the shape its path gives (tests/console/api.d.ts)
 */
export async function api(path) {
  const signal = calls.signal;
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = { Accept: "application/json", ...(token ? { Authorization: "Bearer " + token } : {}) };
  const response = await fetch(path, { headers, signal });
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    throw new TokenRequired(token ? "That access token was refused." : "This tracewarden asks for an access token.");
  }
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON (or cancelled: said below) */ }
  signal.throwIfAborted();
  if (!response.ok) {
    const what = body && body.error ? body.error + (body.parameter ? ` (parameter ${body.parameter})` : "") : response.statusText;
    throw new Error(`${path}: ${response.status} ${what}`);
  }
  return body;
}

/**
 * History of a series over the chosen range.
 * @param {{ service: string, environment?: string, operation?: string }} selection
 * @returns {Promise<SeriesHistory>}
 */
export function seriesHistory(selection) {
  const g = globals(route().params);
  const from = Math.floor(Date.now() / 1000) - RANGES[g.range];
  return api("/api/history" + query({ ...selection, from }));
}
