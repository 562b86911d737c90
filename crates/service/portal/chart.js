// A stacked bar chart of deliveries per bucket by outcome, drawn as SVG.

import { h, localTime } from './dom.js';

const OUTCOMES = [
  ['delivered', 'Delivered'],
  ['failed', 'Failed'],
  ['retrying', 'Retrying'],
  ['pending', 'Pending'],
];

/** `buckets`: [{start, delivered, failed, retrying, pending}], oldest first. */
export function deliveriesChart(buckets, bucketSeconds) {
  const width = 720;
  const height = 220;
  const left = 40;
  const bottom = 24;
  const top = 10;
  const totals = buckets.map((b) => OUTCOMES.reduce((sum, [k]) => sum + b[k], 0));
  const max = Math.max(1, ...totals);
  const scale = (height - bottom - top) / max;
  const slot = (width - left) / Math.max(1, buckets.length);
  const bar = Math.max(2, slot * 0.7);
  const svg = h('svg:svg', {
    viewBox: `0 0 ${width} ${height}`,
    class: 'chart',
    role: 'img',
    'aria-label': `Deliveries per ${bucketSeconds >= 86400 ? 'day' : bucketSeconds / 3600 + ' hours'}: ${totals.reduce((a, b) => a + b, 0)} in all, at most ${max} in one bucket`,
  });
  for (const fraction of [0, 0.5, 1]) {
    const y = height - bottom - fraction * max * scale;
    svg.appendChild(h('svg:line', { x1: left, x2: width, y1: y, y2: y, class: 'grid' }));
    svg.appendChild(h('svg:text', { x: left - 6, y: y + 4, class: 'axis', 'text-anchor': 'end' }, String(Math.round(fraction * max))));
  }
  buckets.forEach((bucket, i) => {
    const x = left + i * slot + (slot - bar) / 2;
    let y = height - bottom;
    const label = `${localTime(bucket.start)}: ${OUTCOMES.map(([k, name]) => `${bucket[k]} ${name.toLowerCase()}`).join(', ')}`;
    const group = h('svg:g', { class: 'bar' }, h('svg:title', {}, label));
    for (const [key] of OUTCOMES) {
      const value = bucket[key];
      if (!value) continue;
      const barHeight = value * scale;
      y -= barHeight;
      group.appendChild(h('svg:rect', { x, y, width: bar, height: barHeight, class: key }));
    }
    // An invisible full-height target so that hovering anywhere shows the values.
    group.appendChild(h('svg:rect', { x: left + i * slot, y: top, width: slot, height: height - bottom - top, class: 'hit' }));
    svg.appendChild(group);
    const every = Math.ceil(buckets.length / 6);
    if (i % every === 0) {
      const start = new Date(bucket.start);
      const text = bucketSeconds >= 6 * 3600
        ? start.toLocaleDateString(undefined, { weekday: 'short', day: 'numeric' })
        : start.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
      svg.appendChild(h('svg:text', { x: x + bar / 2, y: height - 6, class: 'axis', 'text-anchor': 'middle' }, text));
    }
  });
  const legend = h('ul', { class: 'legend' },
    OUTCOMES.map(([key, name]) => h('li', {}, h('span', { class: `swatch ${key}` }), name)));
  return h('figure', { class: 'chart-box' }, svg, legend);
}
