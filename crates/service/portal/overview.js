// The operator overview (admin links only): platform totals, the
// platform's figures over time, and the endpoints failing now or disabled,
// across every user.

import { get } from './api.js';
import { h, render, loading, empty, errorBox, time, percent } from './dom.js';
import { bucketSpan, deliveriesChart, latencyChart } from './chart.js';

const EVENTS = [['events', 'Events ingested']];

/**
 * Events ingested, deliveries by outcome and latency per bucket across
 * every user (`/admin/stats/hourly`), with a window picker.
 */
function platformCharts() {
  const box = h('div', { class: 'chart-wrap' }, loading());
  const windowSelect = h('select', { id: 'overview-window', onchange: () => draw() },
    h('option', { value: '24h' }, 'Last 24 hours'), h('option', { value: '7d' }, 'Last 7 days'));
  async function draw() {
    render(box, loading());
    try {
      const { data } = await get(`/admin/stats/hourly?window=${windowSelect.value}`);
      const per = bucketSpan(data.bucketSeconds);
      const deliveries = data.buckets.reduce((sum, b) => sum + b.delivered + b.failed + b.retrying + b.pending, 0);
      const timed = data.buckets.some((b) => b.latencyMs.p50 !== null);
      const p = (v) => (v === null ? '—' : `${v} ms`);
      render(box,
        h('h3', { class: 'chart-title' }, `Events ingested per ${per} (${data.events} in all)`),
        data.events === 0 ? empty('No event was ingested in this window.')
          : h('div', { 'data-chart': 'events' }, deliveriesChart(data.buckets, data.bucketSeconds, EVENTS, 'Events ingested')),
        h('h3', { class: 'chart-title' }, `Deliveries per ${per} by outcome (${deliveries} in all)`),
        deliveries === 0 ? empty('No delivery was created in this window.')
          : h('div', { 'data-chart': 'deliveries' }, deliveriesChart(data.buckets, data.bucketSeconds)),
        h('h3', { class: 'chart-title' }, `Latency per ${per} (p50 ${p(data.latencyMs.p50)}, p95 ${p(data.latencyMs.p95)} over the window)`),
        timed ? h('div', { 'data-chart': 'latency' }, latencyChart(data.buckets, data.bucketSeconds))
          : empty('No successful attempt in this window to time.'));
    } catch (e) {
      render(box, errorBox(e, 'The platform\'s figures cannot be loaded'));
    }
  }
  draw();
  return h('section', { class: 'card', 'aria-labelledby': 'platform-h' },
    h('div', { class: 'heading' }, h('h2', { id: 'platform-h' }, 'Over time'),
      h('label', { class: 'inline-label' }, h('span', { class: 'sr-only' }, 'Window'), windowSelect)),
    box);
}

/** `#/overview` */
export async function overview(main, ctx) {
  render(main, h('h1', {}, 'Operator overview'), loading());
  if (!ctx.claims || !ctx.claims.admin) {
    render(main, h('h1', {}, 'Operator overview'), errorBox({ status: 403, message: 'The overview is for operators.' }));
    return;
  }
  let stats;
  let webhooks;
  try {
    [stats, webhooks] = await Promise.all([get('/webhooks/stats'), get('/webhooks?limit=100')]);
  } catch (e) {
    render(main, h('h1', {}, 'Operator overview'), errorBox(e));
    return;
  }
  const s = stats.data;
  const tile = (label, value) => h('div', { class: 'tile' }, h('span', { class: 'tile-value' }, String(value)), h('span', { class: 'muted' }, label));
  const failing = webhooks.data.filter((w) => w.isActive && w.failingSince);
  const disabled = webhooks.data.filter((w) => !w.isActive && w.disabledReason);
  const row = (w, when) => h('li', { class: 'card' },
    h('a', { class: 'url', href: `#/endpoints/${encodeURIComponent(w.id)}` }, w.url),
    h('p', { class: 'muted' }, `Owner ${w.userId} · `, when),
    w.disabledReason ? h('p', { class: 'note' }, w.disabledReason) : null);
  // The slowest endpoints: p95 of successful attempts over 24 h, loaded beside the page.
  const slowest = h('div', {}, loading());
  Promise.all(webhooks.data.map((w) => get(`/webhooks/${encodeURIComponent(w.id)}/stats`)
    .then((r) => ({ w, p95: r.data.latencyMs.p95, p50: r.data.latencyMs.p50 }))
    .catch(() => ({ w, p95: null, p50: null }))))
    .then((rows) => {
      const measured = rows.filter((r) => r.p95 !== null).sort((a, b) => b.p95 - a.p95).slice(0, 5);
      render(slowest, measured.length === 0
        ? empty('No successful delivery in the last 24 hours to time.')
        : h('ol', { class: 'cards' }, measured.map((r) => h('li', { class: 'card' },
          h('a', { class: 'url', href: `#/endpoints/${encodeURIComponent(r.w.id)}` }, r.w.url),
          h('p', { class: 'muted' }, `Owner ${r.w.userId} · p95 ${r.p95} ms · p50 ${r.p50} ms`)))));
    });
  render(main,
    h('h1', {}, 'Operator overview'),
    h('div', { class: 'tiles' },
      tile('endpoints', s.totalWebhooks),
      tile('active endpoints', s.activeWebhooks),
      tile('deliveries in 24 h', s.window.total),
      tile('success in 24 h', percent(s.window.successRate)),
      tile('waiting or retrying', s.pendingDeliveries),
      tile('failed (all time)', s.failedDeliveries)),
    platformCharts(),
    h('section', {}, h('h2', {}, `Failing now (${failing.length})`),
      failing.length ? h('ul', { class: 'cards' }, failing.map((w) => row(w, ['failing since ', time(w.failingSince)])))
        : empty('No endpoint is failing.')),
    h('section', {}, h('h2', {}, `Disabled automatically (${disabled.length})`),
      disabled.length ? h('ul', { class: 'cards' }, disabled.map((w) => row(w, ['disabled ', time(w.disabledAt)])))
        : empty('No endpoint has been disabled by the service.')),
    h('section', {}, h('h2', {}, 'Slowest endpoints (24 h)'), slowest),
    webhooks.meta && webhooks.meta.hasMore ? h('p', { class: 'muted' }, `Only the first ${webhooks.data.length} of ${webhooks.meta.total} endpoints are checked.`) : null);
}
