// A webhook's optional settings: the "Advanced" part of the endpoint form
// and their summary on the endpoint's page. Delivery controls (filter, rate
// limit, retry schedule, timeout, order) and how deliveries reach the endpoint
// (custom headers, authentication, signing).
//
// Stored header values and auth secrets come back masked and cannot be read
// back; the API refuses the mask as a value, and `headers` and `auth` each
// replace the whole set. So the form sends a part only when the user changed
// it, and asks again for a stored value that such a change would drop.

import { get, post } from './api.js';
import { h, render, copyButton, pre, pretty } from './dom.js';

/** A problem found before anything is sent, shaped like the API's `details`. */
export class FormProblem extends Error {
  constructor(field, message) {
    super(message);
    this.status = 400;
    this.details = [{ field, message }];
  }
}

let limitsCache = null;
/** The bounds the service enforces on delivery controls (see /portal/config.json). */
function limits() {
  if (!limitsCache) {
    limitsCache = fetch('/portal/config.json')
      .then((r) => (r.ok ? r.json() : {}))
      .then((config) => config.limits || {})
      // Without them the hints fall back to the defaults; the API still checks.
      .catch(() => ({}));
  }
  return limitsCache;
}

const AUTH_TYPES = [
  ['none', 'None'],
  ['basic', 'HTTP Basic'],
  ['bearer', 'Bearer token'],
  ['oauth2', 'OAuth2 client credentials'],
  ['mtls', 'Client certificate (mTLS)'],
];

// [field, label, secret, optional, pem]
const AUTH_FIELDS = {
  basic: [['username', 'User name'], ['password', 'Password', true]],
  bearer: [['token', 'Token', true]],
  oauth2: [
    ['tokenUrl', 'Token URL'], ['clientId', 'Client id'], ['clientSecret', 'Client secret', true],
    ['scope', 'Scope (optional)', false, true], ['audience', 'Audience (optional)', false, true]],
  mtls: [['certificate', 'Client certificate (PEM)', false, false, true], ['privateKey', 'Private key (PEM)', true, false, true]],
};

const KEPT = 'Stored, not shown; type a new value to replace it';

function hint(id, ...text) {
  return h('p', { id, class: 'muted small-text' }, ...text);
}

function errorSlot(field) {
  return h('p', { class: 'error-text', 'data-error-for': field });
}

/** Name/value rows of custom headers; stored values stay masked. */
function headerRows(stored) {
  const rows = [];
  const list = h('ul', { class: 'header-rows', id: 'headers', 'aria-describedby': 'headers-help' });
  const add = (name, isStored) => {
    const row = { storedName: isStored ? name : null, removed: false };
    row.name = h('input', { type: 'text', 'aria-label': 'Header name', placeholder: 'X-Api-Key', value: name || '', autocomplete: 'off', 'data-test': 'header-name' });
    row.value = h('input', { type: 'text', 'aria-label': `Value of ${name || 'the header'}`, placeholder: isStored ? KEPT : 'value', autocomplete: 'off', 'data-test': 'header-value' });
    const item = h('li', { class: 'header-row' }, row.name, row.value,
      h('button', {
        type: 'button', class: 'secondary small', onclick: () => {
          row.removed = true;
          item.remove();
        },
      }, 'Remove'));
    rows.push(row);
    list.appendChild(item);
    return row;
  };
  for (const name of Object.keys(stored)) add(name, true);
  const element = h('div', {}, list,
    h('button', { type: 'button', class: 'secondary small', onclick: () => add('', false).name.focus() }, 'Add header'));

  /** `undefined`: unchanged; `null`: remove all; else every header. */
  function change() {
    const live = rows.filter((r) => !r.removed);
    const filled = live.filter((r) => r.name.value.trim() || r.value.value);
    const changed = rows.some((r) => r.storedName && r.removed)
      || live.some((r) => (r.storedName
        ? r.name.value.trim() !== r.storedName || r.value.value !== ''
        : r.name.value.trim() || r.value.value));
    if (!changed) return undefined;
    if (filled.length === 0) return Object.keys(stored).length ? null : undefined;
    const headers = {};
    for (const r of filled) {
      const name = r.name.value.trim();
      if (!name) throw new FormProblem('headers', 'A header value has no name: enter its name or remove the row.');
      if (r.storedName && r.value.value === '') {
        throw new FormProblem('headers', `Enter the value of ${name} again: a change to the custom headers replaces them all, and a stored value cannot be read back.`);
      }
      headers[name] = r.value.value;
    }
    return headers;
  }
  return { element, change };
}

