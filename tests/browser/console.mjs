// The console in a headless browser: opens every page of a running tracewarden demo and checks
// what a user would read there, the walk of the README's story (map -> service -> a chart point
// -> its traces), the keyboard and the back button.
//
//   node tests/browser/console.mjs URL [--started-at UNIX_MS] [--update-readme]
//
// URL is the console of `tracewarden demo` (scripts/browser.sh starts one and passes it).
// --started-at says when the demo started, for the wait on its SLO alert (default: now).
// --update-readme copies map.png and service.png to docs/screenshots/ when every check passed.
//
// Every check fails on an uncaught JavaScript error, a console.error, a failed request or an HTTP
// error, and on any request to another host than the instance (those are also blocked, so that
// nothing leaves the machine). Each page's full-page screenshot goes to target/screenshots/.
// Selectors follow the console's contract: <main id="page" data-page data-state>, [data-error],
// table[data-table] > tr[data-row] > td[data-col], [data-chart] (uPlot, .u-over is the plot area),
// #map, [data-waterfall] > [data-span][data-outcome], aside[data-panel=point], [data-link=traces].

import assert from 'node:assert/strict';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SHOTS = path.join(ROOT, 'target/screenshots');
const README_SHOTS = path.join(ROOT, 'docs/screenshots');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

// The demo's PetClinic (src/generate) and its story (README, "The demo's story").
const ENV = 'demo';
const SERVICES = ['frontend', 'customers-service', 'vets-service', 'visits-service', 'billing-service', 'insurance-service'];
const FAILING_EDGE = 'frontend:demo->customers-service:demo';
const SLO = 'owners-availability';
// The canary behind most of customers-service's faults, by any dimension that tells it apart:
// its pod (also in service.instance.id), its version, or its node.
const CANARY = /customers-service-5b7c4d9f6-zr8vt|1\.4\.0-rc1|ip-10-0-2-91/;
// The demo's canary rolls out CANARY_AFTER_MS after its start (browser.sh: --canary-after); the
// SLO fires within about a minute of it; allow more on a busy machine.
const CANARY_AFTER_MS = 70_000;
const ALERT_WITHIN_MS = CANARY_AFTER_MS + 150_000;
const WHOLE_RUN_MS = 8 * 60_000;
const CANARY_VERSION = '1.4.0-rc1';

const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const option = (name) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined; };
const base = args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--started-at');
if (!base) {
  console.error('usage: node tests/browser/console.mjs URL [--started-at UNIX_MS] [--update-readme]');
  process.exit(2);
}
const ORIGIN = new URL(base).origin;
const startedAt = Number(option('--started-at') ?? Date.now());

// A run that hangs somewhere fails instead (the timer does not keep a finished run alive).
setTimeout(() => {
  console.error(`browser tests: not finished after ${WHOLE_RUN_MS / 1000} s, giving up`);
  process.exit(1);
}, WHOLE_RUN_MS).unref();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const number = (text) => {
  // "1,234", "12.5%", "3.1/s", "0.42 s": the first number a user reads in the cell.
  const m = String(text).replace(/,/g, '').match(/-?\d+(\.\d+)?/);
  return m ? Number(m[0]) : NaN;
};
const sameInstance = (url) => {
  if (url.startsWith('data:') || url.startsWith('about:')) return true;
  try { return new URL(url).origin === ORIGIN; } catch { return false; }
};
const hashQuery = (hash) => new URLSearchParams(hash.split('?')[1] ?? '');

await rm(SHOTS, { recursive: true, force: true }); // no picture of an earlier run left to mislead

// The README's pictures are worth a look only once the charts hold a few minutes of traffic.
const README_DEMO_AGE_MS = 180_000;
if (flag('--update-readme') && Date.now() - startedAt < README_DEMO_AGE_MS) {
  const wait = README_DEMO_AGE_MS - (Date.now() - startedAt);
  console.log(`--update-readme: letting the demo run ${Math.round(wait / 1000)} s more, so the charts show its story`);
  await sleep(wait);
}

// --- the browser and what every page must not do ---------------------------------------------------

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  // As root on a machine without outside network: no sandbox, and none of Chromium's own traffic.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1 });
// The demo asks for this token ([http] bearer_token; scripts/browser.sh sets both). Every page of
// the checks below starts with it in its tab's storage, as after the user typed it once; the
// access check types it.
const TOKEN = process.env.TRACEWARDEN_CONSOLE_TOKEN;
if (TOKEN) await context.addInitScript((token) => sessionStorage.setItem('tw.token', token), TOKEN);
// Nothing may leave the instance: such a request is a failure, and it is blocked so that it cannot
// hang or succeed by chance.
await context.route((url) => !sameInstance(url.href), (route) => route.abort('blockedbyclient'));

