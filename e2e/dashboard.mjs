// End-to-end test of the dashboard: playwright-core driving Debian's chromium (headless, no
// sandbox) against a running anomalyd with a seeded database and a model that scores live
// telemetry. Run by crates/cli/tests/integration/dashboard_e2e.rs:
//
//   node e2e/dashboard.mjs <base-url> <screenshot-dir>
//
// Environment: CHROMIUM (default /usr/bin/chromium).
// Prints one line per step and `overview-ready-ms <n>`; exits 1 on the first failure.

import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [base, shots] = process.argv.slice(2);
if (!base || !shots) {
  console.error('usage: node e2e/dashboard.mjs <base-url> <screenshot-dir>');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const step = (s) => console.log(`e2e: ${s}`);

async function apiGet(path) {
  const r = await fetch(base + path);
  assert.equal(r.status, 200, `GET ${path}`);
  return r.json();
}

async function postTelemetry(samples) {
  const r = await fetch(`${base}/api/v1/telemetry`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(samples),
  });
  const body = await r.text();
  assert.equal(r.status, 200, `POST /api/v1/telemetry: ${body}`);
  return JSON.parse(body);
}

/** A sample that trips the battery_overheat rule (above 55 °C) on a device of its own. */
let liveSeq = 0;
function overheating() {
  liveSeq += 1;
  return [{ device_id: `e2e-live-${liveSeq}`, ts: Date.now(), cohort: 'tc52/android-13',
    metrics: { battery_pct: 50, battery_temp_c: 90, cpu_pct: 30, mem_pct: 40, app_crashes: 0, signal_dbm: -70 } }];
}

function pngSize(buf) {
  return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
}

async function shot(page, name, viewport) {
  const buf = await page.screenshot({ path: join(shots, `${name}.png`) });
  assert.deepEqual(pngSize(buf), viewport, `${name}.png has the viewport's size`);
  // A blank page compresses to almost nothing; a rendered one does not.
  assert.ok(buf.length > 8000, `${name}.png is not blank (${buf.length} bytes)`);
}