/** The auth type and the fields of each type; secrets are write-only. */
function authFields(stored) {
  const storedType = stored ? stored.type : 'none';
  const select = h('select', { id: 'auth', name: 'authType', 'aria-describedby': 'auth-help' },
    AUTH_TYPES.map(([value, label]) => h('option', { value, selected: value === storedType }, label)));
  const groups = {};
  const inputs = {};
  for (const [type, fields] of Object.entries(AUTH_FIELDS)) {
    inputs[type] = fields.map(([field, label, secret, optional, pem]) => {
      const id = `auth-${type}-${field}`;
      const kept = type === storedType && stored[field] !== null && stored[field] !== undefined;
      const shown = kept && !secret ? String(stored[field]) : '';
      const placeholder = secret && kept ? KEPT : (pem ? '-----BEGIN ...' : '');
      const input = pem
        ? h('textarea', { id, rows: 4, spellcheck: 'false', placeholder, autocomplete: 'off' }, shown)
        : h('input', { id, type: secret ? 'password' : 'text', value: shown, placeholder, autocomplete: secret ? 'new-password' : 'off' });
      return { field, label, secret, optional, pem, input, original: shown, element: [h('label', { for: id }, label), input] };
    });
    groups[type] = h('div', { class: 'auth-fields', hidden: type !== storedType, 'data-auth': type }, inputs[type].map((i) => i.element));
  }
  select.addEventListener('change', () => {
    for (const [type, group] of Object.entries(groups)) group.hidden = type !== select.value;
  });
  const element = [h('label', { for: 'auth' }, 'Authentication'), select,
    hint('auth-help', 'Sent to the endpoint with every attempt: Basic and bearer as Authorization; OAuth2 fetches a bearer token from the token URL; mTLS presents a client certificate. Secrets are stored encrypted and never shown again.'),
    Object.values(groups), errorSlot('auth')];

  /** `undefined`: unchanged; `null`: removed; else the whole auth object. */
  function change() {
    const type = select.value;
    const fields = inputs[type] || [];
    const read = (f) => (f.secret || f.pem ? f.input.value : f.input.value.trim());
    const edited = fields.some((f) => (f.secret ? read(f) !== '' : read(f) !== f.original));
    if (type === storedType && !edited) return undefined;
    if (type === 'none') return null;
    const auth = { type };
    for (const f of fields) {
      const value = read(f);
      if (f.secret && value === '' && type === storedType) {
        throw new FormProblem('auth', `Enter the ${f.label.toLowerCase()} again: a change to the authentication replaces it whole, and a stored secret cannot be read back.`);
      }
      auth[f.field] = f.optional && value === '' ? null : value;
    }
    return auth;
  }
  return { element, change };
}

/** "Try it": the filter against the catalogue's example of one event type. */
function filterTry(textarea, types) {
  const sample = h('select', { id: 'filter-sample', 'aria-label': 'Example event to try the filter on' },
    types.map((t) => h('option', { value: t.type }, t.type)));
  const result = h('span', { class: 'filter-result', 'data-test': 'filter-result', 'aria-live': 'polite' });
  const button = h('button', {
    type: 'button', class: 'secondary small', onclick: async () => {
      const error = textarea.form && textarea.form.querySelector('[data-error-for="filter"]');
      if (error) error.textContent = '';
      textarea.removeAttribute('aria-invalid');
      const show = (message) => {
        render(result, '');
        if (error) error.textContent = message;
        textarea.setAttribute('aria-invalid', 'true');
      };
      let filter;
      try {
        filter = parseFilter(textarea.value);
      } catch (e) {
        show(e.message);
        return;
      }
      if (filter === null) {
        show('Write a filter to try: with none, every subscribed event is delivered.');
        return;
      }
      const type = types.find((t) => t.type === sample.value);
      button.disabled = true;
      render(result, 'Trying…');
      try {
        const { data } = await post('/webhooks/filter-test', { filter, event: type.example });
        render(result, data.matches
          ? [h('span', { class: 'badge delivered' }, 'Match'), ` the example ${type.type} would be delivered`]
          : [h('span', { class: 'badge failed' }, 'No match'), ` the example ${type.type} would not be delivered`]);
      } catch (e) {
        show(e.details && e.details[0] ? e.details[0].message : e.message);
      } finally {
        button.disabled = false;
      }
    },
  }, 'Try it');
  return h('div', { class: 'filter-try' }, h('span', { class: 'muted' }, 'Try it on the example of'), sample, button, result);
}

