// The delivery log of one endpoint, one delivery's detail, retry and replay.

import { get, post } from './api.js';
import { h, render, loading, empty, errorBox, time, timeLong, toast, pre, pretty, badge } from './dom.js';
import { eventTypes } from './endpoints.js';

const PAGE = 20;
const POLL_MS = 3000;

function toIso(local) {
  return local ? new Date(local).toISOString() : '';
}

/** `#/endpoints/{id}/log` */
export async function deliveryLog(main, ctx, id) {
  const ro = ctx.claims && ctx.claims.readOnly;
  const path = `/webhooks/${encodeURIComponent(id)}`;
  const eid = encodeURIComponent(id);
  render(main, h('h1', {}, 'Delivery log'), loading());
  let webhook;
  let types;
  try {
    [webhook, types] = await Promise.all([get(path).then((r) => r.data), eventTypes()]);
  } catch (e) {
    render(main, h('h1', {}, 'Delivery log'), errorBox(e, e.status === 404 ? 'No such endpoint' : 'The log cannot be loaded'));
    return;
  }
  let page = 1;
  const status = h('select', { id: 'f-status', name: 'status' },
    h('option', { value: '' }, 'Any status'),
    ['delivered', 'failed', 'retrying', 'pending'].map((s) => h('option', { value: s }, s)));
  const type = h('select', { id: 'f-type', name: 'eventType' },
    h('option', { value: '' }, 'Any event type'),
    types.map((t) => h('option', { value: t.type }, t.type)));
  const since = h('input', { id: 'f-since', type: 'datetime-local', name: 'since' });
  const until = h('input', { id: 'f-until', type: 'datetime-local', name: 'until' });
  const live = h('input', { id: 'f-live', type: 'checkbox', checked: true });
  const table = h('div', { class: 'log', 'aria-live': 'polite' }, loading());
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  const updated = h('p', { class: 'muted small-text', 'data-test': 'updated' });

  const query = () => {
    const q = new URLSearchParams({ limit: PAGE, page });
    if (status.value) q.set('status', status.value);
    if (type.value) q.set('eventType', type.value);
    if (since.value) q.set('since', toIso(since.value));
    if (until.value) q.set('until', toIso(until.value));
    return q.toString();
  };

  let loadingNow = false;
  let shown = null;
  async function load() {
    if (loadingNow) return;
    loadingNow = true;
    try {
      const result = await get(`${path}/deliveries?${query()}`);
      // Redraw only what changed, so that a refresh does not take the
      // keyboard focus away from a row.
      const now = JSON.stringify([result.data, result.meta, page]);
      if (now !== shown) {
        shown = now;
        drawRows(result);
      }
      render(updated, 'Updated ', new Date().toLocaleTimeString(), live.checked ? ' · refreshing every 3 s' : '');
    } catch (e) {
      shown = null;
      render(table, errorBox(e, 'The log cannot be loaded'));
    } finally {
      loadingNow = false;
    }
  }

  function drawRows(result) {
    if (result.data.length === 0) {
      const filtered = status.value || type.value || since.value || until.value;
      render(table, empty(filtered
        ? 'No delivery matches these filters.'
        : 'No deliveries yet. Events this endpoint subscribes to appear here as they are sent; send a test event from the endpoint page.'));
      render(pager);
      return;
    }
    render(table, h('table', {},
      h('caption', { class: 'sr-only' }, 'Deliveries, newest first'),
      h('thead', {}, h('tr', {},
        ['Event type', 'Status', 'Attempts', 'Last answer', 'Created'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, result.data.map((d) => h('tr', { 'data-status': d.status },
        h('td', {}, h('a', { href: `#/endpoints/${eid}/deliveries/${encodeURIComponent(d.id)}` }, d.eventType)),
        h('td', {}, badge(d.status)),
        h('td', {}, String(d.attempts)),
        h('td', {}, d.lastStatusCode ? `HTTP ${d.lastStatusCode}` : (d.lastErrorKind || '—')),
        h('td', {}, time(d.createdAt)))))));
    const total = result.meta ? result.meta.total : result.data.length;
    // A large log is counted only so far: its total then means "at least".
    const exact = !result.meta || result.meta.totalExact !== false;
    const more = result.meta ? result.meta.hasMore : false;
    const pages = Math.max(1, Math.ceil(total / PAGE));
    const counted = exact ? `Page ${page} of ${pages} · ${total} ${total === 1 ? 'delivery' : 'deliveries'}`
      : `Page ${page} · ${total.toLocaleString()} or more deliveries`;
    render(pager,
      h('button', { type: 'button', class: 'secondary small', disabled: page <= 1, onclick: () => { page -= 1; load(); } }, 'Newer'),
      h('span', {}, ` ${counted} `),
      h('button', { type: 'button', class: 'secondary small', disabled: exact ? page >= pages : !more, onclick: () => { page += 1; load(); } }, 'Older'));
  }

  const filters = h('form', {
    class: 'filters', onsubmit: (e) => { e.preventDefault(); page = 1; load(); },
  },
  h('div', {}, h('label', { for: 'f-status' }, 'Status'), status),
  h('div', {}, h('label', { for: 'f-type' }, 'Event type'), type),
  h('div', {}, h('label', { for: 'f-since' }, 'From'), since),
  h('div', {}, h('label', { for: 'f-until' }, 'Until'), until),
  h('div', { class: 'filter-actions' }, h('button', { type: 'submit' }, 'Apply filters')),
  h('div', { class: 'check' }, live, h('label', { for: 'f-live' }, 'Live updates')));
  for (const input of [status, type]) input.addEventListener('change', () => { page = 1; load(); });

  const replayResult = h('p', { 'aria-live': 'polite' });
  const replaySince = h('input', { id: 'r-since', type: 'datetime-local', required: true });
  const replayUntil = h('input', { id: 'r-until', type: 'datetime-local' });
  const replayStatus = h('select', { id: 'r-status' },
    h('option', { value: 'failed' }, 'Failed deliveries only'), h('option', { value: 'all' }, 'All deliveries'));
  const replay = ro ? null : h('details', { class: 'card' },
    h('summary', {}, 'Replay a time range'),
    h('form', {
      class: 'filters', onsubmit: async (e) => {
        e.preventDefault();
        if (!replaySince.value) {
          render(replayResult, h('span', { class: 'error-text' }, 'Choose where the range starts.'));
          return;
        }
        const body = { since: toIso(replaySince.value), status: replayStatus.value };
        if (replayUntil.value) body.until = toIso(replayUntil.value);
        try {
          const { data, message } = await post(`${path}/replay`, body);
          render(replayResult, message || `${data.replayed} deliveries queued again.`);
          load();
        } catch (err) {
          render(replayResult, errorBox(err, 'Nothing was replayed'));
        }
      },
    },
    h('div', {}, h('label', { for: 'r-since' }, 'From'), replaySince),
    h('div', {}, h('label', { for: 'r-until' }, 'Until (optional)'), replayUntil),
    h('div', {}, h('label', { for: 'r-status' }, 'Which'), replayStatus),
    h('div', { class: 'filter-actions' }, h('button', { type: 'submit' }, 'Replay'))),
    replayResult);

  render(main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/endpoints' }, 'Endpoints'), ' / ', h('a', { href: `#/endpoints/${eid}` }, webhook.url), ' /'),
    h('h1', {}, 'Delivery log'),
    filters, updated, table, pager, replay);
  await load();
  // Live updates by polling, while the page is shown and "Live" is on.
  const timer = setInterval(() => { if (live.checked && !document.hidden) load(); }, POLL_MS);
  ctx.onLeave(() => clearInterval(timer));
}

const SIGNATURE_HEADERS = ['x-webhook-signature', 'webhook-signature'];

function headerTable(headers, caption) {
  const entries = Object.entries(headers || {});
  if (entries.length === 0) return h('p', { class: 'muted' }, `${caption}: none`);
  return h('table', { class: 'headers' },
    h('caption', {}, caption),
    h('tbody', {}, entries.map(([name, value]) => h('tr', {},
      h('th', { scope: 'row' }, name),
      // Signatures are masked: a log reader needs to see that one was
      // sent, not its value.
      h('td', {}, SIGNATURE_HEADERS.includes(name.toLowerCase()) ? `${String(value).slice(0, 10)}… (masked)` : String(value))))));
}

/** `#/endpoints/{id}/deliveries/{deliveryId}`; refreshes itself while the delivery is not finished. */
export async function deliveryDetail(main, ctx, id, deliveryId) {
  clearTimeout(main.refreshTimer);
  const ro = ctx.claims && ctx.claims.readOnly;
  const eid = encodeURIComponent(id);
  const path = `/webhooks/${eid}/deliveries/${encodeURIComponent(deliveryId)}`;
  render(main, h('h1', {}, 'Delivery'), loading());
  let d;
  try {
    d = (await get(path)).data;
  } catch (e) {
    render(main, h('h1', {}, 'Delivery'), errorBox(e, e.status === 404 ? 'No such delivery' : 'The delivery cannot be loaded'));
    return;
  }
  const retry = ro ? null : h('button', {
    type: 'button', onclick: async (e) => {
      e.target.disabled = true;
      try {
        const { message } = await post(`${path}/retry`);
        toast(message || 'Retry queued');
        deliveryDetail(main, ctx, id, deliveryId);
      } catch (err) {
        toast(err.message);
        e.target.disabled = false;
      }
    },
  }, 'Retry now');
  const attempts = [...(d.attemptLog || [])].reverse();
  if (d.status === 'pending' || d.status === 'retrying') {
    const here = location.hash;
    main.refreshTimer = setTimeout(() => {
      if (location.hash === here && !document.querySelector('dialog[open]')) deliveryDetail(main, ctx, id, deliveryId);
    }, 2000);
    ctx.onLeave(() => clearTimeout(main.refreshTimer));
  }
  render(main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/endpoints' }, 'Endpoints'), ' / ', h('a', { href: `#/endpoints/${eid}/log` }, 'Delivery log'), ' /'),
    h('div', { class: 'heading' }, h('h1', {}, d.eventType), badge(d.status)),
    h('dl', { class: 'facts' },
      h('dt', {}, 'Delivery'), h('dd', {}, h('code', {}, d.id)),
      h('dt', {}, 'Event'), h('dd', {}, h('code', {}, d.eventId)),
      h('dt', {}, 'Created'), h('dd', {}, timeLong(d.createdAt)),
      h('dt', {}, 'Attempts'), h('dd', {}, String(d.attempts)),
      d.nextAttemptAt ? [h('dt', {}, 'Next attempt'), h('dd', {}, timeLong(d.nextAttemptAt))] : null,
      // A FIFO delivery waits until the earlier one of its order has finished.
      d.blockedBy ? [h('dt', {}, 'Waiting for'), h('dd', {},
        h('a', { href: `#/endpoints/${eid}/deliveries/${encodeURIComponent(d.blockedBy)}` }, h('code', {}, d.blockedBy)),
        ' (earlier in its order)')] : null,
      d.deliveredAt ? [h('dt', {}, 'Delivered'), h('dd', {}, timeLong(d.deliveredAt))] : null,
      d.lastError ? [h('dt', {}, 'Last error'), h('dd', {}, d.lastError)] : null),
    h('div', { class: 'actions' }, retry),
    h('section', { class: 'card' }, h('h2', {}, 'Envelope sent'), pre(pretty(d.event), 'Envelope')),
    h('section', {}, h('h2', {}, `Attempts (${attempts.length})`),
      attempts.length === 0
        ? empty('No attempt yet: the delivery is waiting for its first attempt.')
        : h('ol', { class: 'attempts', reversed: true }, attempts.map((a) => h('li', { class: 'card attempt' },
          h('div', { class: 'heading' },
            h('h3', {}, `Attempt ${a.attempt}`),
            h('span', { class: `badge ${a.statusCode && a.statusCode < 300 ? 'delivered' : 'failed'}` },
              a.statusCode ? `HTTP ${a.statusCode}` : (a.errorKind || 'no answer'))),
          h('p', { class: 'muted' }, timeLong(a.startedAt), ` · ${a.durationMs} ms`),
          a.errorMessage ? h('p', { class: 'error-text' }, `${a.errorKind}: ${a.errorMessage}`) : null,
          h('details', {}, h('summary', {}, 'Request headers'), headerTable(a.requestHeaders, 'Request headers sent')),
          h('details', {}, h('summary', {}, 'Response headers'), headerTable(a.responseHeaders, 'Response headers')),
          h('p', { class: 'muted' }, 'Response body (excerpt):'),
          pre(a.responseBody || '(empty)', `Response body of attempt ${a.attempt}`))))));
}
