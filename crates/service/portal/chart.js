// Charts of figures per time bucket, drawn as SVG: stacked bars (deliveries
// by outcome, events ingested) and lines (latency p50/p95). Both share one
// frame: the plot area, the value grid and the time axis.

import { h, localTime } from './dom.js';

/** Deliveries by outcome, bottom to top: [key in a bucket, legend name]. */
export const OUTCOMES = [
  ['delivered', 'Delivered'],
  ['failed', 'Failed'],
  ['retrying', 'Retrying'],
  ['pending', 'Pending'],
];

const WIDTH = 720;
const HEIGHT = 220;
const LEFT = 48;
const BOTTOM = 24;
const TOP = 10;

/** What one bucket spans, in words: "hour", "6 hours", "day". */
export function bucketSpan(bucketSeconds) {
  if (bucketSeconds >= 86400) return 'day';
  return bucketSeconds === 3600 ? 'hour' : `${bucketSeconds / 3600} hours`;
}

/**
 * The frame of a chart over `count` buckets whose values reach `max`:
 * the SVG with its grid labelled in `unit`, and where things go in it.
 */
function frame(count, max, unit, label) {
  const scale = (HEIGHT - BOTTOM - TOP) / max;
  const slot = (WIDTH - LEFT) / Math.max(1, count);
  const svg = h('svg:svg', { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: 'chart', role: 'img', 'aria-label': label });
  for (const fraction of [0, 0.5, 1]) {
    const y = HEIGHT - BOTTOM - fraction * max * scale;
    svg.appendChild(h('svg:line', { x1: LEFT, x2: WIDTH, y1: y, y2: y, class: 'grid' }));
    svg.appendChild(h('svg:text', { x: LEFT - 6, y: y + 4, class: 'axis', 'text-anchor': 'end' }, `${Math.round(fraction * max)}${unit}`));
  }
  return {
    svg,
    slot,
    /** The left edge of bucket `i`'s slot. */
    x: (i) => LEFT + i * slot,
    /** The height of `value` on the value axis. */
    y: (value) => HEIGHT - BOTTOM - value * scale,
    scale,
  };
}

/** Labels about six of the buckets' starts under the chart. */
function timeAxis(f, buckets, bucketSeconds) {
  const every = Math.ceil(buckets.length / 6);
  buckets.forEach((bucket, i) => {
    if (i % every !== 0) return;
    const start = new Date(bucket.start);
    const text = bucketSeconds >= 6 * 3600
      ? start.toLocaleDateString(undefined, { weekday: 'short', day: 'numeric' })
      : start.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
    f.svg.appendChild(h('svg:text', { x: f.x(i) + f.slot / 2, y: HEIGHT - 6, class: 'axis', 'text-anchor': 'middle' }, text));
  });
}

/**
 * An invisible full-height target over bucket `i`, so that hovering
 * anywhere in its slot shows `label`.
 */
function hoverGroup(f, i, label) {
  return h('svg:g', { class: 'bar' }, h('svg:title', {}, label),
    h('svg:rect', { x: f.x(i), y: TOP, width: f.slot, height: HEIGHT - BOTTOM - TOP, class: 'hit' }));
}

function legend(series) {
  return h('ul', { class: 'legend' },
    series.map(([key, name]) => h('li', {}, h('span', { class: `swatch ${key}` }), name)));
}

/**
 * Stacked bars per bucket. `buckets`: [{start, ...counts}], oldest first;
 * `series`: the counts to stack, [key, name] bottom to top (deliveries by
 * outcome unless told); `noun`: what is counted, for the chart's label.
 */
export function deliveriesChart(buckets, bucketSeconds, series = OUTCOMES, noun = 'Deliveries') {
  const totals = buckets.map((b) => series.reduce((sum, [k]) => sum + (b[k] || 0), 0));
  const max = Math.max(1, ...totals);
  const f = frame(buckets.length, max, '',
    `${noun} per ${bucketSpan(bucketSeconds)}: ${totals.reduce((a, b) => a + b, 0)} in all, at most ${max} in one bucket`);
  const bar = Math.max(2, f.slot * 0.7);
  buckets.forEach((bucket, i) => {
    const x = f.x(i) + (f.slot - bar) / 2;
    let y = HEIGHT - BOTTOM;
    const group = hoverGroup(f, i,
      `${localTime(bucket.start)}: ${series.map(([k, name]) => `${bucket[k] || 0} ${name.toLowerCase()}`).join(', ')}`);
    for (const [key] of series) {
      const value = bucket[key];
      if (!value) continue;
      const barHeight = value * f.scale;
      y -= barHeight;
      // Behind the hover target, which stays on top.
      group.insertBefore(h('svg:rect', { x, y, width: bar, height: barHeight, class: key }), group.lastChild);
    }
    f.svg.appendChild(group);
  });
  timeAxis(f, buckets, bucketSeconds);
  return h('figure', { class: 'chart-box' }, f.svg, legend(series));
}

const PERCENTILES = [
  ['p50', 'p50'],
  ['p95', 'p95'],
];

/**
 * Latency p50 and p95 per bucket as two lines. `buckets`: [{start,
 * latencyMs: {p50, p95}}], oldest first; a bucket without a timed delivery
 * (null) breaks the lines rather than dropping them to zero.
 */
export function latencyChart(buckets, bucketSeconds) {
  const values = buckets.flatMap((b) => PERCENTILES.map(([k]) => b.latencyMs && b.latencyMs[k]))
    .filter((v) => v !== null && v !== undefined);
  const max = Math.max(1, ...values);
  const f = frame(buckets.length, max, ' ms',
    `Latency of successful attempts per ${bucketSpan(bucketSeconds)}: p95 at most ${max} ms, in ${values.length / 2} timed buckets`);
  const centre = (i) => f.x(i) + f.slot / 2;
  for (const [key] of PERCENTILES) {
    // One polyline per run of buckets with a value.
    let run = [];
    const flush = () => {
      if (run.length > 1) f.svg.appendChild(h('svg:polyline', { points: run.join(' '), class: `line ${key}` }));
      run = [];
    };
    buckets.forEach((bucket, i) => {
      const value = bucket.latencyMs ? bucket.latencyMs[key] : null;
      if (value === null || value === undefined) {
        flush();
        return;
      }
      run.push(`${centre(i)},${f.y(value)}`);
      f.svg.appendChild(h('svg:circle', { cx: centre(i), cy: f.y(value), r: 3, class: `point ${key}` }));
    });
    flush();
  }
  buckets.forEach((bucket, i) => {
    const l = bucket.latencyMs || {};
    f.svg.appendChild(hoverGroup(f, i, l.p50 === null || l.p50 === undefined
      ? `${localTime(bucket.start)}: no successful attempt timed`
      : `${localTime(bucket.start)}: p50 ${l.p50} ms, p95 ${l.p95} ms`));
  });
  timeAxis(f, buckets, bucketSeconds);
  return h('figure', { class: 'chart-box latency-chart' }, f.svg, legend(PERCENTILES));
}
