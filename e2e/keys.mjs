// The dashboard on a server that asks for API keys: the key prompt appears before any data,
// a refused key says so, an accepted key is kept for the tab (a reload does not ask again,
// a new tab does), a read-only key cannot change a status and is told why, and "Forget key"
// asks again. Run by crates/cli/tests/integration/dashboard_e2e.rs:
//
//   node e2e/keys.mjs <base-url> <read-key>
//
// Environment: CHROMIUM (default /usr/bin/chromium). Exits 1 on the first failure.

import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const [base, key] = process.argv.slice(2);
if (!base || !key) {
  console.error('usage: node e2e/keys.mjs <base-url> <read-key>');
  process.exit(2);
}
const step = (s) => console.log(`e2e-keys: ${s}`);
const promptOpen = (page) => page.evaluate(() => document.getElementById('key-dialog').open);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox'],
});
const problems = [];
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));

  await page.goto(`${base}/`);
  await page.waitForSelector('#key-dialog[open]');
  assert.notEqual(await page.getAttribute('body', 'data-ready'), 'overview', 'no data without a key');
  step('the key prompt appears before any data');

  await page.fill('#key-input', 'adk_not-a-key');
  await page.press('#key-input', 'Enter');
  await page.waitForSelector('#key-error:not([hidden])');
  assert.match(await page.textContent('#key-error'), /refused/);
  assert.ok(await promptOpen(page), 'the prompt stays after a refused key');
  await page.keyboard.press('Escape');
  assert.ok(await promptOpen(page), 'Escape does not leave the page without a key');
  step('a refused key is said to be refused');

  await page.fill('#key-input', key);
  await page.press('#key-input', 'Enter');
  await page.waitForSelector('body[data-ready="overview"]');
  assert.ok(await page.isVisible('#forget-key'), '"Forget key" is offered');
  assert.ok(Number((await page.textContent('[data-tile="total"] .tile-value')).replace(/,/g, '')) > 0, 'the overview shows data');
  assert.equal(await page.evaluate(() => sessionStorage.length), 1, 'the key is kept in the tab session');
  assert.equal(await page.evaluate(() => localStorage.length), 0, 'and nowhere that outlives it');
  step('an accepted key loads the overview');

  await page.evaluate(() => { document.body.dataset.ready = ''; });
  await page.reload();
  await page.waitForSelector('body[data-ready="overview"]');
  assert.equal(await promptOpen(page), false, 'a reload does not ask again');
  step('a reload keeps the key');

  const first = await page.getAttribute('#latest a[href^="#/anomalies/"]', 'href');
  await page.evaluate((h) => { document.body.dataset.ready = ''; location.hash = h; }, first);
  await page.waitForSelector('body[data-ready="anomaly"]');
  await page.click('button[data-action="acknowledged"]');
  await page.click('#status-submit');
  await page.waitForSelector('#status-error:not([hidden])');
  assert.match(await page.textContent('#status-error'), /can only read/);
  await page.click('#status-cancel');
  assert.equal((await page.textContent('[data-fact="status"] dd')).trim(), 'open', 'the status did not change');
  step('a read-only key is told it cannot change a status');

  const other = await ctx.newPage();
  await other.goto(`${base}/`);
  await other.waitForSelector('#key-dialog[open]');
  await other.close();
  step('a new tab asks for its own key');

  await Promise.all([page.waitForEvent('load'), page.click('#forget-key')]);
  await page.waitForSelector('#key-dialog[open]');
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'the key is gone');
  step('"Forget key" forgets it');

  assert.deepEqual(problems, [], 'no script errors in the browser');
  step('all passed');
} catch (e) {
  console.error(`e2e-keys: FAILED: ${e.stack || e}`);
  if (problems.length) console.error(`browser problems:\n  ${problems.join('\n  ')}`);
  await browser.close();
  process.exit(1);
}
await browser.close();
