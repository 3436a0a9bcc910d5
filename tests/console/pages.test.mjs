// What the pages compute from the APIs' answers (console/pages/*.js), before any DOM.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { healthShares, mapElements } from '../../console/pages/map.js';
import { ratePerSecond } from '../../console/pages/pipeline.js';
import { serviceRows } from '../../console/pages/services.js';
import { alertTimeline, burnWindows } from '../../console/pages/slo.js';
import { burnRatesText } from '../../console/pages/slos.js';
import { waterfallLayout } from '../../console/pages/trace.js';
import { tracesQuery } from '../../console/pages/traces.js';

const budget = { unit: 'requests', total: 100, remaining: 50, remainingRatio: 0.5 };
const evaluation = (time, firing, burnRates = []) => ({ time, attainment: 0.99, errorBudget: budget, burnRates, status: 'OK', firing });

test('alertTimeline: each start and stop of an alert, newest first', () => {
  const points = [
    evaluation('2024-01-01T00:00:00Z', []),
    evaluation('2024-01-01T00:01:00Z', ['fast-burn']),
    evaluation('2024-01-01T00:02:00Z', ['fast-burn', 'budget-warning']),
    evaluation('2024-01-01T00:03:00Z', ['budget-warning']),
    evaluation('2024-01-01T00:04:00Z', []),
  ];
  assert.deepEqual(alertTimeline(points), [
    { time: '2024-01-01T00:04:00Z', alert: 'budget-warning', change: 'resolved' },
    { time: '2024-01-01T00:03:00Z', alert: 'fast-burn', change: 'resolved' },
    { time: '2024-01-01T00:02:00Z', alert: 'budget-warning', change: 'firing' },
    { time: '2024-01-01T00:01:00Z', alert: 'fast-burn', change: 'firing' },
  ]);
  assert.deepEqual(alertTimeline([evaluation('2024-01-01T00:00:00Z', ['slow-burn'])]),
    [{ time: '2024-01-01T00:00:00Z', alert: 'slow-burn', change: 'firing' }], 'firing at the first evaluation');
  assert.deepEqual(alertTimeline([]), []);
});

test('burnWindows: each window once, in the order first seen', () => {
  const points = [
    evaluation('2024-01-01T00:00:00Z', [], [{ window: '1h', burnRate: 1 }, { window: '5m', burnRate: 2 }]),
    evaluation('2024-01-01T00:01:00Z', [], [{ window: '5m', burnRate: 3 }, { window: '6h', burnRate: 0 }]),
  ];
  assert.deepEqual(burnWindows(points), ['1h', '5m', '6h']);
});

test('burnRatesText: one decimal per window', () => {
  assert.equal(burnRatesText([{ window: '1h', burnRate: 14.4 }, { window: '5m', burnRate: 2 }]), '1h 14.4 · 5m 2.0');
  assert.equal(burnRatesText([]), '');
});

test('waterfallLayout: depth under the parent, bar position and width in % of the trace', () => {
  const span = (spanId, parentSpanId, startUnixNano, durationSeconds) => ({ spanId, parentSpanId, startUnixNano, durationSeconds,
    service: 's', name: 'n', kind: 'SERVER', outcome: 'ok', status: 'OK', httpStatus: null, attributes: null });
  const layout = waterfallLayout([
    span('a', null, '1000000000', 1),
    span('b', 'a', '1250000000', 0.5),
    span('c', 'b', '1500000000', 0.25),
    span('d', 'not-in-the-trace', '1000000000', 0.125),
  ]);
  assert.deepEqual(Object.fromEntries(layout), {
    a: { depth: 0, left: 0, width: 100 },
    b: { depth: 1, left: 25, width: 50 },
    c: { depth: 2, left: 50, width: 25 },
    d: { depth: 0, left: 0, width: 12.5 },
  });
});

test('ratePerSecond: the counter\'s increase over the seconds between two readings', () => {
  const before = { at: 1_000, body: { spansReceived: 100, spansForwarded: 40 } };
  const now = { at: 11_000, body: { spansReceived: 600, spansForwarded: 40 } };
  assert.equal(ratePerSecond(before, now, 'spansReceived'), 50);
  assert.equal(ratePerSecond(before, now, 'spansForwarded'), 0);
  assert.equal(ratePerSecond(null, now, 'spansReceived'), null, 'no earlier reading');
  assert.equal(ratePerSecond(now, now, 'spansReceived'), null, 'no time between');
});

test('serviceRows: rates over the window; no fault or error rate without requests', () => {
  const node = (name, requests, faults, errors) => ({ id: name, name, environment: 'demo', kind: 'service', requests, faults, errors,
    throttles: 0, availability: null, p50Seconds: null, p99Seconds: null, sloStatus: null });
  const [busy, idle] = serviceRows([node('cart', 120, 6, 3), node('idle', 0, 0, 0)], 60, [[1, 2], []]);
  assert.equal(busy.rate, 2);
  assert.equal(busy.faultRate, 0.05);
  assert.equal(busy.errorRate, 0.025);
  assert.deepEqual(busy.spark, [1, 2]);
  assert.equal(busy.name, 'cart');
  assert.equal(idle.rate, 0);
  assert.equal(idle.faultRate, null);
  assert.equal(idle.errorRate, null);
});

