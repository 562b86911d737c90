// Endpoints: the list, the add / edit form, and one endpoint's detail.

import { get, post, api } from './api.js';
import {
  h, render, loading, empty, errorBox, time, timeLong, confirmDialog, toast,
  copyButton, pre, pretty, percent, badge,
} from './dom.js';
import { bucketSpan, deliveriesChart, latencyChart } from './chart.js';
import { advancedOptions, optionsSection, ordersSection } from './endpoint-options.js';

// The circuit breaker holds an endpoint's deliveries after five failures in
// a row, until a probe succeeds (this instance's view; see `circuit`).
function circuitOpen(webhook) {
  return webhook.isActive && webhook.circuit && webhook.circuit.state !== 'closed';
}

function state(webhook) {
  if (webhook.isActive) {
    if (circuitOpen(webhook)) {
      return h('span', { class: 'badge failing', title: 'Deliveries are held until a probe succeeds' }, 'Circuit open');
    }
    return webhook.failingSince
      ? h('span', { class: 'badge failing' }, 'Failing')
      : h('span', { class: 'badge active' }, 'Active');
  }
  return h('span', { class: 'badge disabled' }, 'Disabled');
}

function disabledNote(webhook) {
  if (webhook.isActive) {
    if (circuitOpen(webhook)) {
      const c = webhook.circuit;
      return h('p', { class: 'note warn' },
        `${c.failuresInARow} failures in a row: deliveries are held, not sent, until a probe succeeds. `,
        c.state === 'probing' ? 'A probe is out now.' : ['Next probe: ', c.nextProbeAt ? time(c.nextProbeAt) : 'soon', '.']);
    }
    return webhook.failingSince
      ? h('p', { class: 'note warn' }, 'Failing since ', time(webhook.failingSince), ': deliveries are retried while the endpoint answers errors.')
      : null;
  }
  return h('p', { class: 'note' },
    webhook.disabledReason ? `Disabled: ${webhook.disabledReason}` : 'Disabled by its owner',
    webhook.disabledAt ? [' — ', time(webhook.disabledAt)] : null);
}

async function toggle(webhook, after) {
  try {
    const { message } = await post(`/webhooks/${encodeURIComponent(webhook.id)}/toggle`);
    toast(message || 'Saved');
    after();
  } catch (e) {
    toast(e.message);
  }
}

async function remove(webhook, after) {
  const sure = await confirmDialog(`Delete the endpoint ${webhook.url}? Its delivery log is deleted with it.`, 'Delete');
  if (!sure) return;
  try {
    await api('DELETE', `/webhooks/${encodeURIComponent(webhook.id)}`);
    toast('Endpoint deleted');
    after();
  } catch (e) {
    toast(e.message);
  }
}

