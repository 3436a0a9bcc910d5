// The order of a sorted table's rows (console/lib/table.js).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compare, sortRows } from '../../console/lib/table.js';

test('compare: ascending and descending; an absent value counts as the largest', () => {
  assert.equal(compare(1, 2, 'asc'), -1);
  assert.equal(compare(2, 1, 'asc'), 1);
  assert.equal(compare(1, 2, 'desc'), 1);
  assert.equal(compare('a', 'b', 'asc'), -1);
  assert.equal(compare(null, 1, 'asc'), 1);
  assert.equal(compare(null, 1, 'desc'), -1);
  assert.equal(compare(1, undefined, 'asc'), -1);
  assert.ok(compare(3, 3, 'asc') === 0 && compare(3, 3, 'desc') === 0);
});

const rows = [
  { name: 'b', p99Seconds: 0.2, requests: 10 },
  { name: 'a', p99Seconds: null, requests: 30 },
  { name: 'c', p99Seconds: 0.1, requests: 20 },
];
const columns = [
  { key: 'name', label: 'Service' },
  { key: 'requests', label: 'Requests' },
  { key: 'p99', label: 'p99', value: (r) => r.p99Seconds },
];
const names = (sorted) => sorted.map((r) => r.name);

test('sortRows: by a column\'s field, or by its value', () => {
  assert.deepEqual(names(sortRows(rows, columns, { col: 'name', dir: 'asc' })), ['a', 'b', 'c']);
  assert.deepEqual(names(sortRows(rows, columns, { col: 'requests', dir: 'desc' })), ['a', 'c', 'b']);
  assert.deepEqual(names(sortRows(rows, columns, { col: 'p99', dir: 'asc' })), ['c', 'b', 'a'], 'no p99: last ascending');
  assert.deepEqual(names(sortRows(rows, columns, { col: 'p99', dir: 'desc' })), ['a', 'b', 'c'], 'and first descending');
});

test('sortRows: as given without a sort or when its column is gone; the rows given are not reordered', () => {
  assert.equal(sortRows(rows, columns, undefined), rows);
  assert.equal(sortRows(rows, columns, { col: 'gone', dir: 'asc' }), rows);
  sortRows(rows, columns, { col: 'name', dir: 'asc' });
  assert.deepEqual(names(rows), ['b', 'a', 'c']);
});
