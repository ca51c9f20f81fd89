// Overview: counters, anomalies over time, top cohorts and devices, open incidents and the
// latest anomalies, refreshed every few seconds. Every panel has a fixed height that the
// skeletons fill while loading, so nothing shifts when the data arrives.

import { OVERVIEW_REQUESTS, api, qs } from '../api.js';
import { countChart, responsive } from '../charts.js';
import { ago, emptyState, fill, fmtInt, fmtNum, h, panel, severityBadge, skeleton } from '../dom.js';

const TILES = [
  ['total', 'Anomalies', (s) => fmtInt(s.anomalies.total)],
  ['open', 'Open anomalies', (s) => fmtInt(s.anomalies.by_status.open || 0)],
  ['critical', 'Critical', (s) => fmtInt(s.anomalies.by_severity.critical || 0)],
  ['incidents', 'Open incidents', (s) => fmtInt(s.incidents.open)],
  ['devices', 'Devices seen', (s) => fmtInt(s.devices.seen)],
  ['ingest', 'Ingest', (s) => `${fmtNum(s.ingest.samples_per_sec)}/s`],
];

const NO_DATA = ['No anomalies yet — start ', h('code', {}, 'anomalyd demo'), ' or POST telemetry to ', h('code', {}, '/api/v1/telemetry'), '.'];

export async function render(main, _route, ctx) {
  const tiles = h('div', { class: 'tiles' }, TILES.map(([id, label]) =>
    h('div', { class: 'tile', dataset: { tile: id } }, h('div', { class: 'tile-label' }, label), h('div', { class: 'tile-value' }, skeleton('line')))));
  const model = h('p', { class: 'model-line' }, skeleton('line'));
  const chart = h('div', { class: 'chart-box', id: 'trend' }, skeleton('fill'));
  const cohorts = h('div', { class: 'list-box' }, skeleton('fill'));
  const devices = h('div', { class: 'list-box' }, skeleton('fill'));
  const incidents = h('div', { class: 'list-box' }, skeleton('fill'));
  const latest = h('div', { class: 'list-box', id: 'latest' }, skeleton('fill'));
  fill(main,
    h('h1', { class: 'page-title' }, 'Fleet overview'),
    model,
    tiles,
    panel('trend', 'Anomalies over time', chart),
    h('div', { class: 'grid-2' },
      panel('latest', 'Latest anomalies', latest),
      panel('incidents', 'Open incidents', incidents),
      panel('cohorts', 'Top cohorts', cohorts),
      panel('devices', 'Devices with most anomalies in open incidents', devices)));

  let lastTrend = '';
  const load = async () => {
    const [stats, trends, open, recent] = await Promise.all(OVERVIEW_REQUESTS.map((path) => api(path)));
    if (ctx.left) return;
    for (const [id, , value] of TILES) fill(tiles.querySelector(`[data-tile="${id}"] .tile-value`), value(stats));
    fill(model, stats.model
      ? ['Scoring with model ', h('a', { href: '#/models' }, stats.model.version), '.']
      : ['No active model: telemetry is stored but not scored. ', h('a', { href: '#/models' }, 'Train one'), '.']);
    const empty = stats.anomalies.total === 0;
    // The chart is redrawn only when its data changed (a redraw is cheap, but focus and
    // hover tooltips would flicker).
    const key = JSON.stringify(trends.buckets);
    if (key !== lastTrend) {
      lastTrend = key;
      if (empty) fill(chart, emptyState(...NO_DATA));
      else responsive(chart, (w) => countChart(fromFirstAnomaly(trends.buckets), w, chart.clientHeight || 220, `Anomalies per ${trends.bucket}`));
    }
    renderLatest(latest, recent.items, empty);
    renderCohorts(cohorts, stats.anomalies.by_cohort, empty);
    renderIncidents(incidents, devices, open.items);
  };
  await load();
  if (!ctx.left) {
    performance.mark('overview-ready');
    document.body.dataset.ready = 'overview';
  }
  ctx.poll(load);
}

/** The buckets from the first non-empty one on (at least two days of them), so a young fleet fills the chart. */
function fromFirstAnomaly(buckets) {
  const first = buckets.findIndex((b) => b.count > 0);
  return first < 0 ? buckets : buckets.slice(Math.max(0, Math.min(first, buckets.length - 48)));
}

function renderLatest(box, items, empty) {
  if (empty || !items.length) return fill(box, emptyState(...NO_DATA));
  fill(box, h('ul', { class: 'rows' }, items.map((a) =>
    h('li', { dataset: { anomalyId: a.id } },
      h('a', { href: `#/anomalies/${a.id}` }, `#${a.id} `, h('strong', {}, a.device_id)),
      severityBadge(a.severity),
      h('span', { class: 'muted' }, ago(a.ts))))),
  h('p', { class: 'more' }, h('a', { href: '#/anomalies' }, 'All anomalies →')));
}

function renderCohorts(box, byCohort, empty) {
  const rows = Object.entries(byCohort).sort((a, b) => b[1] - a[1]).slice(0, 8);
  if (empty || !rows.length) return fill(box, emptyState('No cohorts yet.', 'Devices report a cohort with their telemetry.'));
  const max = rows[0][1] || 1;
  fill(box, h('ul', { class: 'rows bars' }, rows.map(([cohort, n]) =>
    h('li', {},
      h('a', { href: `#/anomalies${qs({ cohort: cohort || undefined })}` }, cohort || '(no cohort)'),
      h('span', { class: 'meter', role: 'presentation' }, h('meter', { min: 0, max, value: n, 'aria-label': `${cohort}: ${n} anomalies` })),
      h('span', { class: 'num' }, fmtInt(n))))));
}

function renderIncidents(incBox, devBox, items) {
  if (!items.length) {
    fill(incBox, emptyState('No open incidents.', 'Anomalies of the same kind on one device are grouped into an incident.'));
    fill(devBox, emptyState('No device has an open incident.'));
    return;
  }
  fill(incBox, h('ul', { class: 'rows' }, items.slice(0, 8).map((i) =>
    h('li', {},
      h('a', { href: `#/devices/${encodeURIComponent(i.device_id)}` }, h('strong', {}, i.device_id)),
      h('a', { class: 'sig', title: `Incident #${i.id}: ${i.signature}`, href: `#/incidents/${i.id}` }, i.signature),
      severityBadge(i.severity),
      h('span', { class: 'num' }, `${fmtInt(i.anomaly_count)}×`)))));
  const byDevice = new Map();
  for (const i of items) byDevice.set(i.device_id, (byDevice.get(i.device_id) || 0) + i.anomaly_count);
  const top = [...byDevice].sort((a, b) => b[1] - a[1]).slice(0, 8);
  const max = top[0][1] || 1;
  fill(devBox, h('ul', { class: 'rows bars' }, top.map(([d, n]) =>
    h('li', {},
      h('a', { href: `#/devices/${encodeURIComponent(d)}` }, d),
      h('span', { class: 'meter', role: 'presentation' }, h('meter', { min: 0, max, value: n, 'aria-label': `${d}: ${n} anomalies` })),
      h('span', { class: 'num' }, fmtInt(n))))));
}