/** The filter's JSON, `null` when empty; a FormProblem when it is not JSON. */
function parseFilter(text) {
  if (text.trim() === '') return null;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new FormProblem('filter', `The filter is not valid JSON: ${e.message}`);
  }
}

function field(id, label, input, help, ...helpText) {
  return [h('label', { for: id }, label), input, hint(help, ...helpText), errorSlot(id)];
}

/**
 * The form's "Advanced" part for `webhook` (null on create). `changes()`
 * gives the body fields to send: on create those set, on edit those changed
 * (`null` clears one); it throws a FormProblem for what cannot be sent.
 */
export async function advancedOptions(webhook, types) {
  const l = await limits();
  const w = webhook || {};
  const maxRate = l.maxRateLimitPerSecond || 10000;
  const maxTimeout = l.maxTimeoutMs || 60000;

  const originalFilter = w.filter ? pretty(w.filter) : '';
  const filter = h('textarea', { id: 'filter', name: 'filter', rows: 6, spellcheck: 'false', 'aria-describedby': 'filter-help', placeholder: '{"data": {"balance": {"$lt": 10}}}' }, originalFilter);
  const rateOriginal = w.rateLimitPerSecond ? String(w.rateLimitPerSecond) : '';
  const rate = h('input', { id: 'rateLimitPerSecond', type: 'number', min: 1, max: maxRate, step: 1, inputmode: 'numeric', value: rateOriginal, 'aria-describedby': 'rate-help' });
  const scheduleOriginal = (w.retrySchedule || []).join(', ');
  const schedule = h('input', { id: 'retrySchedule', type: 'text', placeholder: '5s, 1m, 10m', value: scheduleOriginal, autocomplete: 'off', 'aria-describedby': 'schedule-help' });
  const timeoutOriginal = w.timeoutMs ? String(w.timeoutMs) : '';
  const timeout = h('input', { id: 'timeoutMs', type: 'number', min: 1, max: maxTimeout, step: 1, inputmode: 'numeric', value: timeoutOriginal, 'aria-describedby': 'timeout-help' });
  // One select for ordering and its key: "" (any order), "webhook" or "userId".
  const orderOriginal = w.ordering === 'fifo' ? (w.orderingKey || 'webhook') : '';
  const order = h('select', { id: 'ordering', name: 'ordering', 'aria-describedby': 'ordering-help' },
    h('option', { value: '', selected: orderOriginal === '' }, 'Any order (fastest)'),
    h('option', { value: 'webhook', selected: orderOriginal === 'webhook' }, 'First in, first out: one order for the endpoint'),
    h('option', { value: 'userId', selected: orderOriginal === 'userId' }, 'First in, first out: one order per user'));
  const signingOriginal = w.signing || 'hmac';
  const signing = h('select', { id: 'signing', name: 'signing', 'aria-describedby': 'signing-help' },
    h('option', { value: 'hmac', selected: signingOriginal === 'hmac' }, 'HMAC-SHA256 with the signing secret (v1)'),
    h('option', { value: 'ed25519', selected: signingOriginal === 'ed25519' }, 'Ed25519 with a public key (v1a)'));
  const headers = headerRows(w.headers || {});
  const auth = authFields(w.auth || null);

  const anySet = Boolean(w.filter || w.rateLimitPerSecond || w.retrySchedule || w.timeoutMs || w.ordering
    || Object.keys(w.headers || {}).length || w.auth || signingOriginal !== 'hmac');
  const element = h('details', { class: 'advanced', open: anySet },
    h('summary', {}, 'Advanced: filter, pacing, order, headers, authentication, signing'),
    h('fieldset', {},
      h('legend', {}, 'Delivery controls'),
      field('filter', 'Payload filter (JSON)', filter, 'filter-help',
        'Only events whose envelope (id, eventType, userId, data, metadata) matches are delivered. Keys are paths; operators $eq $neq $gt $gte $lt $lte $in $nin $startsWith $endsWith $contains $exist $and $or $not. At most 4 KiB. Empty: every subscribed event.'),
      filterTry(filter, types),
      field('rateLimitPerSecond', 'Rate limit (deliveries a second)', rate, 'rate-help',
        `1 to ${maxRate}. Empty: unlimited. Answers 429, 502, 503 and 504 slow it down for a while.`),
      field('retrySchedule', 'Retry schedule', schedule, 'schedule-help',
        `Waits before each retry, separated by commas: 1 to ${l.maxRetryWaits || 50} waits in ms, s, m, h or d, each at most ${l.maxRetryWait || '30d'}. Empty: the service's schedule.`),
      field('timeoutMs', 'Timeout (ms)', timeout, 'timeout-help',
        `1 to ${maxTimeout} ms for a whole attempt. Empty: the service's timeout.`),
      field('ordering', 'Delivery order', order, 'ordering-help',
        'First in, first out sends one delivery of an order at a time, in the order events were accepted; a delivery that keeps failing holds back the rest of its order until it succeeds or fails for good.')),
    h('fieldset', {},
      h('legend', {}, 'Reaching the endpoint'),
      h('p', { class: 'label' }, 'Custom headers'),
      hint('headers-help', 'Sent with every attempt. Up to 32; values are stored encrypted and shown masked. Changing them replaces them all, so type again the values you keep.'),
      headers.element,
      errorSlot('headers'),
      auth.element,
      field('signing', 'Signature scheme', signing, 'signing-help',
        'X-Webhook-Signature is always HMAC with the secret. Ed25519 signs webhook-signature with a key the service makes; receivers verify with its public key, shown on the endpoint\'s page.')));

  function changes() {
    const body = {};
    // A control left empty on create is simply not sent.
    const put = (name, value) => {
      if (value !== null || webhook) body[name] = value;
    };
    const text = filter.value.trim();
    if (text !== originalFilter.trim()) {
      const parsed = parseFilter(text);
      if (parsed !== null || webhook) body.filter = parsed;
    }
    const number = (input, original) => {
      const value = input.value.trim();
      if (value === original) return undefined;
      return value === '' ? null : Number(value);
    };
    const rateValue = number(rate, rateOriginal);
    if (rateValue !== undefined) put('rateLimitPerSecond', rateValue);
    const timeoutValue = number(timeout, timeoutOriginal);
    if (timeoutValue !== undefined) put('timeoutMs', timeoutValue);
    const waits = schedule.value.split(',').map((s) => s.trim()).filter(Boolean);
    if (waits.join(', ') !== scheduleOriginal) put('retrySchedule', waits.length ? waits : null);
    const headerChange = headers.change();
    if (headerChange !== undefined) body.headers = headerChange;
    const authChange = auth.change();
    if (authChange !== undefined) body.auth = authChange;
    if (order.value !== orderOriginal) {
      if (order.value === '') put('ordering', null);
      else { body.ordering = 'fifo'; body.orderingKey = order.value; }
    }
    if (signing.value !== signingOriginal) body.signing = signing.value;
    return body;
  }
  return { element, changes };
}

