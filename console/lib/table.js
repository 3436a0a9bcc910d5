// @ts-check
// Sortable tables: a header cell sorts on click or Enter, the sort survives refreshes, and a table
// whose rows, columns and sort are unchanged is kept as it is.

import { h, kept } from "./dom.js";
import { rerender } from "./router.js";

/** @import { Child } from "./dom.js" */

/**
 * A column: `key` names its td (data-col) and, without `cell`, the row's field shown; `value` is
 * what it sorts by (default the field `key`); `num` aligns it right.
 * @template R
 * @typedef {{ key: string, label: string, num?: boolean, value?: (row: R) => unknown, cell?: (row: R) => Child }} Column
 */

/** @typedef {{ col: string, dir: "asc" | "desc" }} Sort */

/** @type {Record<string, Sort>} table name -> its sort */
const sorts = {};

/** @param {unknown} row @param {string} key @returns {any} */
const field = (row, key) => /** @type {Record<string, unknown>} */ (row)[key];

/**
 * Orders two sort values; an absent one (null, undefined) counts as larger than any other.
 * @param {any} x @param {any} y @param {"asc" | "desc"} dir
 */
export function compare(x, y, dir) {
  const c = x === y ? 0 : x === null || x === undefined ? 1 : y === null || y === undefined ? -1 : x < y ? -1 : 1;
  return dir === "asc" ? c : -c;
}

/**
 * The rows in the order of `sort` (as given when there is none, or its column is gone).
 * @template R
 * @param {R[]} rows @param {Column<R>[]} columns @param {Sort | undefined} sort
 * @returns {R[]}
 */
export function sortRows(rows, columns, sort) {
  const col = sort && columns.find((c) => c.key === sort.col);
  if (!sort || !col) return rows;
  const v = col.value || ((/** @type {R} */ r) => field(r, col.key));
  return [...rows].sort((a, b) => compare(v(a), v(b), sort.dir));
}

/**
 * A sortable table[data-table=name], a tr[data-row=key(row)] per row and a td[data-col] per column.
 * `rowClick(key, event)` is called on a click in a row.
 * @template R
 * @param {string} name
 * @param {Column<R>[]} columns
 * @param {R[]} rows
 * @param {(row: R) => string} key
 * @param {{ rowClick?: (key: string, event: MouseEvent) => void }} [opts]
 */
export function table(name, columns, rows, key, opts) {
  const sort = sorts[name];
  const shape = { columns: columns.map((c) => [c.key, c.label, !!c.num]), rows, sort: sort ?? null };
  return kept("table:" + name, shape, () => {
    const head = h("tr", {}, columns.map((c) => {
      const aria = sort && sort.col === c.key ? (sort.dir === "asc" ? "ascending" : "descending") : null;
      const toggle = () => {
        sorts[name] = { col: c.key, dir: sort && sort.col === c.key && sort.dir === "desc" ? "asc" : "desc" };
        rerender();
      };
      return h("th", { class: c.num ? "num" : null, tabindex: 0, "aria-sort": aria, scope: "col", onclick: toggle,
        onkeydown: (/** @type {KeyboardEvent} */ e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggle(); } } }, c.label);
    }));
    const body = sortRows(rows, columns, sort).map((r) => {
      const k = key(r);
      return h("tr", { "data-row": k, onclick: opts?.rowClick ? (/** @type {MouseEvent} */ e) => opts.rowClick?.(k, e) : null },
        columns.map((c) => h("td", { "data-col": c.key, class: c.num ? "num" : null }, c.cell ? c.cell(r) : field(r, c.key))));
    });
    return h("table", { "data-table": name }, h("thead", {}, head), h("tbody", {}, body));
  });
}