let problems = [];
function watch(page) {
  page.on('pageerror', (e) => problems.push(`uncaught JavaScript error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const at = m.location();
    problems.push(`console.error: ${m.text()}${at?.url ? ` (${at.url}:${at.lineNumber})` : ''}`);
  });
  page.on('request', (r) => {
    if (!sameInstance(r.url())) problems.push(`request outside the instance: ${r.method()} ${r.url()}`);
  });
  page.on('requestfailed', (r) => {
    const why = r.failure()?.errorText ?? 'failed';
    if (!sameInstance(r.url())) return; // already counted above
    // The console may cancel its own stale API calls when the user moves on; nothing failed then.
    if (why === 'net::ERR_ABORTED' && ['fetch', 'xhr'].includes(r.resourceType())) return;
    problems.push(`request failed: ${r.method()} ${r.url()}: ${why}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.request().method()} ${r.url()}`);
  });
  return page;
}

async function newPage() {
  const page = watch(await context.newPage());
  page.setDefaultTimeout(30_000);
  return page;
}

// --- what the contract promises every page does ------------------------------------------------------

/** What the page shows now, for failure messages. */
async function describe(page) {
  try {
    return await page.evaluate(() => {
      const main = document.querySelector('main#page');
      const error = document.querySelector('[data-error]');
      const text = (main?.innerText ?? document.body?.innerText ?? '').replace(/\s+/g, ' ').slice(0, 300);
      return `at ${location.hash || location.href}: data-page=${main?.dataset.page ?? '(no main#page)'} ` +
        `data-state=${main?.dataset.state ?? '-'}${error ? `, [data-error]: ${error.textContent.trim()}` : ''}; reads: ${text}`;
    });
  } catch (e) {
    return `(page not readable: ${e.message})`;
  }
}

/** Waits until main#page shows `name` in one of `states`; an error state fails at once. */
async function settled(page, name, { states = ['ready'], timeout = 30_000 } = {}) {
  try {
    await page.waitForFunction(([name, states]) => {
      const main = document.querySelector('main#page');
      return main && main.dataset.page === name && (states.includes(main.dataset.state) || main.dataset.state === 'error');
    }, [name, states], { timeout, polling: 200 });
  } catch {
    throw new Error(`page "${name}" not ${states.join(' or ')} within ${timeout / 1000} s; ${await describe(page)}`);
  }
  const state = await page.getAttribute('main#page', 'data-state');
  if (state === 'error' && !states.includes('error')) throw new Error(`page "${name}" shows an error; ${await describe(page)}`);
  if (state === 'empty') {
    const text = (await page.innerText('main#page')).trim();
    assert.ok(text.length > 0, `page "${name}" is empty without saying why`);
  }
}

/** Waits until `predicate` (run in the page, with `arg`) holds: the console refreshes every 10 s. */
async function until(page, what, predicate, arg, timeout = 60_000) {
  try {
    await page.waitForFunction(predicate, arg, { timeout, polling: 500 });
  } catch {
    throw new Error(`${what}: not within ${timeout / 1000} s; ${await describe(page)}`);
  }
}

async function open(page, hash, name, options) {
  await page.goto(`${ORIGIN}/${hash}`);
  await settled(page, name, options);
}

async function screenshot(page, name) {
  await mkdir(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

const rowsOf = (page, table) => page.locator(`table[data-table="${table}"] tr[data-row]`);
const cell = (row, column) => row.locator(`td[data-col="${column}"]`);
const rowKeyed = (page, table, key) => page.locator(`table[data-table="${table}"] tr[data-row="${key.replace(/["\\]/g, '\\$&')}"]`);
const hasRows = (table) => document.querySelectorAll(`table[data-table="${table}"] tr[data-row]`).length > 0;

/** Waits until the trace page shows a waterfall, and returns how many spans it has. */
async function waterfall(page, traceId) {
  await settled(page, 'trace');
  const hash = await page.evaluate(() => location.hash);
  assert.equal(hashQuery(hash).get('id'), traceId, `the trace page is the clicked trace's: ${hash}`);
  await until(page, 'the waterfall shows spans', () => document.querySelectorAll('[data-waterfall] [data-span]').length > 0, null, 15_000);
  return page.locator('[data-waterfall] [data-span]').count();
}