/** Navigates inside the app and waits until the page says it rendered its data. */
async function open(page, hash, ready) {
  await page.evaluate(() => { document.body.dataset.ready = ''; });
  await page.evaluate((h) => { location.hash = h; }, hash);
  await page.waitForSelector(`body[data-ready="${ready}"]`, { timeout: 15000 });
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox'],
});
const problems = [];
function watch(page) {
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // The troubleshooting endpoint may not exist on this build; the page says so itself.
    if (m.type() === 'error' && !/status of 404|status of 405/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
}

try {
  const stats = await apiGet('/api/v1/dashboard/stats');
  assert.ok(stats.anomalies.total > 0, 'the database is seeded');

  // ---- Overview at desktop size: seeded counts in the tiles, load time, no layout shift.
  const desk = await browser.newContext({ viewport: DESKTOP, colorScheme: 'light' });
  const page = await desk.newPage();
  watch(page);
  await page.addInitScript(() => {
    window.__cls = 0;
    new PerformanceObserver((l) => { for (const e of l.getEntries()) if (!e.hadRecentInput) window.__cls += e.value; })
      .observe({ type: 'layout-shift', buffered: true });
  });
  await page.goto(`${base}/`);
  await page.waitForSelector('body[data-ready="overview"]');
  const readyMs = await page.evaluate(() => performance.getEntriesByName('overview-ready')[0].startTime);
  console.log(`overview-ready-ms ${readyMs.toFixed(1)}`);
  const total = await page.textContent('[data-tile="total"] .tile-value');
  assert.equal(total.replace(/,/g, ''), String(stats.anomalies.total), 'total tile shows the stored anomalies');
  const devices = await page.textContent('[data-tile="devices"] .tile-value');
  assert.equal(devices.replace(/,/g, ''), String(stats.devices.seen), 'devices tile');
  const bars = await page.getAttribute('#trend svg.chart path.bars', 'd');
  assert.ok(bars && bars.startsWith('M'), 'the trend chart has bars');
  // The chart's buckets can be read with the keyboard: End moves to the latest one.
  await page.focus('#trend svg.chart');
  await page.keyboard.press('End');
  const tip = await page.textContent('#trend .chart-tip');
  assert.match(tip, /UTC: [\d,]+ anomalies/, `the chart's tooltip names the bucket: ${tip}`);
  await page.evaluate(() => document.activeElement.blur());
  assert.ok(await page.isHidden('#trend .chart-tip'), 'the tooltip goes when the chart loses focus');
  assert.ok(await page.locator('.panel-cohorts li').count() > 0, 'top cohorts listed');
  assert.ok(await page.locator('.panel-incidents li').count() > 0, 'open incidents listed');
  const cls = await page.evaluate(() => window.__cls);
  console.log(`overview-cls ${cls.toFixed(4)}`);
  assert.ok(cls < 0.05, `layout shift while the overview loads is ${cls}`);
  await shot(page, 'overview-desktop', DESKTOP);
  step(`overview: ${total} anomalies, ready in ${readyMs.toFixed(0)} ms, CLS ${cls.toFixed(3)}`);

  // ---- The list filtered by severity, then keyset paging.
  await open(page, '#/anomalies', 'anomalies');
  await shot(page, 'anomalies-desktop', DESKTOP);
  await page.evaluate(() => { document.body.dataset.ready = ''; });
  await page.selectOption('select[name="severity"]', 'critical');
  await page.click('form.filters button[type="submit"]');
  await page.waitForSelector('body[data-ready="anomalies"]');
  assert.match(page.url(), /severity=critical/);
  const sev = await page.$$eval('tbody tr[data-id]', (rows) => rows.map((r) => r.dataset.severity));
  assert.ok(sev.length > 0 && sev.every((s) => s === 'critical'), `only critical rows: ${sev}`);
  const first = await page.$$eval('tbody tr[data-id]', (rows) => rows.map((r) => Number(r.dataset.id)));
  assert.ok(await page.locator('#next-page').count() === 1, 'a next page exists');
  await page.evaluate(() => { document.body.dataset.ready = ''; });
  await page.click('#next-page');
  await page.waitForSelector('body[data-ready="anomalies"]');
  const second = await page.$$eval('tbody tr[data-id]', (rows) => rows.map((r) => ({ id: Number(r.dataset.id), s: r.dataset.severity })));
  assert.ok(second.length > 0, 'the next page has rows');
  assert.ok(second.every((r) => r.s === 'critical' && !first.includes(r.id)), 'the next page holds other critical anomalies');
  assert.ok(Math.max(...second.map((r) => r.id)) < Math.min(...first), 'the next page is older');
  step(`list: ${first.length} critical on page 1, ${second.length} on page 2`);

  // Severity and cohort together.
  const cohort = Object.entries(stats.anomalies.by_cohort).sort((a, b) => b[1] - a[1])[0][0];
  await open(page, `#/anomalies?severity=high&cohort=${encodeURIComponent(cohort)}`, 'anomalies');
  const both = await page.$$eval('tbody tr[data-id]', (rows) => rows.map((r) => [r.dataset.severity, r.dataset.cohort]));
  assert.ok(both.length > 0, 'rows for high + cohort');
  assert.ok(both.every(([s, c]) => s === 'high' && c === cohort), `all rows are high in ${cohort}`);
  assert.equal(await page.inputValue('select[name="cohort"]'), cohort, 'the cohort filter shows the choice');
  step(`list: ${both.length} high anomalies in ${cohort}`);

  // ---- Keyboard: Tab to a row, Enter opens it.
  await open(page, '#/anomalies?status=open', 'anomalies');
  await page.evaluate(() => { document.body.dataset.ready = ''; });
  let focusedRow = null;
  for (let i = 0; i < 80 && !focusedRow; i++) {
    await page.keyboard.press('Tab');
    focusedRow = await page.evaluate(() => document.activeElement?.matches('tbody tr[data-id]') ? document.activeElement.dataset.id : null);
  }
  assert.ok(focusedRow, 'a row can be reached with Tab');
  await page.keyboard.press('Enter');
  await page.waitForSelector('body[data-ready="anomaly"]');
  assert.ok(page.url().endsWith(`#/anomalies/${focusedRow}`), `Enter opened anomaly ${focusedRow}: ${page.url()}`);
  const id = Number(focusedRow);
  step(`keyboard: Tab + Enter opened #${id}`);

  // ---- Detail: attribution chart, then acknowledge and resolve with notes.
  assert.ok(await page.locator('svg.attribution rect.bar').count() > 0, 'the attribution chart has bars');
  assert.ok(await page.locator('svg.attribution rect.normal').count() > 0, 'the normal range is drawn');
  await page.waitForSelector('.history svg.chart', { timeout: 10000 });
  await shot(page, 'anomaly-desktop', DESKTOP);
  await page.click('button[data-action="acknowledged"]');
  await page.fill('#status-note', 'looked at by the e2e test');
  await page.click('#status-submit');
  await page.waitForSelector('[data-fact="status"] .st-acknowledged');
  await page.click('button[data-action="resolved"]');
  await page.fill('#status-note', 'resolved by the e2e test');
  await page.click('#status-submit');
  await page.waitForSelector('[data-fact="status"] .st-resolved');
  await page.evaluate(() => { document.body.dataset.ready = ''; });
  await page.reload();
  await page.waitForSelector('body[data-ready="anomaly"]');
  assert.equal((await page.textContent('[data-fact="status"] dd')).trim(), 'resolved', 'status persisted after reload');
  assert.equal((await page.textContent('[data-fact="note"] dd')).trim(), 'resolved by the e2e test', 'note persisted');
  const stored = await apiGet(`/api/v1/anomalies/${id}`);
  assert.equal(stored.status, 'resolved');
  assert.equal(stored.note, 'resolved by the e2e test');
  step(`triage: #${id} acknowledged, resolved, persisted (UI and API)`);

  await page.click('#troubleshoot');
  await page.waitForFunction(() => document.querySelector('.answer')?.textContent && !document.querySelector('.answer').textContent.includes('Asking'));
  step(`troubleshooting: ${(await page.textContent('.answer')).slice(0, 80)}`);

  // ---- The anomaly's incident: its evidence snapshot, and triage of the whole incident.
  const incidentId = stored.incident_id;
  assert.ok(incidentId, 'the anomaly belongs to an incident');
  await page.evaluate(() => { document.body.dataset.ready = ''; });
  await page.click(`.facts a[href="#/incidents/${incidentId}"]`);
  await page.waitForSelector('body[data-ready="incident"]');
  assert.ok(await page.locator('svg.attribution rect.bar').count() > 0, 'the evidence attribution is drawn');
  await page.waitForSelector('.history svg.chart', { timeout: 10000 });
  assert.ok(await page.locator(`a[href="#/anomalies/${id}"]`).count() > 0, 'the incident lists the anomaly');
  await shot(page, 'incident-desktop', DESKTOP);
  const incBefore = await apiGet(`/api/v1/incidents/${incidentId}`);
  const action = incBefore.status === 'open' ? 'acknowledged' : incBefore.status === 'acknowledged' ? 'resolved' : 'open';
  await page.click(`button[data-action="${action}"]`);
  await page.waitForSelector(`[data-fact="status"] .st-${action}`);
  assert.equal((await apiGet(`/api/v1/incidents/${incidentId}`)).status, action, 'the incident status persisted');
  step(`incident: #${incidentId} shows its evidence and was set to ${action}`);

  // ---- Device and models pages.
  await page.evaluate(() => { document.body.dataset.ready = ''; });
  await page.click('[data-fact] a[href^="#/devices/"], .facts a[href^="#/devices/"]');
  await page.waitForSelector('body[data-ready="device"]');
  await page.waitForSelector('.history svg.chart');
  await shot(page, 'device-desktop', DESKTOP);
  await open(page, '#/models', 'models');
  await shot(page, 'models-desktop', DESKTOP);
  step('device and models pages render');

  // ---- Live: a new anomaly shows up in the list and the overview without a reload.
  await page.goto(`${base}/#/anomalies`);
  await page.waitForSelector('body[data-ready="anomalies"]');
  await page.evaluate(() => { window.__sameDocument = true; });
  const before = await page.$$eval('tbody tr[data-id]', (rows) => rows.map((r) => Number(r.dataset.id)));
  // A device's first sample may wait in its re-order buffer until the server's flush timer,
  // so the anomaly is not necessarily counted in this answer; the page must show it anyway.
  await postTelemetry(overheating());
  await page.waitForFunction((ids) => [...document.querySelectorAll('tbody tr[data-id]')].some((r) => !ids.includes(Number(r.dataset.id))), before, { timeout: 15000 });
  assert.ok(await page.evaluate(() => window.__sameDocument === true), 'no reload happened');
  const liveRow = await page.$eval('tbody tr.new', (r) => r.textContent);
  assert.match(liveRow, /e2e-live-1/);
  step('live: the new anomaly appeared in the list');

  await open(page, '#/', 'overview');
  const totalBefore = Number((await page.textContent('[data-tile="total"] .tile-value')).replace(/,/g, ''));
  await postTelemetry(overheating());
  await page.waitForFunction((n) => Number(document.querySelector('[data-tile="total"] .tile-value').textContent.replace(/,/g, '')) > n, totalBefore, { timeout: 15000 });
  await page.waitForSelector('#latest a:has-text("e2e-live-2")', { timeout: 15000 });
  assert.ok(await page.evaluate(() => window.__sameDocument === true), 'no reload happened');
  step('live: the overview counted it and lists it');
  await desk.close();

  // ---- Phone size: every page, no sideways scrolling; dark theme for the overview.
  const phone = await browser.newContext({ viewport: PHONE, colorScheme: 'light', isMobile: true, hasTouch: true });
  const p = await phone.newPage();
  watch(p);
  await p.goto(`${base}/`);
  await p.waitForSelector('body[data-ready="overview"]');
  const pages = [['overview', '#/', 'overview'], ['anomalies', '#/anomalies', 'anomalies'], ['anomaly', `#/anomalies/${id}`, 'anomaly'], ['incident', `#/incidents/${incidentId}`, 'incident'],
    ['device', `#/devices/${encodeURIComponent(stored.device_id)}`, 'device'], ['models', '#/models', 'models']];
  for (const [name, hash, ready] of pages) {
    await open(p, hash, ready);
    const width = await p.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= PHONE.width, `${name} fits the phone's width (${width} px)`);
    await shot(p, `${name}-phone`, PHONE);
  }
  await phone.close();
  step('phone: every page fits 390 px');

  for (const [viewport, suffix] of [[DESKTOP, 'desktop'], [PHONE, 'phone']]) {
    const dark = await browser.newContext({ viewport, colorScheme: 'dark' });
    const d = await dark.newPage();
    watch(d);
    await d.goto(`${base}/`);
    await d.waitForSelector('body[data-ready="overview"]');
    const bg = await d.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.equal(bg, 'rgb(15, 18, 22)', 'the dark theme follows the system setting');
    await shot(d, `overview-${suffix}-dark`, viewport);
    await open(d, `#/anomalies/${id}`, 'anomaly');
    await shot(d, `anomaly-${suffix}-dark`, viewport);
    await dark.close();
  }
  step('dark theme');

  assert.deepEqual(problems, [], 'no script errors in the browser');
  writeFileSync(join(shots, 'timings.json'), JSON.stringify({ overview_ready_ms: readyMs, overview_cls: cls }) + '\n');
  step('all passed');
} catch (e) {
  console.error(`e2e: FAILED: ${e.stack || e}`);
  if (problems.length) console.error(`browser problems:\n  ${problems.join('\n  ')}`);
  await browser.close();
  process.exit(1);
}
await browser.close();