function fact(label, test, ...value) {
  return [h('dt', {}, label), h('dd', { 'data-test': test }, ...value)];
}

function authSummary(auth) {
  if (!auth) return h('span', { class: 'muted' }, 'None');
  const label = (AUTH_TYPES.find(([type]) => type === auth.type) || [auth.type, auth.type])[1];
  const parts = (AUTH_FIELDS[auth.type] || [])
    .filter(([name]) => auth[name] !== null && auth[name] !== undefined && name !== 'certificate')
    .map(([name, fieldLabel]) => h('span', { class: 'auth-part' }, `${fieldLabel.replace(/ \((optional|PEM)\)$/, '')}: `, h('code', {}, String(auth[name]))));
  return [label, parts.length ? h('span', { class: 'auth-parts' }, parts) : null,
    auth.certificate ? h('details', {}, h('summary', {}, 'Client certificate'), pre(auth.certificate, 'Client certificate')) : null];
}

/** The endpoint page's summary of every option, secrets masked as the API shows them. */
export function optionsSection(webhook) {
  const headerNames = Object.keys(webhook.headers || {});
  const ed25519 = webhook.signing === 'ed25519';
  return h('section', { class: 'card', 'aria-labelledby': 'options-h' },
    h('h2', { id: 'options-h' }, 'Delivery controls and endpoint options'),
    h('dl', { class: 'facts' },
      fact('Filter', 'option-filter', webhook.filter
        ? pre(pretty(webhook.filter), 'Payload filter')
        : h('span', { class: 'muted' }, 'None: every subscribed event is delivered')),
      fact('Rate limit', 'option-rate-limit', webhook.rateLimitPerSecond
        ? `${webhook.rateLimitPerSecond} deliveries a second` : h('span', { class: 'muted' }, 'Unlimited')),
      fact('Retry schedule', 'option-retry-schedule', webhook.retrySchedule
        ? webhook.retrySchedule.join(', ') : h('span', { class: 'muted' }, 'The service\'s schedule')),
      fact('Timeout', 'option-timeout', webhook.timeoutMs
        ? `${webhook.timeoutMs} ms` : h('span', { class: 'muted' }, 'The service\'s timeout')),
      fact('Delivery order', 'option-ordering', webhook.ordering === 'fifo'
        ? (webhook.orderingKey === 'userId' ? 'First in, first out, one order per user' : 'First in, first out, one order for the endpoint')
        : h('span', { class: 'muted' }, 'Any order')),
      fact('Custom headers', 'option-headers', headerNames.length
        ? h('ul', { class: 'plain' }, headerNames.map((name) => h('li', {}, h('code', {}, `${name}: ${webhook.headers[name]}`))))
        : h('span', { class: 'muted' }, 'None')),
      fact('Authentication', 'option-auth', authSummary(webhook.auth)),
      fact('Signing', 'option-signing', ed25519 ? 'Ed25519 (webhook-signature v1a)' : 'HMAC-SHA256 (webhook-signature v1)')),
    ed25519 && webhook.publicKey ? h('div', {},
      h('p', {}, 'Receivers verify webhook-signature with this public key:'),
      h('p', { class: 'secret-row' }, h('code', { class: 'secret', 'data-test': 'public-key' }, webhook.publicKey), copyButton(webhook.publicKey, 'Copy public key')),
      webhook.previousPublicKey ? h('p', { class: 'secret-row muted' }, 'The previous key still signs during the rotation: ',
        h('code', { class: 'secret', 'data-test': 'previous-public-key' }, webhook.previousPublicKey)) : null) : null);
}