/** `#/endpoints` */
export async function endpointList(main, ctx) {
  const ro = ctx.claims && ctx.claims.readOnly;
  const admin = ctx.claims && ctx.claims.admin;
  render(main, h('h1', {}, 'Endpoints'), loading());
  let list;
  try {
    list = await get('/webhooks?limit=100');
  } catch (e) {
    render(main, h('h1', {}, 'Endpoints'), errorBox(e, 'The endpoints cannot be loaded'));
    return;
  }
  const add = ro ? null : h('a', { class: 'button', href: '#/endpoints/new' }, 'Add endpoint');
  const header = h('div', { class: 'heading' }, h('h1', {}, 'Endpoints'), add);
  if (list.data.length === 0) {
    render(main, header, empty(
      'No endpoints yet. An endpoint is a URL of yours that receives the events you pick, signed with its secret.',
      add && h('a', { class: 'button', href: '#/endpoints/new' }, 'Add your first endpoint')));
    return;
  }
  const refresh = () => endpointList(main, ctx);
  const items = list.data.map((webhook) => {
    const figures = h('span', { class: 'figures muted' }, 'Loading figures…');
    const last = h('span', { class: 'muted' }, '…');
    const id = encodeURIComponent(webhook.id);
    // The 24 h figures and the last delivery load beside the list.
    Promise.all([get(`/webhooks/${id}/stats`), get(`/webhooks/${id}/deliveries?limit=1`)])
      .then(([stats, newest]) => {
        const s = stats.data;
        render(figures, s.successRate === null ? 'no finished delivery' : [h('strong', {}, percent(s.successRate)), ' success'],
          ` · ${s.total} deliveries in 24 h`);
        render(last, newest.data[0] ? ['last delivery ', time(newest.data[0].createdAt)] : 'no delivery yet');
      })
      .catch((e) => render(figures, h('span', { class: 'error-text' }, e.message)));
    return h('li', { class: 'card endpoint', 'data-id': webhook.id },
      h('div', { class: 'card-head' },
        h('a', { class: 'url', href: `#/endpoints/${id}` }, webhook.url),
        state(webhook)),
      webhook.description ? h('p', { class: 'muted' }, webhook.description) : null,
      admin ? h('p', { class: 'muted' }, `Owner: ${webhook.userId}`) : null,
      h('p', { class: 'chips' }, webhook.eventTypes.map((t) => h('code', { class: 'chip' }, t))),
      disabledNote(webhook),
      h('p', { class: 'meta' }, figures, ' · ', last),
      h('div', { class: 'actions' },
        h('a', { class: 'button secondary small', href: `#/endpoints/${id}` }, 'Details'),
        h('a', { class: 'button secondary small', href: `#/endpoints/${id}/log` }, 'Delivery log'),
        ro ? null : h('button', { type: 'button', class: 'secondary small', onclick: () => toggle(webhook, refresh) },
          webhook.isActive ? 'Disable' : 'Enable'),
        ro ? null : h('button', { type: 'button', class: 'danger small', onclick: () => remove(webhook, refresh) }, 'Delete')));
  });
  render(main, header, h('ul', { class: 'cards' }, items),
    list.meta && list.meta.hasMore ? h('p', { class: 'muted' }, `Showing ${list.data.length} of ${list.meta.total}.`) : null);
}

let catalogueCache = null;
/** The event catalogue, loaded once. */
export async function eventTypes() {
  if (!catalogueCache) catalogueCache = (await get('/event-types')).data;
  return catalogueCache;
}

