// One incident: the anomalies of one kind on one device, grouped. Its evidence is the
// snapshot taken when it opened (the first anomaly's attribution and the device's samples of
// the metrics involved just before it), so it shows the state at the time even after the
// device's data has moved on. Webhook messages link here (`#/incidents/{id}`).

import { api } from '../api.js';
import { attributionChart, metricCharts, responsive } from '../charts.js';
import { emptyState, fact, fill, fmtInt, fmtNum, fmtTime, h, panel, severityBadge, skeleton, statusBadge } from '../dom.js';

const VERBS = { acknowledged: 'Acknowledge', resolved: 'Resolve', open: 'Reopen' };

export async function render(main, route, ctx) {
  const id = route.parts[1];
  const head = h('div', { class: 'detail-head' }, skeleton('block'));
  const attribution = h('div', { class: 'chart-box attribution-box' }, skeleton('fill'));
  const evidence = h('div', { class: 'history' }, skeleton('fill'));
  const members = h('div', { class: 'list-box' }, skeleton('fill'));
  fill(main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/' }, '← Overview')),
    h('h1', { class: 'page-title' }, `Incident #${id}`),
    head,
    panel('attr', 'Why it opened', attribution),
    panel('ev', 'Samples before it opened', evidence),
    panel('members', 'Its anomalies', members));

  let inc;
  try {
    inc = await api(`/api/v1/incidents/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e.status === 404 || e.status === 400) {
      fill(head, emptyState(`There is no incident #${id}.`, 'The link may be wrong. ', h('a', { href: '#/' }, 'Back to the overview'), '.'));
      attribution.replaceChildren(); evidence.replaceChildren(); members.replaceChildren();
      return;
    }
    throw e;
  }
  if (ctx.left) return;

  const showHead = (x) => {
    inc = { ...inc, ...x };
    const error = h('p', { class: 'error', hidden: true });
    const btn = (status, primary) => h('button', { type: 'button', class: primary ? 'primary' : null, dataset: { action: status },
      onclick: async () => {
        try {
          showHead(await api(`/api/v1/incidents/${inc.id}`, { method: 'PATCH', body: { status } }));
          head.querySelector('button')?.focus();
        } catch (e) {
          error.textContent = e.status === 403 ? 'This API key can only read. Use a key with the write scope to change statuses.' : e.message;
          error.hidden = false;
        }
      } }, VERBS[status]);
    fill(head,
      h('dl', { class: 'facts' },
        fact('Status', statusBadge(inc.status), 'status'),
        fact('Severity', severityBadge(inc.severity)),
        fact('Device', h('a', { href: `#/devices/${encodeURIComponent(inc.device_id)}` }, inc.device_id)),
        fact('Signature', inc.signature),
        fact('Opened', fmtTime(inc.opened_at)),
        fact('Last seen', fmtTime(inc.last_seen)),
        fact('Anomalies', fmtInt(inc.anomaly_count)),
        fact('Key', h('code', {}, inc.incident_key))),
      h('div', { class: 'actions' },
        inc.status === 'open' ? btn('acknowledged', true) : null,
        inc.status !== 'resolved' ? btn('resolved', inc.status !== 'open') : btn('open', false)),
      error);
  };
  showHead(inc);

  const ev = inc.evidence || {};
  const expl = Array.isArray(ev.explanation) ? ev.explanation : [];
  if (expl.length) responsive(attribution, (w) => attributionChart(expl, w));
  else fill(attribution, emptyState('No model attribution in the evidence.', `Detectors: ${(ev.detectors || []).join(', ') || 'none recorded'}.`));

  drawEvidence(evidence, ev);

  const ids = inc.anomaly_ids || [];
  fill(members, ids.length
    ? [h('ul', { class: 'rows' }, ids.map((a) => h('li', {}, h('a', { href: `#/anomalies/${a}` }, `Anomaly #${a}`)))),
      inc.anomaly_count > ids.length ? h('p', { class: 'muted' }, `The latest ${ids.length} of ${fmtInt(inc.anomaly_count)}.`) : null]
    : emptyState('No anomalies are linked to this incident.'));
  document.body.dataset.ready = 'incident';
}

/** One line chart per metric of the evidence's samples, the opening anomaly marked. */
function drawEvidence(box, ev) {
  const samples = Array.isArray(ev.recent_samples) ? ev.recent_samples : [];
  if (!samples.length) return fill(box, emptyState('The evidence holds no samples.', 'The device had sent none of the metrics involved before the incident opened.'));
  const names = (ev.metrics && ev.metrics.length ? ev.metrics : [...new Set(samples.flatMap((s) => Object.keys(s.metrics || {})))]).slice(0, 6);
  const at = typeof ev.ts === 'number' ? ev.ts : Date.parse(ev.ts);
  const values = Object.entries(ev.features || {});
  fill(box,
    h('p', { class: 'muted' }, `${samples.length} sample${samples.length === 1 ? '' : 's'} up to the anomaly at ${fmtTime(new Date(at).toISOString())} (red line), score ${fmtNum(ev.anomaly_score)}.`),
    metricCharts(samples, names, Number.isFinite(at) ? { marks: [at], focus: at } : {}),
    values.length
      ? h('table', { class: 'kv' }, h('caption', {}, 'Feature values when it opened'),
        h('tbody', {}, values.map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', { class: 'num' }, fmtNum(v))))))
      : null);
}
