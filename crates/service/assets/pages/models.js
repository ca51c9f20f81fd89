// Models: the registry (versions, training metrics, which one scores), activation, and
// training from stored telemetry with its progress.

import { api } from '../api.js';
import { emptyState, fill, fmtInt, fmtNum, fmtTime, h, panel, skeleton } from '../dom.js';

export async function render(main, _route, ctx) {
  const table = h('div', { class: 'table-wrap' }, skeleton('fill'));
  const jobs = h('div', { class: 'jobs', 'aria-live': 'polite' });
  const msg = h('p', { class: 'error', hidden: true, role: 'alert' });
  const form = h('form', { class: 'filters train', 'aria-label': 'Train a model' },
    h('label', {}, 'Version label', h('input', { name: 'version', placeholder: 'fleet-<time>', maxlength: 100, autocomplete: 'off' })),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'activate', checked: true }), 'Activate when done'),
    h('div', { class: 'filter-actions' }, h('button', { type: 'submit', class: 'primary' }, 'Train from stored telemetry')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const d = new FormData(form);
    const body = { activate: d.get('activate') === 'on' };
    if (d.get('version')) body.version = d.get('version');
    msg.hidden = true;
    try {
      await api('/api/v1/models/train', { method: 'POST', body });
      await load();
    } catch (e) {
      msg.textContent = e.status === 403 ? 'Training needs a key with the admin scope.' : e.message;
      msg.hidden = false;
    }
  });
  fill(main, h('h1', { class: 'page-title' }, 'Models'),
    panel('models', 'Stored models', table),
    panel('train', 'Training', form, msg, jobs));

  let lastKey = '';
  const load = async () => {
    const m = await api('/api/v1/models');
    if (ctx.left) return;
    const key = JSON.stringify(m);
    if (key === lastKey) return;
    lastKey = key;
    fill(table, m.items.length
      ? h('table', {},
        h('thead', {}, h('tr', {}, ['Version', 'Stored', 'Rows', 'Samples', 'Cohort models', 'Size', 'State'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, m.items.map((x) => h('tr', { dataset: { model: x.version } },
          h('td', {}, h('strong', {}, x.version)),
          h('td', { class: 'nowrap' }, fmtTime(x.created_at)),
          h('td', { class: 'num' }, fmtInt(x.metrics?.rows)),
          h('td', { class: 'num' }, fmtInt(x.metrics?.samples)),
          h('td', { class: 'num' }, x.metrics?.cohort_models ?? (Array.isArray(x.metrics?.cohorts) ? x.metrics.cohorts.length : '—')),
          h('td', { class: 'num' }, `${fmtNum(x.size_bytes / 1024)} KiB`),
          h('td', {}, x.active ? h('span', { class: 'badge st-resolved' }, 'active')
            : h('button', { type: 'button', class: 'small', onclick: () => activate(x) }, 'Activate'))))))
      : emptyState('No stored models.', 'Train one from stored telemetry below, or start the server with ', h('code', {}, '--model bundle'), '.'));
    fill(jobs, m.training.length
      ? h('ul', { class: 'rows' }, m.training.map((j) => h('li', {},
        h('strong', {}, `#${j.id} ${j.version}`),
        h('progress', { max: 1, value: j.progress, 'aria-label': `training ${j.version}` }),
        h('span', {}, `${j.phase}${j.error ? `: ${j.error}` : ''} · ${fmtInt(j.rows)} rows · ${fmtNum(j.elapsed_secs)} s`))))
      : h('p', { class: 'muted' }, 'No training jobs since the server started.'));
  };
  async function activate(x) {
    msg.hidden = true;
    try {
      await api(`/api/v1/models/${x.id}/activate`, { method: 'POST' });
      await load();
    } catch (e) {
      msg.textContent = e.status === 403 ? 'Activating needs a key with the admin scope.' : e.message;
      msg.hidden = false;
    }
  }
  await load();
  document.body.dataset.ready = 'models';
  ctx.poll(load, 1500);
}
