// @ts-check
// Figures and URLs as the console writes them: pure functions (tests/console/format.test.mjs).

/** What a cell shows for a figure that has no value. */
export const NONE = "–";

/** @param {unknown} v @returns {v is null | undefined} */
const absent = (v) => v === null || v === undefined;

export const fmt = {
  /** A count with thousands separators: 1,234. @param {number | null | undefined} n */
  count: (n) => (absent(n) ? NONE : Number(n).toLocaleString("en-US")),
  /** A rate per second, with fewer decimals the larger it is. @param {number | null | undefined} n */
  rate: (n) => (absent(n) ? NONE : n >= 100 ? n.toFixed(0) : n >= 1 ? n.toFixed(1) : n.toFixed(2)),
  /** A ratio as a percentage; three decimals just under 100 %. @param {number | null | undefined} r */
  pct: (r) => (absent(r) ? NONE : (r * 100).toFixed(r > 0.999 && r < 1 ? 3 : 2) + " %"),
  /** A duration in seconds, as s from 1 s up, as ms below. @param {number | null | undefined} s */
  ms: (s) => (absent(s) ? NONE : s >= 1 ? s.toFixed(2) + " s" : (s * 1000).toFixed(s < 0.01 ? 2 : 1) + " ms"),
  /** The time of day of an RFC 3339 instant, in the browser's zone and language. @param {string} iso */
  time: (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" }),
};

/** @typedef {Record<string, string | number | null | undefined>} QueryParams */

/** A query string of the parameters that have a value ("" when none has), or "". @param {QueryParams} params */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? "?" + s : "";
}

/** Unix seconds of an RFC 3339 instant. @param {string} iso */
export const unix = (iso) => Date.parse(iso) / 1000;

/**
 * The points of a sparkline `width` × `height` pixels: one "x,y" per value, the largest value (at
 * least 1) 1 px below the top, 0 at 1 px above the bottom.
 * @param {number[]} values @param {number} width @param {number} height
 */
export function sparkPoints(values, width, height) {
  const max = Math.max(1, ...values);
  return values.map((v, i) => `${(i / Math.max(1, values.length - 1)) * width},${height - (v / max) * (height - 2) - 1}`);
}
