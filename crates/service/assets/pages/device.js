// A device: its metrics with anomalies marked, the features the pipeline computed from its
// latest samples, and its latest anomalies; `#/devices` lists the fleet.

import { api, qs } from '../api.js';
import { emptyState, fill, fmtNum, fmtTime, go, h, panel, severityBadge, skeleton, statusBadge } from '../dom.js';
import { drawHistory } from './anomaly.js';

export async function render(main, route, ctx) {
  const id = route.parts[1];
  if (!id) return list(main, route, ctx);
  const head = h('div', { class: 'detail-head' }, skeleton('block'));
  const history = h('div', { class: 'history' }, skeleton('fill'));
  const features = h('div', { class: 'features' }, skeleton('block'));
  const anomalies = h('div', { class: 'list-box' }, skeleton('fill'));
  fill(main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/devices' }, '← Devices')),
    h('h1', { class: 'page-title' }, `Device ${id}`),
    head,
    panel('hist', 'Metric history', history),
    h('div', { class: 'grid-2' },
      panel('an', 'Latest anomalies', anomalies),
      panel('feat', 'Current features', features)));
  let lastSeen = null;
  const load = async () => {
    let d;
    try {
      d = await api(`/api/v1/devices/${encodeURIComponent(id)}`);
    } catch (e) {
      if (e.status === 404) {
        fill(head, emptyState(`No device ${id} has sent telemetry.`, 'Devices appear once they POST to /api/v1/telemetry. ', h('a', { href: '#/devices' }, 'All devices'), '.'));
        history.replaceChildren(); features.replaceChildren(); anomalies.replaceChildren();
        return;
      }
      throw e;
    }
    if (ctx.left || d.last_seen === lastSeen) return;
    lastSeen = d.last_seen;
    fill(head, h('dl', { class: 'facts' },
      h('div', {}, h('dt', {}, 'Cohort'), h('dd', {}, d.cohort ? h('a', { href: `#/anomalies${qs({ cohort: d.cohort })}` }, d.cohort) : '—')),
      h('div', {}, h('dt', {}, 'Labels'), h('dd', {}, Object.entries(d.labels || {}).map(([k, v]) => `${k}=${v}`).join(', ') || '—')),
      h('div', {}, h('dt', {}, 'First seen'), h('dd', {}, fmtTime(d.first_seen))),
      h('div', {}, h('dt', {}, 'Last seen'), h('dd', {}, fmtTime(d.last_seen))),
      h('div', {}, h('dt', {}, 'Anomalies'), h('dd', {}, h('a', { href: `#/anomalies${qs({ device_id: d.id })}` }, 'all of this device')))));
    drawHistory(history, d);
    const cf = d.current_features;
    fill(features, cf
      ? [h('p', { class: 'muted' }, `At ${fmtTime(cf.ts)}, model ${cf.model_version}`),
        h('table', { class: 'kv' }, h('tbody', {}, Object.entries(cf.values).map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', { class: 'num' }, fmtNum(v))))))]
      : emptyState('No current features.', 'They appear once the active model has scored this device\'s telemetry since the server started.'));
    fill(anomalies, d.anomalies.length
      ? h('ul', { class: 'rows' }, d.anomalies.map((a) => h('li', {},
        h('a', { href: `#/anomalies/${a.id}` }, `#${a.id}`), h('span', { class: 'nowrap' }, fmtTime(a.ts)), severityBadge(a.severity), statusBadge(a.status))))
      : emptyState('No anomalies on this device.'));
  };
  await load();
  document.body.dataset.ready = 'device';
  ctx.poll(load, 5000);
}

async function list(main, route, ctx) {
  const cursor = route.query.get('cursor') || '';
  const body = h('tbody', {}, Array.from({ length: 10 }, () => h('tr', { class: 'placeholder' }, h('td', { colspan: 4 }, skeleton('line')))));
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  fill(main, h('h1', { class: 'page-title' }, 'Devices'),
    h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Device', 'Cohort', 'First seen', 'Last seen'].map((c) => h('th', { scope: 'col' }, c)))), body)),
    pager);
  const page = await api(`/api/v1/devices${qs({ limit: 50, cursor: cursor || undefined })}`);
  if (ctx.left) return;
  fill(body, page.items.length ? page.items.map((d) => {
    const tr = h('tr', { tabindex: 0 },
      h('td', {}, h('a', { href: `#/devices/${encodeURIComponent(d.id)}`, tabindex: -1 }, d.id)),
      h('td', {}, d.cohort || '—'), h('td', {}, fmtTime(d.first_seen)), h('td', {}, fmtTime(d.last_seen)));
    tr.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') go(`/devices/${encodeURIComponent(d.id)}`); });
    return tr;
  }) : h('tr', {}, h('td', { colspan: 4 }, emptyState('No devices yet — start ', h('code', {}, 'anomalyd demo'), ' or POST telemetry to ', h('code', {}, '/api/v1/telemetry'), '.'))));
  fill(pager, page.next_cursor ? h('a', { class: 'button primary', href: `#/devices${qs({ cursor: page.next_cursor })}` }, 'Next page →') : h('span', { class: 'muted' }, 'Last page'));
}
