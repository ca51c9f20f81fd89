// The dashboard shell: hash routing (`#/`, `#/anomalies`, `#/anomalies/42`, `#/incidents/7`,
// `#/devices/x`, `#/models`), one polling loop per page (polling rather than server-sent
// events because EventSource cannot send the Authorization header), the error banner and the
// status dialog.

import { api, forgetKey, storedKey } from './api.js';
import { fill, h, route } from './dom.js';
import * as overview from './pages/overview.js';

const main = document.getElementById('main');
const banner = document.getElementById('banner');
const live = document.getElementById('live');
let current = null; // { timers, aborted } of the page on screen

/** Seconds between refreshes of live pages. */
export const POLL_MS = 3000;

function showError(e) {
  if (e && e.name === 'AbortError') return;
  const text = e && e.status === 0
    ? 'Cannot reach the anomalyd server. Is it still running? The page retries on its own.'
    : e && e.status === 403
      ? `This API key may not do that: ${e.message}`
      : `Something went wrong: ${e ? e.message : 'unknown error'}`;
  fill(banner, text);
  banner.hidden = false;
}

function clearError() {
  banner.hidden = true;
}

/** What a page gets to work with; everything it registers ends when the page is left. */
function context() {
  const page = { timers: [], left: false };
  current = page;
  return {
    get left() { return page.left; },
    /** Runs `fn` every `ms` while the page is on screen and the tab visible. */
    poll(fn, ms = POLL_MS) {
      let busy = false;
      const tick = async () => {
        if (busy || document.hidden || page.left) return;
        busy = true;
        try { await fn(); clearError(); setLive(true); } catch (e) { showError(e); setLive(false); } finally { busy = false; }
      };
      page.timers.push(setInterval(tick, ms));
    },
    error: showError,
    ok: clearError,
    changeStatus,
  };
}

function setLive(on) {
  live.textContent = on ? 'live' : '';
  live.classList.toggle('on', on);
}

/** Asks for a note, then PATCHes the anomaly to `status`; resolves to the changed anomaly or null. */
function changeStatus(a, status) {
  const dialog = document.getElementById('status-dialog');
  const form = document.getElementById('status-form');
  const note = document.getElementById('status-note');
  const err = document.getElementById('status-error');
  const verb = { acknowledged: 'Acknowledge', resolved: 'Resolve', open: 'Reopen' }[status] || status;
  fill(document.getElementById('status-title'), `${verb} anomaly #${a.id}`);
  fill(document.getElementById('status-submit'), verb);
  note.value = a.note || '';
  err.hidden = true;
  return new Promise((resolve) => {
    const finish = (v) => {
      form.removeEventListener('submit', submit);
      document.getElementById('status-cancel').removeEventListener('click', cancel);
      dialog.removeEventListener('cancel', cancel);
      if (dialog.open) dialog.close();
      resolve(v);
    };
    const cancel = (ev) => { ev.preventDefault(); finish(null); };
    const submit = async (ev) => {
      ev.preventDefault();
      try {
        const body = { status };
        if (note.value.trim()) body.note = note.value.trim();
        finish(await api(`/api/v1/anomalies/${a.id}`, { method: 'PATCH', body }));
      } catch (e) {
        err.textContent = e.status === 403
          ? 'This API key can only read. Use a key with the write scope to change statuses.'
          : e.message;
        err.hidden = false;
      }
    };
    form.addEventListener('submit', submit);
    document.getElementById('status-cancel').addEventListener('click', cancel);
    dialog.addEventListener('cancel', cancel);
    dialog.showModal();
    note.focus();
  });
}

// The overview is part of the first load; the other pages are imported when first opened
// (or once the browser is idle), so a cold load fetches only the modules it draws.
const PAGES = {
  '': async () => overview,
  anomalies: () => import('./pages/anomalies.js'),
  anomaly: () => import('./pages/anomaly.js'),
  incident: () => import('./pages/incident.js'),
  devices: () => import('./pages/device.js'),
  models: () => import('./pages/models.js'),
};

async function show() {
  if (current) {
    current.left = true;
    current.timers.forEach(clearInterval);
  }
  setLive(false);
  clearError();
  const r = route();
  const detail = { anomalies: 'anomaly', incidents: 'incident' }[r.parts[0]];
  const name = detail && r.parts[1] ? detail : r.parts[0] || '';
  const load = Object.hasOwn(PAGES, name) ? PAGES[name] : null;
  for (const a of document.querySelectorAll('[data-nav]')) {
    const active = a.dataset.nav === (r.parts[0] || 'overview');
    if (active) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const ctx = context();
  if (!load) {
    fill(main, h('div', { class: 'empty' }, h('p', { class: 'empty-title' }, 'No such page'), h('p', {}, h('a', { href: '#/' }, 'Back to the overview'))));
    return;
  }
  try {
    const page = await load();
    if (!ctx.left) await page.render(main, r, ctx);
  } catch (e) {
    showError(e);
  }
}

/** Imports every page once the first one is drawn, so later navigation does not wait. */
function warmPages() {
  const all = () => Object.values(PAGES).forEach((load) => load().catch(() => {}));
  if ('requestIdleCallback' in window) requestIdleCallback(all, { timeout: 2000 });
  else setTimeout(all, 500);
}

let lastPath = null;
window.addEventListener('hashchange', () => {
  const path = route().parts.join('/');
  // Filters change only the query part; the page keeps focus where it was.
  const moved = path !== lastPath;
  lastPath = path;
  show().then(() => { if (moved) main.focus({ preventScroll: true }); });
});
document.addEventListener('anomalyd:key', () => {
  document.getElementById('forget-key').hidden = false;
});
document.getElementById('forget-key').addEventListener('click', () => {
  forgetKey();
  location.reload();
});
document.getElementById('forget-key').hidden = !storedKey();
lastPath = route().parts.join('/');
show().then(warmPages);
// Exposed for the end-to-end tests and the curious.
window.anomalyd = { api };