/**
 * The orders of a first-in-first-out endpoint that have deliveries
 * waiting, each with the delivery at its head (`GET .../ordering`); a head
 * that has failed holds the rest of its order back, and says so.
 */
export function ordersSection(webhook) {
  if (webhook.ordering !== 'fifo') return null;
  const eid = encodeURIComponent(webhook.id);
  const body = h('div', { 'data-test': 'orders' }, h('p', { class: 'muted' }, 'Loading…'));
  get(`/webhooks/${eid}/ordering`)
    .then((answer) => {
      const orders = answer.data.orders || [];
      if (!orders.length) {
        render(body, h('p', { class: 'muted' }, 'Nothing is waiting: every order is up to date.'));
        return;
      }
      render(body, h('table', {},
        h('thead', {}, h('tr', {}, h('th', {}, 'Order'), h('th', {}, 'Head delivery'), h('th', {}, 'State'), h('th', {}, 'Waiting behind it'))),
        h('tbody', {}, orders.map((o) => h('tr', { 'data-test': 'order-row' },
          h('td', {}, o.key === null ? 'The endpoint' : h('code', {}, o.key)),
          h('td', {}, h('a', { href: `#/endpoints/${eid}/deliveries/${encodeURIComponent(o.headDeliveryId)}` }, h('code', {}, o.headDeliveryId))),
          h('td', {}, o.blocked
            ? h('span', { class: 'error-text' }, `Blocked: ${o.headStatus} after ${o.headAttempts} attempt${o.headAttempts === 1 ? '' : 's'}`)
            : o.headStatus),
          h('td', {}, String(o.waiting)))))));
    })
    .catch((e) => render(body, h('p', { class: 'error-text' }, e.message)));
  return h('section', { class: 'card', 'aria-labelledby': 'orders-h' },
    h('h2', { id: 'orders-h' }, 'Orders waiting'),
    h('p', { class: 'muted' }, 'Deliveries of this endpoint go one at a time in the order events were accepted. Up to 100 orders with deliveries waiting:'),
    body);
}

