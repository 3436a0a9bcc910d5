// The console's figures and URLs (console/lib/format.js), against values worked out by hand.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fmt, query, sparkPoints, unix } from '../../console/lib/format.js';

test('count: thousands separators, a dash for no value', () => {
  assert.equal(fmt.count(0), '0');
  assert.equal(fmt.count(1234567), '1,234,567');
  assert.equal(fmt.count(12.5), '12.5');
  assert.equal(fmt.count(null), '–');
  assert.equal(fmt.count(undefined), '–');
});

test('rate: no decimal from 100 up, one from 1, two below', () => {
  assert.equal(fmt.rate(250.4), '250');
  assert.equal(fmt.rate(100), '100');
  assert.equal(fmt.rate(12.34), '12.3');
  assert.equal(fmt.rate(1), '1.0');
  assert.equal(fmt.rate(0.456), '0.46');
  assert.equal(fmt.rate(0), '0.00');
  assert.equal(fmt.rate(null), '–');
});

test('pct: two decimals, three just under 100 %', () => {
  assert.equal(fmt.pct(0.5), '50.00 %');
  assert.equal(fmt.pct(0), '0.00 %');
  assert.equal(fmt.pct(1), '100.00 %');
  assert.equal(fmt.pct(0.999), '99.90 %');
  assert.equal(fmt.pct(0.99999), '99.999 %');
  assert.equal(fmt.pct(-0.25), '-25.00 %');
  assert.equal(fmt.pct(null), '–');
});

test('ms: seconds from 1 s, milliseconds below, two decimals under 10 ms', () => {
  assert.equal(fmt.ms(1.5), '1.50 s');
  assert.equal(fmt.ms(1), '1.00 s');
  assert.equal(fmt.ms(0.25), '250.0 ms');
  assert.equal(fmt.ms(0.01), '10.0 ms');
  assert.equal(fmt.ms(0.005), '5.00 ms');
  assert.equal(fmt.ms(0), '0.00 ms');
  assert.equal(fmt.ms(undefined), '–');
});

test('query: only the parameters with a value, encoded, in order', () => {
  assert.equal(query({}), '');
  assert.equal(query({ a: '', b: null, c: undefined }), '');
  assert.equal(query({ service: 'cart', environment: '', range: '1h' }), '?service=cart&range=1h');
  assert.equal(query({ service: 'a b&c', from: 0, limit: 100 }), '?service=a+b%26c&from=0&limit=100');
});

test('unix: seconds of an RFC 3339 instant', () => {
  assert.equal(unix('2024-01-02T03:04:05Z'), 1704164645);
  assert.equal(unix('2024-01-02T03:04:05.500Z'), 1704164645.5);
});

test('sparkPoints: spread over the width, the largest value at the top', () => {
  assert.deepEqual(sparkPoints([0, 5, 10], 90, 22), ['0,21', '45,11', '90,1']);
  assert.deepEqual(sparkPoints([0, 0], 90, 22), ['0,21', '90,21'], 'all zero: a flat line at the bottom');
  assert.deepEqual(sparkPoints([3], 90, 22), ['0,1']);
  assert.deepEqual(sparkPoints([], 90, 22), []);
});
