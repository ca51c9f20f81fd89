// Charts as plain SVG built with the DOM: a bar chart of counts over time, horizontal
// attribution bars with the normal range, and line charts with anomalies marked. Sizes are
// fixed by the caller's container (CSS reserves the height), so nothing moves as data lands.

import { h, fmtNum, fmtTime, fmtInt } from './dom.js';

const PAD = { l: 44, r: 12, t: 10, b: 26 };

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function shortDate(iso, withTime) {
  const d = new Date(iso);
  const date = d.toISOString().slice(5, 10);
  return withTime ? `${date} ${d.toISOString().slice(11, 16)}` : date;
}

/** Redraws `draw(width)` into `box` now and whenever its width changes. */
export function responsive(box, draw) {
  let last = 0;
  const render = () => {
    const w = Math.max(240, Math.floor(box.clientWidth));
    if (w === last) return;
    last = w;
    box.replaceChildren(draw(w));
  };
  render();
  if ('ResizeObserver' in window) new ResizeObserver(render).observe(box);
}

/**
 * One small line chart per metric in `names`, from `samples` ({ts, metrics}; ts in Unix ms or
 * RFC 3339), with the times in `marks` drawn as lines and `focus` as the highlighted one.
 */
export function metricCharts(samples, names, { marks = [], focus = null } = {}) {
  const time = (ts) => (typeof ts === 'number' ? ts : Date.parse(ts));
  return h('div', { class: 'small-multiples' }, names.map((name) => {
    const points = samples.map((s) => ({ t: time(s.ts), v: (s.metrics || {})[name] })).filter((p) => typeof p.v === 'number');
    const cell = h('div', { class: 'chart-box small' });
    // Drawn once the cell is in the page and has a width.
    queueMicrotask(() => responsive(cell, (w) => lineChart(points, { width: w, height: 140, label: name, marks, focus })));
    return h('figure', {}, h('figcaption', {}, name), cell);
  }));
}

