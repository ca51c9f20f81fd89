// Small DOM helpers: elements from tag + attributes + children (text is always escaped, as
// nothing here builds HTML from strings), and the formats every page shares.

/** Creates `tag` with attributes (`on*` functions become listeners) and children. */
export function h(tag, attrs = {}, ...children) {
  const svg = SVG_TAGS.has(tag);
  const el = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.setAttribute('class', v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

const SVG_TAGS = new Set(['svg', 'g', 'rect', 'line', 'path', 'polyline', 'circle', 'text', 'title', 'desc']);

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** A titled page section: `<section class="panel panel-{id}">` labelled by its `<h2 id="h-{id}">`. */
export function panel(id, title, ...body) {
  return h('section', { class: `panel panel-${id}`, 'aria-labelledby': `h-${id}` }, h('h2', { id: `h-${id}` }, title), ...body);
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** "2026-11-26 10:42 UTC" from an RFC 3339 time. */
export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
}

/** "3 min ago" style relative time. */
export function ago(iso) {
  const s = (Date.now() - new Date(iso).getTime()) / 1000;
  if (!Number.isFinite(s)) return '';
  if (s < 0) return 'in the future';
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

const nf = new Intl.NumberFormat('en');
/** Integer with thousands separators. */
export const fmtInt = (n) => (n === null || n === undefined ? '—' : nf.format(n));

/** A number with about 3 significant digits. */
export function fmtNum(x) {
  if (x === null || x === undefined || !Number.isFinite(x)) return '—';
  const a = Math.abs(x);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return x.toExponential(2);
  return Number(x.toPrecision(a >= 100 ? 4 : 3)).toString();
}

/** The severity as a badge. */
export const severityBadge = (s) => h('span', { class: `badge sev-${s}` }, s);
/** The triage status as a badge. */
export const statusBadge = (s) => h('span', { class: `badge st-${s}` }, s);

/** One `label: value` pair of a detail page's facts list (`data-fact=key` when given). */
export function fact(label, value, key) {
  return h('div', { dataset: key ? { fact: key } : {} }, h('dt', {}, label), h('dd', {}, value));
}

/** A block that tells what is missing and what to do about it. */
export function emptyState(title, ...hint) {
  return h('div', { class: 'empty', role: 'status' }, h('p', { class: 'empty-title' }, title), hint.length ? h('p', {}, ...hint) : null);
}

/** A placeholder of fixed height shown while data loads (keeps the layout still). */
export const skeleton = (cls = '') => h('div', { class: `skeleton ${cls}`, 'aria-hidden': 'true' });

/** Parses the hash route: `#/anomalies/42?x=1` → { parts: ['anomalies','42'], query }. */
export function route() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, qs = ''] = raw.split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(qs) };
}

/** Navigates to a hash route. */
export function go(path) {
  location.hash = path;
}