test('tracesQuery: the search\'s parameters in a fixed order, 100 traces unless said', () => {
  assert.equal(tracesQuery({}), '?limit=100');
  assert.equal(tracesQuery({ outcome: 'fault', environment: 'demo', limit: '5', other: 'x' }), '?environment=demo&outcome=fault&limit=5');
  assert.equal(tracesQuery({ service: 'cart', from: '1700000000', to: '1700000030', min_duration: '250ms' }),
    '?service=cart&min_duration=250ms&from=1700000000&to=1700000030&limit=100');
});

test('mapElements: nodes with the shares of their ring, outlined when breached, shaped by kind; edges coloured and labelled', () => {
  const figures = { requests: 100, faults: 0, errors: 0, throttles: 0, p50Seconds: null };
  const elements = mapElements({
    nodes: [
      { ...figures, id: 'cart:demo', name: 'cart', environment: 'demo', kind: 'service', errors: 3, availability: 0.97, p99Seconds: 0.25, sloStatus: 'BREACHED' },
      { ...figures, id: 'db', name: 'orders-db', environment: 'demo', kind: 'database', errors: 1, throttles: 1, availability: 1, p99Seconds: 0.005, sloStatus: null },
    ],
    edges: [{ ...figures, id: 'cart:demo->db', source: 'cart:demo', target: 'db', kind: 'call', requests: 120, faults: 6, p99Seconds: 1.5 },
      { ...figures, id: 'kafka:orders:demo->ship:demo', source: 'kafka:orders:demo', target: 'ship:demo', kind: 'delivery', requests: 60, p50Seconds: 0.02, p99Seconds: 0.4 }],
  }, 60);
  assert.deepEqual(elements.map((e) => e.data), [
    { id: 'cart:demo', label: 'cart\n97.00 % · p99 250.0 ms', ok: 97, error: 3, fault: 0, throttle: 0, border: 5, kind: 'service', name: 'cart', environment: 'demo', shape: 'ellipse' },
    { id: 'db', label: 'orders-db\n100.00 % · p99 5.00 ms', ok: 99, error: 0, fault: 0, throttle: 1, border: 1, kind: 'database', name: 'orders-db', environment: 'demo', shape: 'barrel' },
    { id: 'cart:demo->db', source: 'cart:demo', target: 'db', color: '#d62728', kind: 'call', label: '2.0/s · 5.00 % faults · p99 1.50 s' },
    { id: 'kafka:orders:demo->ship:demo', source: 'kafka:orders:demo', target: 'ship:demo', color: '#4c78a8', kind: 'delivery',
      label: '1.0/s · 0.00 % faults · delay p50 20.0 ms p99 400.0 ms' },
  ]);
});

test('healthShares: ok, errors (throttles apart), faults and throttles add up to 100', () => {
  // 200 requests: 10 faults, 30 errors of which 10 throttles.
  assert.deepEqual(healthShares({ requests: 200, faults: 10, errors: 30, throttles: 10 }), { ok: 80, error: 10, fault: 5, throttle: 5 });
  assert.deepEqual(healthShares({ requests: 0, faults: 0, errors: 0, throttles: 0 }), { ok: 100, error: 0, fault: 0, throttle: 0 });
  // A node at 99.80 % and one at 98.24 % no longer look alike: their fault slices differ.
  assert.equal(healthShares({ requests: 1000, faults: 2, errors: 0, throttles: 0 }).fault, 0.2);
});

test('deploymentMarkers: one marker per deployment at its first-seen time, oldest first, named by version and verdict', async () => {
  const { deploymentMarkers, deploymentState } = await import('../../console/lib/deployments.js');
  const figures = { requests: 0, faults: 0, errors: 0, faultRate: null, errorRate: null, p99Seconds: null, instances: [] };
  const deployment = (version, previousVersion, firstSeen, verdict, rolledBack) => ({
    service: 'customers', environment: 'prod', version, previousVersion, firstSeen, lastSeen: firstSeen, instances: [],
    rolledBack, verdict, zScore: null, before: figures, after: figures, estimated: false,
  });
  const newest = deployment('1.5.0', '1.4.0', '2024-01-01T00:10:00Z', 'pending', false);
  const older = deployment('1.4.0', '1.3.2', '2024-01-01T00:02:00Z', 'degraded', true);
  assert.deepEqual(deploymentMarkers([newest, older]), [
    { time: 1704067320, label: '1.4.0', kind: 'degraded', title: 'customers 1.4.0 deployed (after 1.3.2) in prod: degraded, rolled back' },
    { time: 1704067800, label: '1.5.0', kind: 'pending', title: 'customers 1.5.0 deployed (after 1.4.0) in prod: pending' },
  ]);
  assert.equal(deploymentState(newest), 'pending');
  assert.equal(deploymentMarkers([newest], { named: true })[0].label, 'customers 1.5.0', 'named by service too');
  assert.deepEqual(deploymentMarkers([]), []);
});