/** Bars of `buckets` ({start, count, mean_score}) `width` × `height` pixels. */
export function countChart(buckets, width, height, label) {
  const max = niceMax(Math.max(0, ...buckets.map((b) => b.count)));
  const iw = width - PAD.l - PAD.r;
  const ih = height - PAD.t - PAD.b;
  const bw = iw / Math.max(1, buckets.length);
  const total = buckets.reduce((s, b) => s + b.count, 0);
  const peak = buckets.reduce((p, b) => (b.count > (p ? p.count : -1) ? b : p), null);
  const summary = buckets.length
    ? `${label}: ${fmtInt(total)} anomalies from ${fmtTime(buckets[0].start)} to ${fmtTime(buckets[buckets.length - 1].start)}` +
      (peak && peak.count ? `, peak ${fmtInt(peak.count)} at ${fmtTime(peak.start)}` : '')
    : `${label}: no data`;
  const svg = h('svg', { class: 'chart', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': summary });
  for (const f of [0, 0.5, 1]) {
    const y = PAD.t + ih - f * ih;
    svg.append(h('line', { class: 'grid', x1: PAD.l, x2: width - PAD.r, y1: y, y2: y }));
    svg.append(h('text', { class: 'axis', x: PAD.l - 6, y: y + 4, 'text-anchor': 'end' }, fmtNum(max * f)));
  }
  // All bars are one path, and one highlight and one tooltip follow the pointer or the
  // arrow keys: a month of hourly buckets stays a handful of elements instead of 1,440,
  // which is most of the overview's layout work.
  let d = '';
  buckets.forEach((b, i) => {
    if (!b.count) return;
    const bh = Math.max(1, (b.count / max) * ih);
    const w = Math.max(1, bw - (bw > 3 ? 1 : 0));
    d += `M${(PAD.l + i * bw).toFixed(1)} ${(PAD.t + ih).toFixed(1)}v${(-bh).toFixed(1)}h${w.toFixed(1)}v${bh.toFixed(1)}z`;
  });
  svg.append(h('path', { class: 'bars', d }));
  const hi = h('rect', { class: 'hover', x: 0, y: PAD.t, width: Math.max(1, bw), height: ih, visibility: 'hidden' });
  svg.append(hi);
  if (buckets.length) {
    const spanH = (new Date(buckets[buckets.length - 1].start) - new Date(buckets[0].start)) / 3.6e6;
    const ticks = width < 500 ? 3 : 5;
    for (let k = 0; k < ticks; k++) {
      const i = Math.round((k * (buckets.length - 1)) / (ticks - 1));
      const x = PAD.l + i * bw + bw / 2;
      const anchor = k === 0 ? 'start' : k === ticks - 1 ? 'end' : 'middle';
      svg.append(h('text', { class: 'axis', x, y: height - 8, 'text-anchor': anchor }, shortDate(buckets[i].start, spanH <= 72)));
    }
  }
  const tip = h('div', { class: 'chart-tip', role: 'status', 'aria-live': 'polite', hidden: true });
  let at = -1;
  const point = (i) => {
    at = Math.max(0, Math.min(buckets.length - 1, i));
    const b = buckets[at];
    hi.setAttribute('x', PAD.l + at * bw);
    hi.setAttribute('visibility', 'visible');
    tip.textContent = `${fmtTime(b.start)}: ${fmtInt(b.count)} anomalies` + (b.mean_score ? `, mean score ${fmtNum(b.mean_score)}` : '');
    tip.hidden = false;
    const x = PAD.l + (at + 0.5) * bw;
    tip.style.left = `${Math.min(Math.max(0, x - 90), width - 180)}px`;
  };
  const leave = () => { at = -1; hi.setAttribute('visibility', 'hidden'); tip.hidden = true; };
  if (buckets.length) {
    svg.setAttribute('tabindex', '0');
    svg.addEventListener('pointermove', (ev) => {
      const r = svg.getBoundingClientRect();
      const i = Math.floor((ev.clientX - r.left - PAD.l) / bw);
      if (i < 0 || i >= buckets.length) leave(); else point(i);
    });
    svg.addEventListener('pointerleave', leave);
    svg.addEventListener('blur', leave);
    svg.addEventListener('keydown', (ev) => {
      const step = { ArrowLeft: -1, ArrowRight: 1, Home: -Infinity, End: Infinity }[ev.key];
      if (step === undefined) return;
      ev.preventDefault();
      const from = at < 0 ? (step > 0 ? -1 : buckets.length) : at;
      point(Number.isFinite(step) ? from + step : step < 0 ? 0 : buckets.length - 1);
    });
  }
  return h('div', { class: 'chart-wrap' }, svg, tip);
}

/**
 * One row per attribution ({feature, weight, direction, value, normal_low, normal_high}):
 * the share of the score as a bar, the direction as an arrow, and the value against the
 * feature's normal (p05–p95) range as a strip.
 */
export function attributionChart(items, width) {
  const rowH = 46;
  const labelW = Math.min(220, Math.floor(width * 0.38));
  const barW = Math.max(60, Math.floor((width - labelW - 24) * 0.45));
  const stripX = labelW + barW + 24;
  const stripW = Math.max(60, width - stripX - 8);
  const height = items.length * rowH + 22;
  const svg = h('svg', {
    class: 'chart attribution', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': 'Feature attribution: ' + items.map((a) => `${a.feature} ${Math.round(a.weight * 100)} % ${a.direction} normal`).join('; '),
  });
  svg.append(h('text', { class: 'axis', x: labelW, y: 12 }, 'share of the score'));
  svg.append(h('text', { class: 'axis', x: stripX, y: 12 }, stripW < 200 ? 'value (normal)' : 'value vs normal range (p05–p95)'));
  items.forEach((a, i) => {
    const y = 22 + i * rowH;
    const dir = a.direction || 'within';
    const arrow = dir === 'above' ? '▲' : dir === 'below' ? '▼' : '•';
    svg.append(h('text', { class: 'label', x: labelW - 8, y: y + 18, 'text-anchor': 'end' }, `${arrow} ${a.feature}`));
    svg.append(h('rect', { class: 'track', x: labelW, y: y + 6, width: barW, height: 16, rx: 3 }));
    svg.append(h('rect', { class: `bar dir-${dir}`, x: labelW, y: y + 6, width: Math.max(2, barW * Math.min(1, a.weight)), height: 16, rx: 3 },
      h('title', {}, `${a.feature}: ${Math.round(a.weight * 100)} % of the isolation, ${dir} the training median`)));
    svg.append(h('text', { class: 'value', x: labelW + 4, y: y + 38 }, `${Math.round(a.weight * 100)} % · ${dir}`));
    // The strip spans the normal range and the value with some margin.
    const lo = a.normal_low, hi = a.normal_high, v = a.value;
    const known = [lo, hi, v].filter((x) => x !== null && x !== undefined && Number.isFinite(x));
    if (known.length) {
      let min = Math.min(...known), max = Math.max(...known);
      const pad = (max - min || Math.abs(max) || 1) * 0.15;
      min -= pad; max += pad;
      const sx = (x) => stripX + ((x - min) / (max - min)) * stripW;
      svg.append(h('line', { class: 'grid', x1: stripX, x2: stripX + stripW, y1: y + 14, y2: y + 14 }));
      if (lo !== null && hi !== null && lo !== undefined && hi !== undefined) {
        svg.append(h('rect', { class: 'normal', x: sx(lo), y: y + 6, width: Math.max(2, sx(hi) - sx(lo)), height: 16, rx: 3 },
          h('title', {}, `normal ${fmtNum(lo)} – ${fmtNum(hi)}`)));
      }
      if (v !== null && v !== undefined) {
        svg.append(h('circle', { class: `marker dir-${dir}`, cx: sx(v), cy: y + 14, r: 6 }, h('title', {}, `value ${fmtNum(v)}`)));
      }
      svg.append(h('text', { class: 'value', x: stripX, y: y + 38 },
        stripW < 200 ? `${fmtNum(v)} (${fmtNum(lo)}–${fmtNum(hi)})` : `value ${fmtNum(v)} · normal ${fmtNum(lo)} – ${fmtNum(hi)}`));
    }
  });
  return svg;
}

/**
 * A line of `points` ({t: ms, v}) with vertical marks at `marks` (ms; the anomalies) and
 * `focus` (ms) drawn stronger.
 */
export function lineChart(points, { width, height, label, marks = [], focus = null }) {
  const iw = width - PAD.l - PAD.r;
  const ih = height - PAD.t - PAD.b;
  const ts = points.map((p) => p.t).concat(marks, focus === null ? [] : [focus]);
  const t0 = Math.min(...ts), t1 = Math.max(...ts);
  const vals = points.map((p) => p.v).filter(Number.isFinite);
  let lo = Math.min(...vals), hi = Math.max(...vals);
  if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
  if (hi === lo) { hi += 1; lo -= 1; }
  const pad = (hi - lo) * 0.1; lo -= pad; hi += pad;
  const sx = (t) => PAD.l + (t1 === t0 ? iw / 2 : ((t - t0) / (t1 - t0)) * iw);
  const sy = (v) => PAD.t + ih - ((v - lo) / (hi - lo)) * ih;
  const svg = h('svg', { class: 'chart line', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': `${label}: ${points.length} samples from ${fmtNum(Math.min(...vals))} to ${fmtNum(Math.max(...vals))}` +
      (marks.length ? `, ${marks.length} anomalies marked` : '') });
  for (const f of [0, 1]) {
    const v = lo + f * (hi - lo);
    svg.append(h('line', { class: 'grid', x1: PAD.l, x2: width - PAD.r, y1: sy(v), y2: sy(v) }));
    svg.append(h('text', { class: 'axis', x: PAD.l - 6, y: sy(v) + 4, 'text-anchor': 'end' }, fmtNum(v)));
  }
  for (const m of marks) {
    svg.append(h('line', { class: m === focus ? 'mark focus' : 'mark', x1: sx(m), x2: sx(m), y1: PAD.t, y2: PAD.t + ih },
      h('title', {}, `anomaly at ${fmtTime(new Date(m).toISOString())}`)));
  }
  if (focus !== null && !marks.includes(focus)) {
    svg.append(h('line', { class: 'mark focus', x1: sx(focus), x2: sx(focus), y1: PAD.t, y2: PAD.t + ih }));
  }
  const sorted = points.filter((p) => Number.isFinite(p.v)).sort((a, b) => a.t - b.t);
  if (sorted.length) {
    svg.append(h('polyline', { class: 'series', points: sorted.map((p) => `${sx(p.t).toFixed(1)},${sy(p.v).toFixed(1)}`).join(' ') }));
    for (const p of sorted) {
      if (marks.includes(p.t)) svg.append(h('circle', { class: 'marker dir-above', cx: sx(p.t), cy: sy(p.v), r: 3.5 }));
    }
    svg.append(h('text', { class: 'axis', x: PAD.l, y: height - 8 }, shortDate(new Date(t0).toISOString(), true)));
    svg.append(h('text', { class: 'axis', x: width - PAD.r, y: height - 8, 'text-anchor': 'end' }, shortDate(new Date(t1).toISOString(), true)));
  }
  return svg;
}
