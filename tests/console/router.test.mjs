// The URL of a page and its global filters (console/lib/router.js).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isRange, pageHref, parseHash, pickGlobals } from '../../console/lib/router.js';

test('parseHash: the page and its decoded parameters; services by default', () => {
  assert.deepEqual(parseHash('#/traces?outcome=fault&service=a%20b'), { page: 'traces', params: { outcome: 'fault', service: 'a b' } });
  assert.deepEqual(parseHash('#/slo?name=owners-availability'), { page: 'slo', params: { name: 'owners-availability' } });
  assert.deepEqual(parseHash('#map'), { page: 'map', params: {} });
  assert.deepEqual(parseHash('#/'), { page: 'services', params: {} });
  assert.deepEqual(parseHash(''), { page: 'services', params: {} });
});

test('pickGlobals: the URL first, then the last choice, then every environment over 15 min', () => {
  const none = { environment: null, range: null };
  assert.deepEqual(pickGlobals({}, none), { environment: '', range: '15m' });
  assert.deepEqual(pickGlobals({}, { environment: 'prod', range: '1h' }), { environment: 'prod', range: '1h' });
  assert.deepEqual(pickGlobals({ environment: 'demo', range: '30m' }, { environment: 'prod', range: '1h' }), { environment: 'demo', range: '30m' });
  assert.deepEqual(pickGlobals({ environment: '' }, { environment: 'prod', range: null }), { environment: '', range: '15m' },
    'an empty environment in the URL is "all", not "unset"');
  assert.deepEqual(pickGlobals({ range: '2h' }, { environment: null, range: '1h' }), { environment: '', range: '1h' }, 'an unknown range is ignored');
  assert.deepEqual(pickGlobals({ range: 'constructor' }, none), { environment: '', range: '15m' });
});

test('isRange: the three ranges only', () => {
  assert.equal(isRange('15m'), true);
  assert.equal(isRange('1h'), true);
  assert.equal(isRange('2h'), false);
  assert.equal(isRange('toString'), false);
  assert.equal(isRange(undefined), false);
});

test('pageHref: the page with its parameters and the global filters', () => {
  const g = { environment: 'prod', range: '1h' };
  assert.equal(pageHref('service', { service: 'cart' }, g), '#/service?service=cart&environment=prod&range=1h');
  assert.equal(pageHref('service', { service: 'cart', environment: 'demo' }, g), '#/service?service=cart&environment=demo&range=1h');
  assert.equal(pageHref('trace', { id: 'abc' }, { environment: '', range: '15m' }), '#/trace?id=abc&range=15m');
});
