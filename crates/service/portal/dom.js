// Small DOM helpers. Every value from the API goes in as text, never as
// markup, so nothing a producer or receiver sent can run in the page.

/** Builds an element: `h('a', {href: '#', class: 'x', onclick: fn}, 'text', child)`. */
export function h(tag, attrs, ...children) {
  const el = tag.startsWith('svg:')
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (value === true) {
      el.setAttribute(name, '');
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Replaces the contents of `el`. */
export function render(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

/** A time in the viewer's zone. */
export function localTime(iso) {
  return iso ? dateTime.format(new Date(iso)) : '—';
}

/** "3 minutes ago", "in 2 hours". */
export function relative(iso) {
  if (!iso) return '';
  const seconds = (new Date(iso).getTime() - Date.now()) / 1000;
  const units = [['year', 31536000], ['month', 2592000], ['day', 86400], ['hour', 3600], ['minute', 60], ['second', 1]];
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size || unit === 'second') {
      return relativeFormat.format(Math.round(seconds / size), unit);
    }
  }
  return '';
}

/** `<time>`: relative time, the local time on hover and for screen readers. */
export function time(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: iso, title: localTime(iso) }, `${relative(iso)}`, h('span', { class: 'sr-only' }, ` (${localTime(iso)})`));
}

/** A time with both forms visible. */
export function timeLong(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: iso }, `${localTime(iso)} (${relative(iso)})`);
}

export function loading(text = 'Loading…') {
  return h('p', { class: 'state', role: 'status' }, text);
}

export function empty(text, ...actions) {
  return h('div', { class: 'state empty' }, h('p', {}, text), actions);
}

/** An error in words: the API's message, and each field's problem. */
export function errorBox(error, title = 'Something went wrong') {
  const hint = error && error.status === 401
    ? 'Your portal link is not valid or has expired. Ask the application that sent you here for a new link.'
    : error && error.status === 403
      ? 'This link does not allow that.'
      : null;
  return h('div', { class: 'error', role: 'alert' },
    h('strong', {}, title),
    h('p', {}, (error && error.message) || String(error)),
    hint && h('p', {}, hint),
    error && error.details && error.details.length > 1
      ? h('ul', {}, error.details.map((d) => h('li', {}, d.message)))
      : null);
}

/** A short confirmation in a modal dialog; resolves to true when confirmed. */
export function confirmDialog(message, confirmLabel = 'Confirm') {
  return new Promise((resolve) => {
    const dialog = h('dialog', { class: 'dialog', 'aria-labelledby': 'dialog-title' },
      h('form', { method: 'dialog' },
        h('p', { id: 'dialog-title' }, message),
        h('div', { class: 'actions' },
          h('button', { value: 'cancel', class: 'secondary', autofocus: true }, 'Cancel'),
          h('button', { value: 'confirm', class: 'danger', 'data-test': 'confirm' }, confirmLabel))));
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue === 'confirm');
      dialog.remove();
    });
    document.body.appendChild(dialog);
    dialog.showModal();
  });
}

/** A polite announcement for screen readers and a visible toast. */
export function toast(message) {
  let box = document.getElementById('toast');
  if (!box) {
    box = h('div', { id: 'toast', class: 'toast', role: 'status', 'aria-live': 'polite' });
    document.body.appendChild(box);
  }
  box.textContent = message;
  box.classList.add('show');
  clearTimeout(box.hideTimer);
  box.hideTimer = setTimeout(() => box.classList.remove('show'), 4000);
}

export function copyButton(text, label = 'Copy') {
  return h('button', {
    type: 'button',
    class: 'secondary small',
    onclick: async (e) => {
      try {
        await navigator.clipboard.writeText(text);
        e.target.textContent = 'Copied';
      } catch {
        e.target.textContent = 'Select and copy';
      }
    },
  }, label);
}

export function badge(status) {
  return h('span', { class: `badge ${status}` }, status);
}

export function pre(text, label) {
  return h('pre', { tabindex: 0, 'aria-label': label || null }, text);
}

export function pretty(value) {
  if (typeof value === 'string') {
    try {
      return JSON.stringify(JSON.parse(value), null, 2);
    } catch {
      return value;
    }
  }
  return JSON.stringify(value, null, 2);
}

export function percent(rate) {
  return rate === null || rate === undefined ? '—' : `${(rate * 100).toFixed(rate === 1 || rate === 0 ? 0 : 1)} %`;
}