// The API names a filter's problem by its path (`filter.data.balance.$lt`);
// the form shows it at the field the path starts with.
function fieldOf(detail) {
  return String(detail.field || '').split(/[.[]/)[0];
}

function fieldError(form, field) {
  return form.querySelector(`[data-error-for="${field}"]`);
}

/** `#/endpoints/new` and `#/endpoints/{id}/edit` */
export async function endpointForm(main, ctx, id) {
  const title = id ? 'Edit endpoint' : 'Add an endpoint';
  render(main, h('h1', {}, title), loading());
  if (ctx.claims && ctx.claims.readOnly) {
    render(main, h('h1', {}, title), errorBox({ status: 403, message: 'This portal link is read-only.' }));
    return;
  }
  let types;
  let webhook = null;
  try {
    types = await eventTypes();
    if (id) webhook = (await get(`/webhooks/${encodeURIComponent(id)}`)).data;
  } catch (e) {
    render(main, h('h1', {}, title), errorBox(e));
    return;
  }
  const advanced = await advancedOptions(webhook, types);
  const chosen = new Set(webhook ? webhook.eventTypes : []);
  const categories = [...new Set(types.map((t) => t.category))];
  const option = (value, label, description, example) => h('li', { class: 'type' },
    h('label', {},
      h('input', { type: 'checkbox', name: 'eventTypes', value, checked: chosen.has(value) }),
      h('code', {}, value), ' ', h('span', { class: 'muted' }, label ? `— ${label}` : '')),
    description ? h('p', { class: 'muted small-text' }, description) : null,
    example ? h('details', {}, h('summary', {}, 'Example payload'), pre(pretty(example), `Example of ${value}`)) : null);
  const form = h('form', { class: 'form', novalidate: true },
    h('div', { class: 'error-summary', role: 'alert', tabindex: -1, hidden: true }),
    h('label', { for: 'url' }, 'Endpoint URL'),
    h('input', { id: 'url', name: 'url', type: 'url', required: true, placeholder: 'https://example.com/webhooks', value: webhook ? webhook.url : '', 'aria-describedby': 'url-help url-error', autocomplete: 'url' }),
    h('p', { id: 'url-help', class: 'muted small-text' }, 'An https URL of your server that accepts POST requests.'),
    h('p', { id: 'url-error', class: 'error-text', 'data-error-for': 'url' }),
    h('label', { for: 'description' }, 'Description (optional)'),
    h('input', { id: 'description', name: 'description', type: 'text', maxlength: 500, value: webhook ? webhook.description || '' : '' }),
    h('p', { class: 'error-text', 'data-error-for': 'description' }),
    h('fieldset', { 'aria-describedby': 'types-error' },
      h('legend', {}, 'Events to send'),
      h('ul', { class: 'types' },
        option('*', 'every event, including types added later'),
        categories.map((c) => option(`${c}.*`, `every ${c} event`))),
      categories.map((c) => h('details', { class: 'category', open: true },
        h('summary', {}, `${c} events`),
        h('ul', { class: 'types' }, types.filter((t) => t.category === c).map((t) => option(t.type, '', t.description, t.example))))),
      h('p', { id: 'types-error', class: 'error-text', 'data-error-for': 'eventTypes' })),
    advanced.element,
    h('div', { class: 'actions' },
      h('button', { type: 'submit' }, id ? 'Save changes' : 'Create endpoint'),
      h('a', { class: 'button secondary', href: id ? `#/endpoints/${encodeURIComponent(id)}` : '#/endpoints' }, 'Cancel')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const button = form.querySelector('button[type=submit]');
    form.querySelectorAll('[data-error-for]').forEach((el) => { el.textContent = ''; });
    form.querySelectorAll('[aria-invalid]').forEach((el) => el.removeAttribute('aria-invalid'));
    const summary = form.querySelector('.error-summary');
    summary.hidden = true;
    button.disabled = true;
    button.textContent = 'Saving…';
    try {
      const body = {
        url: form.url.value.trim(),
        description: form.description.value.trim(),
        eventTypes: [...form.querySelectorAll('input[name=eventTypes]:checked')].map((i) => i.value),
        ...advanced.changes(),
      };
      const result = id
        ? await api('PUT', `/webhooks/${encodeURIComponent(id)}`, body)
        : await post('/webhooks', body);
      if (id) {
        toast('Endpoint saved');
        ctx.go(`#/endpoints/${encodeURIComponent(id)}`);
      } else {
        showCreated(main, result.data);
      }
    } catch (e) {
      for (const detail of e.details || []) {
        const field = fieldOf(detail);
        const el = fieldError(form, field);
        if (el) {
          el.textContent = detail.message;
          // A problem in the closed "Advanced" part must be seen.
          const part = el.closest('details');
          if (part) part.open = true;
        }
        const input = field && form.querySelector(`#${CSS.escape(field)}`);
        if (input) input.setAttribute('aria-invalid', 'true');
      }
      render(summary, h('strong', {}, 'The endpoint was not saved: '), e.message);
      summary.hidden = false;
      summary.focus();
      button.disabled = false;
      button.textContent = id ? 'Save changes' : 'Create endpoint';
    }
  });
  render(main, h('h1', {}, title), form);
}

function showCreated(main, webhook) {
  const id = encodeURIComponent(webhook.id);
  render(main,
    h('h1', {}, 'Endpoint created'),
    h('section', { class: 'card secret-once' },
      h('h2', {}, 'Signing secret'),
      h('p', {}, 'Store this secret now: it is shown in full only this once (you can reveal it again from the endpoint). Your server verifies each request\'s signature with it.'),
      h('p', { class: 'secret-row' }, h('code', { class: 'secret', 'data-test': 'new-secret' }, webhook.secret), copyButton(webhook.secret)),
      h('p', {}, h('a', { class: 'button', href: `#/endpoints/${id}` }, 'Continue to the endpoint'),
        ' ', h('a', { class: 'button secondary', href: '#/catalogue/verify' }, 'How to verify signatures'))));
}

/** `#/endpoints/{id}` */
export async function endpointDetail(main, ctx, id) {
  const ro = ctx.claims && ctx.claims.readOnly;
  const path = `/webhooks/${encodeURIComponent(id)}`;
  render(main, h('h1', {}, 'Endpoint'), loading());
  let webhook;
  let types;
  try {
    [webhook, types] = await Promise.all([get(path).then((r) => r.data), eventTypes()]);
  } catch (e) {
    render(main, h('h1', {}, 'Endpoint'), errorBox(e, e.status === 404 ? 'No such endpoint' : 'The endpoint cannot be loaded'));
    return;
  }
  const refresh = () => endpointDetail(main, ctx, id);
  const eid = encodeURIComponent(webhook.id);

  // Secret: reveal on demand, rotate.
  const secretValue = h('code', { class: 'secret', 'data-test': 'secret' }, webhook.secret);
  const rotation = h('p', { class: 'muted', 'data-test': 'rotation' },
    webhook.previousSecretExpiresAt ? ['The previous secret keeps signing until ', timeLong(webhook.previousSecretExpiresAt), '.'] : null);
  const secretSection = h('section', { class: 'card', 'aria-labelledby': 'secret-h' },
    h('h2', { id: 'secret-h' }, 'Signing secret'),
    h('p', { class: 'secret-row' }, secretValue),
    rotation,
    ro ? h('p', { class: 'muted' }, 'This read-only link cannot reveal or rotate the secret.') : h('div', { class: 'actions' },
      h('button', {
        type: 'button', class: 'secondary', onclick: async (e) => {
          try {
            const { data } = await get(`${path}/secret`);
            render(secretValue, data.secret);
            e.target.replaceWith(copyButton(data.secret, 'Copy secret'));
          } catch (err) { toast(err.message); }
        },
      }, 'Reveal secret'),
      h('button', {
        type: 'button', class: 'secondary', onclick: async () => {
          if (!await confirmDialog('Rotate the signing secret? A new secret signs from now on; the old one keeps signing for the grace period, so update your server within it.', 'Rotate')) return;
          try {
            const { data } = await post(`${path}/rotate-secret`);
            render(secretValue, data.secret);
            render(rotation, 'New secret shown above. The previous secret keeps signing until ', timeLong(data.previousSecretExpiresAt), '.');
            toast('Secret rotated');
          } catch (err) { toast(err.message); }
        },
      }, 'Rotate secret')));

  // Test event.
  const testResult = h('div', { class: 'test-result', 'aria-live': 'polite' });
  const testType = h('select', { id: 'test-type', name: 'eventType' },
    types.map((t) => h('option', { value: t.type, selected: t.type === 'user.created' }, t.type)));
  const testSection = h('section', { class: 'card', 'aria-labelledby': 'test-h' },
    h('h2', { id: 'test-h' }, 'Send a test event'),
    ro ? h('p', { class: 'muted' }, 'This read-only link cannot send test events.') : h('form', {
      class: 'inline', onsubmit: async (e) => {
        e.preventDefault();
        const button = e.target.querySelector('button');
        button.disabled = true;
        render(testResult, loading('Sending…'));
        try {
          const { data } = await post(`${path}/test`, { eventType: testType.value });
          render(testResult,
            h('p', {},
              data.success ? h('span', { class: 'badge delivered' }, 'Delivered') : h('span', { class: 'badge failed' }, 'Failed'),
              ' ', h('span', { 'data-test': 'test-status' }, data.statusCode ? `HTTP ${data.statusCode}` : (data.errorKind || 'no answer')),
              ` in ${data.durationMs} ms`),
            data.error ? h('p', { class: 'error-text' }, data.error) : null,
            h('p', { class: 'muted' }, 'Response body:'),
            pre(data.responseBody || '(empty)', 'Response body'));
          drawChart();
        } catch (err) {
          render(testResult, errorBox(err, 'The test event was not sent'));
        } finally {
          button.disabled = false;
        }
      },
    }, h('label', { for: 'test-type' }, 'Event type'), testType, h('button', { type: 'submit' }, 'Send test event')),
    testResult);

  // Chart.
  const chartBox = h('div', { class: 'chart-wrap' }, loading());
  const latencyBox = h('div', { class: 'chart-wrap' });
  const latency = h('p', { class: 'muted' });
  const windowSelect = h('select', { id: 'chart-window', onchange: () => drawChart() },
    h('option', { value: '24h' }, 'Last 24 hours'), h('option', { value: '7d' }, 'Last 7 days'));
  async function drawChart() {
    render(chartBox, loading());
    try {
      const { data } = await get(`${path}/stats/hourly?window=${windowSelect.value}`);
      const total = data.buckets.reduce((sum, b) => sum + b.delivered + b.failed + b.retrying + b.pending, 0);
      render(chartBox, total === 0
        ? empty('No deliveries in this window yet. Send a test event or wait for events to be sent.')
        : deliveriesChart(data.buckets, data.bucketSeconds));
      const timed = data.buckets.some((b) => b.latencyMs && b.latencyMs.p50 !== null);
      render(latencyBox, h('h3', { class: 'chart-title' }, `Latency per ${bucketSpan(data.bucketSeconds)}`),
        timed ? latencyChart(data.buckets, data.bucketSeconds)
          : empty('No successful attempt in this window to time.'));
      render(latency, 'Latency of successful attempts: p50 ',
        data.latencyMs.p50 === null ? '—' : `${data.latencyMs.p50} ms`, ', p95 ',
        data.latencyMs.p95 === null ? '—' : `${data.latencyMs.p95} ms`, '.');
    } catch (e) {
      render(chartBox, errorBox(e, 'The chart cannot be loaded'));
      render(latencyBox);
    }
  }
  const chartSection = h('section', { class: 'card', 'aria-labelledby': 'chart-h' },
    h('div', { class: 'heading' }, h('h2', { id: 'chart-h' }, 'Deliveries'),
      h('label', { class: 'inline-label' }, h('span', { class: 'sr-only' }, 'Window'), windowSelect)),
    chartBox, latencyBox, latency);

  render(main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/endpoints' }, 'Endpoints'), ' / '),
    h('div', { class: 'heading' }, h('h1', { class: 'url' }, webhook.url), state(webhook)),
    webhook.description ? h('p', { class: 'muted' }, webhook.description) : null,
    disabledNote(webhook),
    h('p', { class: 'chips' }, webhook.eventTypes.map((t) => h('code', { class: 'chip' }, t))),
    h('p', { class: 'muted' }, 'Created ', time(webhook.createdAt), ' · id ', h('code', {}, webhook.id)),
    h('div', { class: 'actions' },
      h('a', { class: 'button', href: `#/endpoints/${eid}/log` }, 'Delivery log'),
      ro ? null : h('a', { class: 'button secondary', href: `#/endpoints/${eid}/edit` }, 'Edit'),
      ro ? null : h('button', { type: 'button', class: 'secondary', onclick: () => toggle(webhook, refresh) }, webhook.isActive ? 'Disable' : 'Enable'),
      ro ? null : h('button', { type: 'button', class: 'danger', onclick: () => remove(webhook, () => ctx.go('#/endpoints')) }, 'Delete')),
    h('div', { class: 'grid' }, testSection, secretSection),
    optionsSection(webhook),
    ordersSection(webhook),
    chartSection);
  drawChart();
}

export { badge };
