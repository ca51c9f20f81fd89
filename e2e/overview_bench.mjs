// Overview load time in the browser: navigation start → the `overview-ready` mark the page
// sets once tiles, chart and lists are drawn. Cold loads use a fresh browser context each
// (empty cache); warm loads reload in the same context (assets cached, data fetched again).
//
//   node e2e/overview_bench.mjs <base-url> [loads]      → one JSON line on stdout

import { chromium } from 'playwright-core';

const [base, n = '10'] = process.argv.slice(2);
const loads = Number(n);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox'],
});
const cold = [], warm = [], api = {};
try {
  for (let i = 0; i < loads; i++) {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await ctx.newPage();
    for (const list of [cold, warm]) {
      if (list === cold) await page.goto(`${base}/`);
      else await page.reload();
      await page.waitForSelector('body[data-ready="overview"]', { timeout: 60000 });
      list.push(await page.evaluate(() => performance.getEntriesByName('overview-ready')[0].startTime));
      if (list === warm) {
        const entries = await page.evaluate(() => performance.getEntriesByType('resource')
          .filter((e) => e.name.includes('/api/v1/')).map((e) => [new URL(e.name).pathname, e.duration]));
        for (const [path, d] of entries) (api[path] ||= []).push(d);
      }
    }
    await ctx.close();
  }
} finally {
  await browser.close();
}
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const max = (xs) => Math.max(...xs);
console.log(JSON.stringify({
  loads,
  cold_ms: { median: median(cold), max: max(cold), all: cold },
  warm_ms: { median: median(warm), max: max(warm), all: warm },
  api_median_ms: Object.fromEntries(Object.entries(api).map(([k, v]) => [k, median(v)])),
}));
