// The anomaly list: filters kept in the URL (so a filtered view can be shared and survives a
// reload), keyset paging with the API's cursors, acknowledge/resolve from the row, and new
// anomalies added at the top while the first page is on screen.

import { api, qs } from '../api.js';
import { emptyState, fill, fmtNum, fmtTime, go, h, severityBadge, skeleton, statusBadge } from '../dom.js';

const PAGE = 25;
const FILTERS = ['status', 'severity', 'cohort', 'device_id', 'from', 'to', 'sort'];
// Cursors of the pages before the current one, per filter set, for "Previous".
const history = new Map();

function select(name, label, options, value) {
  return h('label', {}, label,
    h('select', { name }, h('option', { value: '' }, 'any'),
      options.map((o) => h('option', { value: o, selected: o === value }, o || '(no cohort)'))));
}

/** `datetime-local` value (taken as UTC) ↔ RFC 3339. */
const toInput = (iso) => (iso ? iso.slice(0, 16) : '');
const fromInput = (v) => (v ? `${v}:00Z` : '');

export async function render(main, route, ctx) {
  const q = route.query;
  const f = Object.fromEntries(FILTERS.map((k) => [k, q.get(k) || '']));
  const cursor = q.get('cursor') || '';
  const filterKey = FILTERS.map((k) => f[k]).join('|');
  const stack = history.get(filterKey) || [];
  history.set(filterKey, stack);

  const cohortSelect = select('cohort', 'Cohort', f.cohort ? [f.cohort] : [], f.cohort);
  const form = h('form', { class: 'filters', 'aria-label': 'Filters' },
    select('status', 'Status', ['open', 'acknowledged', 'resolved'], f.status),
    select('severity', 'Severity', ['critical', 'high', 'medium', 'low'], f.severity),
    cohortSelect,
    h('label', {}, 'Device', h('input', { name: 'device_id', value: f.device_id, placeholder: 'device id', autocomplete: 'off' })),
    h('label', {}, 'From (UTC)', h('input', { name: 'from', type: 'datetime-local', value: toInput(f.from) })),
    h('label', {}, 'To (UTC)', h('input', { name: 'to', type: 'datetime-local', value: toInput(f.to) })),
    select('sort', 'Order', ['time', 'score'], f.sort),
    h('div', { class: 'filter-actions' },
      h('button', { type: 'submit', class: 'primary' }, 'Apply'),
      h('button', { type: 'button', onclick: () => go('/anomalies') }, 'Clear')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const d = new FormData(form);
    const next = {};
    for (const k of FILTERS) next[k] = d.get(k) || '';
    next.from = fromInput(next.from);
    next.to = fromInput(next.to);
    go(`/anomalies${qs(next)}`);
  });

  const body = h('tbody', {}, Array.from({ length: 10 }, () => h('tr', { class: 'placeholder' }, h('td', { colspan: 9 }, skeleton('line')))));
  const table = h('table', { class: 'anomalies' },
    h('caption', { class: 'sr-only' }, 'Anomalies; press Enter on a row to open it'),
    h('thead', {}, h('tr', {}, ['#', 'Sample time', 'Device', 'Cohort', 'Severity', 'Score', 'Status', 'Detectors', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))),
    body);
  const announce = h('p', { class: 'sr-only', 'aria-live': 'polite', id: 'list-live' });
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  fill(main, h('h1', { class: 'page-title' }, 'Anomalies'), form, announce, h('div', { class: 'table-wrap' }, table), pager);

  // Cohort names come from the counters (cheap at any size).
  api('/api/v1/dashboard/stats').then((s) => {
    const names = Object.keys(s.anomalies.by_cohort).filter((c) => c).sort();
    fill(cohortSelect.querySelector('select'), h('option', { value: '' }, 'any'),
      names.map((c) => h('option', { value: c, selected: c === f.cohort }, c)));
  }).catch(() => {});

  const query = { ...f, limit: PAGE, cursor: cursor || undefined };
  const shown = new Map(); // id → row
  const row = (a, isNew) => {
    const tr = h('tr', { tabindex: 0, class: isNew ? 'new' : null, dataset: { id: a.id, severity: a.severity, cohort: a.cohort || '', status: a.status },
      'aria-label': `Anomaly ${a.id} on ${a.device_id}, ${a.severity}, ${a.status}` },
      h('td', {}, h('a', { href: `#/anomalies/${a.id}`, tabindex: -1 }, a.id)),
      h('td', { class: 'nowrap' }, fmtTime(a.ts)),
      h('td', {}, h('a', { href: `#/devices/${encodeURIComponent(a.device_id)}`, tabindex: -1 }, a.device_id)),
      h('td', {}, a.cohort || '—'),
      h('td', {}, severityBadge(a.severity)),
      h('td', { class: 'num' }, fmtNum(a.anomaly_score)),
      h('td', { class: 'status' }, statusBadge(a.status)),
      h('td', { class: 'muted' }, (a.detectors || []).join(', ')),
      h('td', { class: 'actions' }, actions(a)));
    tr.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' && ev.target === tr) go(`/anomalies/${a.id}`); });
    tr.addEventListener('click', (ev) => { if (!ev.target.closest('a,button')) go(`/anomalies/${a.id}`); });
    return tr;
  };
  const actions = (a) => {
    const btn = (status, label) => h('button', { type: 'button', class: 'small', dataset: { action: status },
      onclick: async () => {
        const changed = await ctx.changeStatus(a, status);
        if (changed) {
          const old = shown.get(a.id);
          const fresh = row(changed, false);
          old.replaceWith(fresh);
          shown.set(a.id, fresh);
          fresh.focus();
        }
      } }, label);
    if (a.status === 'open') return [btn('acknowledged', 'Ack'), btn('resolved', 'Resolve')];
    if (a.status === 'acknowledged') return [btn('resolved', 'Resolve')];
    return [btn('open', 'Reopen')];
  };

  const page = await api(`/api/v1/anomalies${qs(query)}`);
  if (ctx.left) return;
  if (!page.items.length) {
    const filtered = FILTERS.some((k) => f[k]);
    fill(body, h('tr', {}, h('td', { colspan: 9 }, filtered
      ? emptyState('No anomalies match these filters.', 'Widen the time range or ', h('a', { href: '#/anomalies' }, 'clear the filters'), '.')
      : emptyState('No anomalies yet — start ', h('code', {}, 'anomalyd demo'), ' or POST telemetry to ', h('code', {}, '/api/v1/telemetry'), '.'))));
  } else {
    fill(body, page.items.map((a) => {
      const tr = row(a, false);
      shown.set(a.id, tr);
      return tr;
    }));
  }
  const prev = stack.length && cursor ? stack[stack.length - 1] : null;
  fill(pager,
    cursor ? h('button', { type: 'button', onclick: () => { stack.pop(); go(`/anomalies${qs({ ...f, cursor: prev === '' ? undefined : prev })}`); } }, '← Previous') : null,
    cursor ? h('button', { type: 'button', onclick: () => { stack.length = 0; go(`/anomalies${qs(f)}`); } }, 'Newest') : null,
    page.next_cursor ? h('button', { type: 'button', class: 'primary', id: 'next-page', onclick: () => { stack.push(cursor); go(`/anomalies${qs({ ...f, cursor: page.next_cursor })}`); } }, 'Next page →') : null,
    h('span', { class: 'muted' }, page.next_cursor ? `${PAGE} per page` : 'Last page'));
  document.body.dataset.ready = 'anomalies';

  // Only the first page grows: later pages are a fixed slice of the past.
  if (!cursor) {
    ctx.poll(async () => {
      const fresh = await api(`/api/v1/anomalies${qs({ ...f, limit: PAGE })}`);
      if (ctx.left) return;
      const added = fresh.items.filter((a) => !shown.has(a.id));
      if (!added.length) return;
      if (!shown.size) body.replaceChildren();
      for (const a of added.reverse()) {
        const tr = row(a, true);
        shown.set(a.id, tr);
        body.prepend(tr);
      }
      fill(announce, `${added.length} new ${added.length === 1 ? 'anomaly' : 'anomalies'}`);
    });
  }
}
