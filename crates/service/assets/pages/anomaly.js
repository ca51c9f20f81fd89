// One anomaly: what was found, why (the feature attribution), the device's metrics around
// it, triage (acknowledge / resolve with a note) and troubleshooting steps on request.

import { api } from '../api.js';
import { attributionChart, metricCharts, responsive } from '../charts.js';
import { emptyState, fact, fill, fmtNum, fmtTime, h, panel, severityBadge, skeleton, statusBadge } from '../dom.js';

export async function render(main, route, ctx) {
  const id = route.parts[1];
  const head = h('div', { class: 'detail-head' }, skeleton('block'));
  const attribution = h('div', { class: 'chart-box attribution-box' }, skeleton('fill'));
  const history = h('div', { class: 'history' }, skeleton('fill'));
  const features = h('div', { class: 'features' }, skeleton('block'));
  const troubleshoot = h('div', { class: 'troubleshoot' });
  fill(main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/anomalies' }, '← Anomalies')),
    h('h1', { class: 'page-title' }, `Anomaly #${id}`),
    head,
    panel('attr', 'Why it was flagged', attribution),
    panel('hist', 'Metrics around it', history),
    h('div', { class: 'grid-2' },
      panel('feat', 'Feature values', features),
      panel('trouble', 'Troubleshooting', troubleshoot)));

  let a;
  try {
    a = await api(`/api/v1/anomalies/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e.status === 404 || e.status === 400) {
      fill(head, emptyState(`There is no anomaly #${id}.`, 'It may have been removed, or the link is wrong. ', h('a', { href: '#/anomalies' }, 'Back to the list'), '.'));
      attribution.replaceChildren(); history.replaceChildren(); features.replaceChildren();
      return;
    }
    throw e;
  }
  if (ctx.left) return;
  const showHead = (x) => {
    a = x;
    const btn = (status, label, primary) => h('button', { type: 'button', class: primary ? 'primary' : null, dataset: { action: status },
      onclick: async () => { const changed = await ctx.changeStatus(a, status); if (changed) { showHead(changed); head.querySelector('button')?.focus(); } } }, label);
    fill(head,
      h('dl', { class: 'facts' },
        fact('Status', statusBadge(a.status), 'status'),
        fact('Severity', severityBadge(a.severity)),
        fact('Device', h('a', { href: `#/devices/${encodeURIComponent(a.device_id)}` }, a.device_id)),
        fact('Cohort', a.cohort || '—'),
        fact('Sample time', fmtTime(a.ts)),
        fact('Score', `${fmtNum(a.anomaly_score)} (grade ${fmtNum(a.grade)})`),
        fact('Detectors', (a.detectors || []).join(', ') || '—'),
        fact('Model', a.model_version || '—'),
        fact('Incident', a.incident_id ? h('a', { href: `#/incidents/${a.incident_id}` }, `#${a.incident_id}`) : '—'),
        fact('Note', a.note || '—', 'note'),
        fact('Updated', fmtTime(a.updated_at))),
      h('div', { class: 'actions' },
        a.status === 'open' ? btn('acknowledged', 'Acknowledge', true) : null,
        a.status !== 'resolved' ? btn('resolved', 'Resolve', a.status !== 'open') : btn('open', 'Reopen', false)));
  };
  showHead(a);

  const expl = Array.isArray(a.explanation) ? a.explanation : [];
  if (expl.length) responsive(attribution, (w) => attributionChart(expl, w));
  else fill(attribution, emptyState('No model attribution.', `Only rules fired (${(a.detectors || []).join(', ')}): the rule names say which metric crossed its limit.`));

  const rows = Object.entries(a.features || {});
  fill(features, rows.length
    ? h('table', { class: 'kv' }, h('tbody', {}, rows.map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', { class: 'num' }, fmtNum(v))))))
    : emptyState('No feature values were stored with this anomaly.'));

  fill(troubleshoot,
    h('p', {}, 'Suggested steps for this kind of anomaly, from the troubleshooting assistant.'),
    h('button', { type: 'button', id: 'troubleshoot', onclick: (ev) => ask(ev.currentTarget) }, 'Get troubleshooting steps'),
    h('div', { class: 'answer', 'aria-live': 'polite' }));
  async function ask(button) {
    const out = troubleshoot.querySelector('.answer');
    button.disabled = true;
    fill(out, h('p', { class: 'muted' }, 'Asking…'));
    try {
      const t = await api(`/api/v1/anomalies/${a.id}/troubleshoot`, { method: 'POST' });
      fill(out,
        h('p', {}, t.summary),
        h('ol', {}, (t.steps || []).map((s) => h('li', {}, s))),
        h('p', { class: 'muted' }, `Source: ${t.source === 'llm' ? 'language model' : 'built-in rules'}${t.cached ? ' (cached)' : ''}` +
          (t.fallback_reason ? `; ${t.fallback_reason}` : '')));
    } catch (e) {
      fill(out, h('p', { class: 'error' }, e.status === 404 || e.status === 405
        ? 'This server has no troubleshooting assistant yet (it answers 404 for /troubleshoot). Upgrade anomalyd to get suggested steps.'
        : `No answer: ${e.message}`));
    } finally {
      button.disabled = false;
    }
  }

  // The device's latest samples; the anomalies of the device are marked on them.
  try {
    const d = await api(`/api/v1/devices/${encodeURIComponent(a.device_id)}`);
    if (ctx.left) return;
    const involved = new Set(expl.map((x) => x.feature.split('.')[0]));
    drawHistory(history, d, { only: involved, focus: Date.parse(a.ts) });
  } catch (e) {
    fill(history, emptyState(`The device's samples could not be loaded: ${e.message}`));
  }
  document.body.dataset.ready = 'anomaly';
}

/** One small line chart per metric of `device.recent_metrics` (only `only`'s metrics when any of them is there). */
export function drawHistory(box, device, { only = new Set(), focus = null } = {}) {
  const samples = device.recent_metrics || [];
  if (!samples.length) return fill(box, emptyState('No samples stored for this device.'));
  const names = [...new Set(samples.flatMap((s) => Object.keys(s.metrics || {})))].sort();
  const picked = names.filter((n) => only.has(n));
  const shown = (picked.length ? picked : names).slice(0, 6);
  const t0 = Date.parse(samples[samples.length - 1].ts), t1 = Date.parse(samples[0].ts);
  const marks = (device.anomalies || []).map((x) => Date.parse(x.ts)).filter((t) => t >= t0 && t <= t1);
  const inRange = focus === null || (focus >= t0 && focus <= t1);
  fill(box,
    h('p', { class: 'muted' }, `Latest ${samples.length} samples of ${device.id}, ${fmtTime(samples[samples.length - 1].ts)} – ${fmtTime(samples[0].ts)}; red lines are anomalies.` +
      (inRange ? '' : ' This anomaly is older than these samples.')),
    metricCharts(samples, shown, { marks, focus: inRange ? focus : null }));
}