/** Clicks the first trace link under `scope` and returns its trace id. */
async function followTraceLink(page, scope) {
  const link = page.locator(`${scope} a[href^="#/trace?"]`).first();
  const href = await link.getAttribute('href');
  const id = hashQuery(href).get('id');
  assert.ok(id, `a trace link names its trace: ${href}`);
  await link.click();
  return id;
}

// --- the checks ----------------------------------------------------------------------------------------

const results = [];
let abort = false;
/** Runs one check on a fresh page; `allow` lists the problems the check provokes on purpose. */
async function check(name, body, { allow = [] } = {}) {
  if (abort) return;
  problems = [];
  const began = Date.now();
  const page = await newPage();
  try {
    await body(page);
    await sleep(300); // late errors of the last render
    problems = problems.filter((p) => !allow.some((pattern) => pattern.test(p)));
    assert.ok(problems.length === 0, `the page misbehaved:\n    ${problems.join('\n    ')}`);
    results.push({ name, ok: true });
    console.log(`ok    ${name} (${((Date.now() - began) / 1000).toFixed(1)} s)`);
  } catch (e) {
    results.push({ name, ok: false });
    // Playwright's messages carry terminal colours and a call log; the first lines say it.
    const message = String(e.message).replace(/\x1b\[[0-9;]*m/g, '').split('\nCall log:')[0].trim();
    console.log(`FAIL  ${name} (${((Date.now() - began) / 1000).toFixed(1)} s)\n      ${message.replace(/\n/g, '\n      ')}`);
    if (problems.length && !message.includes('misbehaved')) {
      console.log(`      and the page misbehaved:\n        ${problems.join('\n        ')}`);
    }
    await mkdir(SHOTS, { recursive: true });
    await page.screenshot({ path: path.join(SHOTS, `failed-${name.replace(/[^a-z0-9]+/gi, '-')}.png`), fullPage: true }).catch(() => {});
  } finally {
    await page.close().catch(() => {});
  }
}

console.log(`browser tests of the console at ${base} (Chromium ${browser.version()})`);

await check('the instance serves the console', async (page) => {
  const response = await fetch(`${ORIGIN}/`).catch((e) => ({ status: `no answer (${e.cause?.message ?? e.message})`, headers: new Headers() }));
  if (response.status !== 200) {
    abort = true; // every other check would fail the same way
    throw new Error(`GET ${ORIGIN}/ answered ${response.status}: there is no console to test`);
  }
  assert.match(response.headers.get('content-type') ?? '', /text\/html/, 'the console is a page');
  await page.goto(`${ORIGIN}/`, { waitUntil: 'load' });
  await page.waitForSelector('main#page', { timeout: 10_000 });
  // A page that names no icon makes the browser ask for /favicon.ico on its first load; a 404
  // there is a console error in every user's browser (unseen here: routing, needed to block other
  // hosts, also stops Chromium's icon request).
  const icon = await page.evaluate(() => document.querySelector('link[rel~="icon"]')?.getAttribute('href'));
  const iconUrl = new URL(icon ?? '/favicon.ico', `${ORIGIN}/`);
  if (!iconUrl.href.startsWith('data:')) {
    assert.ok(sameInstance(iconUrl.href), `the icon comes from the instance: ${iconUrl}`);
    const answer = await fetch(iconUrl).then((r) => r.status).catch((e) => e.message);
    assert.equal(answer, 200, `the page's icon ${iconUrl} (a page without <link rel=icon> gets /favicon.ico asked for) answers 200`);
  }
  const nav = await page.locator('nav a[href^="#/"]').count();
  assert.ok(nav >= 5, `the page has its navigation (nav a[href^="#/"]: ${nav})`);
});

if (TOKEN) {
  await check('access: without the token the console asks for it, refuses a wrong one, then shows the data', async () => {
    const refused = await fetch(`${ORIGIN}/api/services`);
    assert.equal(refused.status, 401, 'the API refuses a request without the token');
    assert.match(refused.headers.get('www-authenticate') ?? '', /^Bearer/, 'and says which credentials it takes');
    const granted = await fetch(`${ORIGIN}/api/services`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    assert.equal(granted.status, 200, 'the API serves a request with the token');
    // A tab that was never given the token.
    const fresh = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    await fresh.route((url) => !sameInstance(url.href), (route) => route.abort('blockedbyclient'));
    const page = watch(await fresh.newPage());
    try {
      await page.goto(`${ORIGIN}/#/services`);
      const form = () => document.querySelector('main#page')?.dataset.state === 'token' && !!document.querySelector('#access-token');
      await until(page, 'the console asks for the token', form);
      await page.fill('#access-token', 'not-the-token');
      await page.click('main#page button[type=submit]');
      await until(page, 'the console says the token was refused',
        () => /refused/.test(document.querySelector('main#page')?.innerText ?? '') && !!document.querySelector('#access-token'));
      await page.fill('#access-token', TOKEN);
      await page.click('main#page button[type=submit]');
      await settled(page, 'services', { states: ['ready', 'empty'] });
    } finally {
      await fresh.close();
    }
  }, { allow: [/HTTP 401 for GET .*\/api\//, /console\.error: Failed to load resource: .*401/] });
}

await check('services: the table lists the six services of the demo', async (page) => {
  await open(page, '#/services', 'services', { states: ['ready', 'empty'] });
  const keys = SERVICES.map((s) => `${s}:${ENV}`);
  await until(page, `rows ${keys.join(', ')} in table[data-table=services]`,
    (keys) => keys.every((k) => document.querySelector(`table[data-table="services"] tr[data-row="${k}"]`)), keys);
  for (const service of SERVICES) {
    const row = rowKeyed(page, 'services', `${service}:${ENV}`);
    assert.match(await row.innerText(), new RegExp(service), `the ${service} row names it`);
    for (const column of ['requests', 'availability', 'faults', 'errors', 'p99', 'slo']) {
      assert.equal(await cell(row, column).count(), 1, `the ${service} row has a td[data-col=${column}]`);
    }
    // The number a user reads: requests/s sits in data-col=rate when the console has that column
    // (data-col=requests then holds the sparkline of requests over the range).
    const figure = (await cell(row, 'rate').count()) ? cell(row, 'rate') : cell(row, 'requests');
    const requests = await figure.innerText();
    assert.ok(number(requests) > 0, `${service} shows its requests: "${requests}"`);
  }
  // The table answers from the group's rollups, sent every 10 s: the first may precede the first
  // fault, and the page refreshes itself.
  await until(page, `customers-service:${ENV} with a fault rate > 0 in table[data-table=services]`, (key) => {
    const row = document.querySelector(`table[data-table="services"] tr[data-row="${key}"]`);
    const text = row?.querySelector('td[data-col="faults"]')?.textContent ?? '';
    return Number(text.match(/-?\d+(\.\d+)?/)?.[0] ?? 0) > 0;
  }, `customers-service:${ENV}`);
  await screenshot(page, 'services');
});

await check('map: the failing edge frontend -> customers-service shows faults; the Kafka topic between its producer and consumer; labels clear of each other and of the nodes', async (page) => {
  await open(page, '#/map', 'map', { states: ['ready', 'empty'] });
  await until(page, `edge ${FAILING_EDGE} with faults > 0 in table[data-table=edges]`, (edge) => {
    const row = document.querySelector(`table[data-table="edges"] tr[data-row="${edge}"]`);
    const text = row?.querySelector('td[data-col="faults"]')?.textContent.replace(/,/g, '') ?? '';
    return Number(text.match(/-?\d+(\.\d+)?/)?.[0] ?? 0) > 0;
  }, FAILING_EDGE);
  // The Kafka hop: visits-service publishes to the topic, which delivers to billing-service.
  for (const [queueEdge, kind] of [[`visits-service:${ENV}->kafka:billing-events:${ENV}`, 'publish'], [`kafka:billing-events:${ENV}->billing-service:${ENV}`, 'delivery']]) {
    await until(page, `queue edge ${queueEdge} (${kind}) in table[data-table=edges]`, ([edge, kind]) =>
      document.querySelector(`table[data-table="edges"] tr[data-row="${edge}"] td[data-col="kind"]`)?.textContent === kind, [queueEdge, kind]);
  }
  assert.equal(await rowKeyed(page, 'edges', `visits-service:${ENV}->billing-service:${ENV}`).count(), 0, 'no direct edge past the queue');
  const edge = rowKeyed(page, 'edges', FAILING_EDGE);
  for (const column of ['requests', 'faults', 'errors', 'p99']) {
    assert.equal(await cell(edge, column).count(), 1, `the edge row has a td[data-col=${column}]`);
  }
  // Cytoscape draws into canvases inside #map; let its layout come to rest before the picture.
  await page.waitForSelector('#map canvas', { timeout: 15_000 });
  const box = await page.locator('#map').boundingBox();
  assert.ok(box && box.width > 200 && box.height > 200, `the map has room: ${JSON.stringify(box)}`);
  // Every edge label placed: none over a node, a node's label or another edge's label, and none
  // left out for want of room (the map reports its placement on #map).
  await page.waitForSelector('#map[data-label-overlaps]', { timeout: 15_000 });
  const placement = await page.evaluate(() => ({ ...document.querySelector('#map').dataset }));
  assert.equal(placement.labelOverlaps, '0', `no label overlaps another or a node: ${JSON.stringify(placement)}`);
  assert.equal(placement.labelsHidden, '0', `every edge keeps its label: ${JSON.stringify(placement)}`);
  await sleep(1500);
  await screenshot(page, 'map');
});

await check('traces -> trace: a fault trace opens as a waterfall, and back returns to the list', async (page) => {
  await open(page, '#/traces?outcome=fault', 'traces', { states: ['ready', 'empty'] });
  await until(page, 'fault traces in table[data-table=traces]', hasRows, 'traces');
  await screenshot(page, 'traces');
  const first = rowsOf(page, 'traces').first();
  const listed = await first.getAttribute('data-row');
  const link = first.locator('a[href^="#/trace?"]').first();
  assert.equal(await link.count(), 1, `the first row (${listed}) links to its trace`);
  assert.equal(hashQuery(await link.getAttribute('href')).get('id'), listed, 'the row links to its own trace');
  await link.click();
  const spans = await waterfall(page, listed);
  assert.ok(spans >= 2, `a fault trace of the demo has several spans (${spans})`);
  const fault = page.locator('[data-waterfall] [data-span][data-outcome="fault"]').first();
  assert.ok(await fault.isVisible(), 'the waterfall shows a span with data-outcome=fault');
  await screenshot(page, 'trace');

  await page.goBack();
  await settled(page, 'traces', { states: ['ready', 'empty'] });
  const hash = await page.evaluate(() => location.hash);
  assert.equal(hashQuery(hash).get('outcome'), 'fault', `back returns to the fault traces: ${hash}`);
});

/** GET (or POST) an API path of the instance with the token; its JSON, or null. */
const apiJson = (apiPath, method = 'GET') => fetch(`${ORIGIN}${apiPath}`, { method, headers: TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {} })
  .then((r) => (r.ok ? r.json() : null)).catch(() => null);
/** The canary's deployment as /api/deployments says it, or undefined. */
const canaryDeployment = async () => (await apiJson('/api/deployments?service=customers-service&environment=demo'))
  ?.deployments?.find((d) => d.version === CANARY_VERSION);

await check('deployments: the canary\'s rollout is judged degraded, listed on the service page and marked on its charts and its SLO\'s', async (page) => {
  // The precondition, from the API: the rollout happened and was judged.
  const deadline = startedAt + CANARY_AFTER_MS + 120_000;
  let deployment;
  while (Date.now() < deadline && (deployment = await canaryDeployment())?.verdict !== 'degraded') await sleep(2_000);
  assert.equal(deployment?.verdict, 'degraded', `GET /api/deployments judges ${CANARY_VERSION} degraded within 2 min of its rollout: ${JSON.stringify(deployment)}`);
  assert.equal(deployment.previousVersion, '1.3.2');
  await open(page, `#/service?service=customers-service&environment=${ENV}`, 'service', { states: ['ready'] });
  const row = `${ENV}:${CANARY_VERSION}`;
  await until(page, `row ${row} of table[data-table=deployments], verdict degraded`,
    (row) => Boolean(document.querySelector(`table[data-table="deployments"] tr[data-row="${row}"] [data-verdict="degraded"]`)), row);
  for (const name of ['requests', 'faults', 'latency']) {
    await until(page, `the rollout marked on chart ${name}`,
      ([name, version]) => Boolean(document.querySelector(`[data-chart="${name}"] .marker[data-marker="${version}"]`)), [name, CANARY_VERSION]);
  }
  const title = await page.locator(`[data-chart="faults"] .marker[data-marker="${CANARY_VERSION}"] span`).getAttribute('title');
  assert.match(title ?? '', /customers-service 1\.4\.0-rc1 deployed \(after 1\.3\.2\) in demo: degraded/, 'the marker says what it marks');
  await screenshot(page, 'deployments');
  await open(page, `#/slo?name=${SLO}`, 'slo', { states: ['ready', 'empty'] });
  // The SLO is frontend's; the deployment downstream of it is marked with its service's name.
  await until(page, 'the rollout marked on the SLO\'s budget chart',
    (label) => Boolean(document.querySelector(`[data-chart="budget"] .marker[data-marker="${label}"]`)), `customers-service ${CANARY_VERSION}`);
});

await check('service: a chart point of customers-service opens its traces and what is different about its faults', async (page) => {
  const service = 'customers-service';
  await open(page, `#/service?service=${service}&environment=${ENV}`, 'service', { states: ['ready', 'empty'] });
  await until(page, 'operations and dependencies tables with rows',
    () => ['operations', 'dependencies'].every((t) => document.querySelector(`table[data-table="${t}"] tr[data-row]`)));
  assert.match(await page.innerText('main#page'), new RegExp(service), 'the page names its service');
  await until(page, 'charts requests, faults and latency drawn',
    () => ['requests', 'faults', 'latency'].every((c) => document.querySelector(`[data-chart="${c}"] .u-over`)));
  // Its faults by exception, the canary's bug the largest group.
  await until(page, 'the exceptions table, the canary\'s NullPointerException first', () => {
    const first = document.querySelector('table[data-table="exceptions"] tr[data-row]');
    return Boolean(first?.querySelector('td[data-col="type"]')?.textContent?.includes('NullPointerException'));
  });

  // Click the newest point of the faults chart that has faults (the newest 10 s point may still
  // be empty): hover from the right edge leftwards, reading uPlot's legend, then click there. The
  // mouse leaves the chart first, since uPlot measures where its plot is when the mouse enters it.
  const panel = page.locator('aside[data-panel="point"]');
  const over = page.locator('[data-chart="faults"] .u-over');
  const legendFaults = () => page.evaluate(() => {
    const values = [...document.querySelectorAll('[data-chart="faults"] .u-legend .u-value')];
    return Number((values.at(-1)?.textContent ?? '').replace(/,/g, '').match(/\d+(\.\d+)?/)?.[0] ?? 0);
  });
  const deadline = Date.now() + 60_000;
  let found = false;
  while (!found && Date.now() < deadline) {
    await page.mouse.move(0, 0);
    const box = await over.boundingBox();
    assert.ok(box && box.width > 50, `the faults chart has a plot area: ${JSON.stringify(box)}`);
    const y = box.height / 2;
    let x = null;
    for (let dx = 1; dx < Math.min(box.width, 200); dx += 3) {
      await over.hover({ position: { x: box.width - dx, y } });
      if (await legendFaults() > 0) { x = box.width - dx; break; }
    }
    if (x === null) { await sleep(3_000); continue; }
    await over.click({ position: { x, y } });
    try {
      await until(page, 'the panel has traces and the comparison', () => {
        const aside = document.querySelector('aside[data-panel="point"]');
        return Boolean(aside?.querySelector('a[href^="#/trace?"]') && aside.querySelector('table[data-table="compare"] tr[data-row]'));
      }, null, 10_000);
      found = true;
    } catch {
      console.log(`      (a point with faults opened a panel without example traces or a comparison: ${await describe(page)})`);
      await sleep(3_000);
    }
  }
  assert.ok(found, `no point of the faults chart with faults opened aside[data-panel=point] with example traces ` +
    `(a[href^="#/trace?"]) and table[data-table=compare] rows within 60 s; ${await describe(page)}`);

  // Over the whole window (a choice in the panel), where the figures are many: the canary first.
  await panel.locator('[data-choice="range"] input[value="window"]').check();
  await until(page, 'the comparison over the last window', () =>
    Boolean(document.querySelector('aside[data-panel="point"][data-range="window"] table[data-table="compare"] tr[data-row]')));
  const top = await panel.locator('table[data-table="compare"] tr[data-row]').first().getAttribute('data-row');
  assert.match(top, CANARY, 'what is most different about customers-service\'s faults is the canary');
  const traces = panel.locator('[data-link="traces"]');
  assert.equal(await traces.count(), 1, 'the panel links to the traces of the point ([data-link=traces])');
  const tracesHref = await traces.getAttribute('href');
  assert.match(tracesHref ?? '', /^#\/traces\?/, `[data-link=traces] goes to the traces page: ${tracesHref}`);
  const range = hashQuery(tracesHref);
  assert.ok(range.get('from') && range.get('to') && Number(range.get('from')) < Number(range.get('to')),
    `[data-link=traces] names the point's time range: ${tracesHref}`);
  assert.equal(range.get('service'), service, `[data-link=traces] keeps the service: ${tracesHref}`);
  await screenshot(page, 'service');

  const id = await followTraceLink(page, 'aside[data-panel="point"]');
  assert.ok(await waterfall(page, id) >= 1, 'the example trace opens as a waterfall');

  await page.goBack();
  await settled(page, 'service', { states: ['ready', 'empty'] });
  const back = hashQuery(await page.evaluate(() => location.hash));
  assert.equal(back.get('service'), service, 'back returns to the service page');

  // The point's traces page lists traces of that time range.
  await page.goto(`${ORIGIN}/${tracesHref}`);
  await settled(page, 'traces', { states: ['ready', 'empty'] });
  await until(page, `traces listed for ${tracesHref}`, hasRows, 'traces', 15_000);
});

await check('keyboard: Tab reaches a nav link and Enter opens its page; filters travel; back', async (page) => {
  await open(page, `#/services?environment=${ENV}&range=30m`, 'services', { states: ['ready', 'empty'] });
  let reached = null;
  for (let i = 0; i < 40 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => {
      const a = document.activeElement;
      return a?.matches('nav a[href^="#/map"]') ? a.getAttribute('href') : null;
    });
  }
  assert.ok(reached, 'Tab reaches the nav link to the map (nav a[href^="#/map"]) within 40 presses');
  await page.keyboard.press('Enter');
  await settled(page, 'map', { states: ['ready', 'empty'] });
  const query = hashQuery(await page.evaluate(() => location.hash));
  assert.equal(query.get('environment'), ENV, 'the environment filter travels to the next page');
  assert.equal(query.get('range'), '30m', 'the range filter travels to the next page');

  await page.goBack();
  await settled(page, 'services', { states: ['ready', 'empty'] });
  assert.equal(hashQuery(await page.evaluate(() => location.hash)).get('range'), '30m', 'back returns to the services page as it was');
});

const UNKNOWN_TRACE = '0123456789abcdef0123456789abcdef';
await check('an unknown trace: the page says so in [data-error]', async (page) => {
  await open(page, `#/trace?id=${UNKNOWN_TRACE}`, 'trace', { states: ['error'] });
  const error = page.locator('main#page [data-error]');
  assert.ok(await error.isVisible(), `the error shows in [data-error]; ${await describe(page)}`);
  assert.ok((await error.innerText()).trim().length > 0, 'the error says what went wrong');
}, { allow: [new RegExp(`HTTP 404 for GET ${ORIGIN}/api/traces/${UNKNOWN_TRACE}`), /console\.error: Failed to load resource: .*404/] });

await check('pipeline: spans in and out', async (page) => {
  await open(page, '#/pipeline', 'pipeline', { states: ['ready', 'empty'] });
  await until(page, 'rows in table[data-table=pipeline]', hasRows, 'pipeline');
  await screenshot(page, 'pipeline');
});

await check(`slos: ${SLO} is listed with its status`, async (page) => {
  await open(page, '#/slos', 'slos', { states: ['ready', 'empty'] });
  await until(page, `row ${SLO} in table[data-table=slos]`, (name) => document.querySelector(`table[data-table="slos"] tr[data-row="${name}"]`), SLO);
  const status = (await cell(rowKeyed(page, 'slos', SLO), 'status').innerText()).trim();
  assert.ok(status.length > 0, `the ${SLO} row shows a status`);
  await screenshot(page, 'slos');
});

await check(`slo: ${SLO} shows its charts and a firing alert`, async (page) => {
  await open(page, `#/slo?name=${SLO}`, 'slo', { states: ['ready', 'empty'] });
  assert.match(await page.innerText('main#page'), new RegExp(SLO), 'the page names its SLO');
  await until(page, 'charts budget and burn drawn',
    () => ['budget', 'burn'].every((c) => document.querySelector(`[data-chart="${c}"] .u-over, [data-chart="${c}"] canvas`)), null, 30_000);
  const left = Math.max(startedAt + ALERT_WITHIN_MS - Date.now(), 20_000);
  try {
    await until(page, 'a firing alert in table[data-table=alerts]', hasRows, 'alerts', left);
  } catch (e) {
    // Tell a console that does not refresh from an SLO that does not fire.
    const headers = TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {};
    const api = await page.request.get(`${ORIGIN}/api/slos`, { headers }).then((r) => r.json()).catch(() => null);
    const firing = api?.slos?.find((s) => s.name === SLO)?.firing;
    await page.reload();
    await settled(page, 'slo', { states: ['ready', 'empty'] }).catch(() => {});
    const afterReload = await page.locator('table[data-table="alerts"] tr[data-row]').count();
    throw new Error(`${e.message}\n/api/slos says firing: ${JSON.stringify(firing)}; after a reload the page has ${afterReload} alert rows`);
  }
  const alerts = await rowsOf(page, 'alerts').evaluateAll((rows) => rows.map((r) => r.dataset.row));
  assert.ok(alerts.every((a) => a && a.length > 0), `alert rows are keyed by their tier: ${alerts}`);
  await screenshot(page, 'slo');
});

await check('refresh: the charts get new data, the map new labels, an unchanged waterfall stays as it is', async (page) => {
  // The page refreshes itself every 10 s; #refreshed says when it last did (to the second).
  const refreshed = async (what) => {
    const before = await page.textContent('#refreshed');
    await until(page, `${what}: the page refreshes itself (#refreshed changes)`,
      (before) => document.querySelector('#refreshed')?.textContent !== before, before, 25_000);
  };
  const mark = (selector) => page.evaluate((selector) => { window.marked = [...document.querySelectorAll(selector)]; return window.marked.length; }, selector);
  const stillMarked = (selector) => page.evaluate((selector) => {
    const now = [...document.querySelectorAll(selector)];
    return now.length === window.marked.length && now.every((el, i) => el === window.marked[i]);
  }, selector);

  await open(page, `#/service?service=customers-service&environment=${ENV}`, 'service', { states: ['ready'] });
  await until(page, 'charts requests, faults and latency drawn',
    () => ['requests', 'faults', 'latency'].every((c) => document.querySelector(`[data-chart="${c}"] .uplot`)));
  assert.equal(await mark('[data-chart] .uplot'), 3, 'three uPlot charts');
  await refreshed('service');
  assert.ok(await stillMarked('[data-chart] .uplot'), 'the same three charts after a refresh: given new data, not drawn anew');
  await settled(page, 'service');

  await open(page, '#/map', 'map', { states: ['ready'] });
  await page.waitForSelector('#map canvas', { timeout: 15_000 });
  const edges = () => rowsOf(page, 'edges').evaluateAll((rows) => rows.map((r) => r.dataset.row).sort().join(' '));
  const edgesBefore = await edges();
  assert.ok(await mark('#map canvas') > 0, 'the map draws into canvases');
  await refreshed('map');
  if (await edges() === edgesBefore) {
    assert.ok(await stillMarked('#map canvas'), 'the same edges after a refresh: the same map, relabelled, not drawn anew');
  } else {
    console.log('      (the map gained or lost an edge during the refresh, and was drawn anew: not compared)');
  }

  await open(page, '#/traces?outcome=fault', 'traces', { states: ['ready', 'empty'] });
  await until(page, 'fault traces in table[data-table=traces]', hasRows, 'traces');
  const id = await followTraceLink(page, 'table[data-table="traces"]');
  assert.ok(await waterfall(page, id) >= 1, 'the trace opens as a waterfall');
  assert.equal(await mark('[data-waterfall], [data-waterfall] [data-span]') > 1, true, 'a waterfall with spans');
  await refreshed('trace');
  assert.ok(await stillMarked('[data-waterfall], [data-waterfall] [data-span]'), 'a trace that did not change keeps its waterfall as it was');
});

await check('rollback: the fault switch rolls the canary back, and the deployment says so a window later', async (page) => {
  const switched = await apiJson('/api/demo/faults?enabled=false', 'POST');
  assert.deepEqual(switched, { faults: false, canary: false }, 'the demo\'s fault switch answers');
  await open(page, `#/service?service=customers-service&environment=${ENV}`, 'service', { states: ['ready'] });
  const row = `${ENV}:${CANARY_VERSION}`;
  // metrics.window (60 s) without the canary's requests, and a refresh.
  await until(page, `row ${row} of table[data-table=deployments] says rolled back`,
    (row) => Boolean(document.querySelector(`table[data-table="deployments"] tr[data-row="${row}"]`)?.textContent?.includes('rolled back')), row, 120_000);
  assert.equal((await canaryDeployment())?.rolledBack, true, 'GET /api/deployments says rolledBack');
});

await browser.close();

const passed = results.filter((r) => r.ok).length;
const failed = results.length - passed;
if (abort) console.log('the other checks were not run');
if (flag('--update-readme')) {
  if (failed || abort) {
    console.log('--update-readme: not updating docs/screenshots, a check failed');
  } else {
    await mkdir(README_SHOTS, { recursive: true });
    for (const name of ['map', 'service']) await copyFile(path.join(SHOTS, `${name}.png`), path.join(README_SHOTS, `${name}.png`));
    console.log('--update-readme: docs/screenshots/map.png and service.png updated');
  }
}
console.log(`screenshots: ${path.relative(process.cwd(), SHOTS) || SHOTS}/`);
console.log(`browser: ${passed} passed, ${failed} failed`);
process.exit(failed || abort ? 1 : 0);
