// The event catalogue and how to verify a signature.

import { h, render, loading, errorBox, pre, pretty } from './dom.js';
import { eventTypes } from './endpoints.js';
import { SNIPPETS } from './snippets.js';

/** `#/catalogue` */
export async function catalogue(main, ctx, showVerification) {
  render(main, h('h1', {}, 'Event catalogue'), loading());
  let types;
  try {
    types = await eventTypes();
  } catch (e) {
    render(main, h('h1', {}, 'Event catalogue'), errorBox(e, 'The catalogue cannot be loaded'));
    return;
  }
  const categories = [...new Set(types.map((t) => t.category))];
  render(main,
    h('h1', {}, 'Event catalogue'),
    h('p', {}, `${types.length} event types. An endpoint subscribes to exact types, to a whole category (such as user.*), or to every event (*). `,
      h('a', { href: '#/catalogue/verify' }, 'How to verify signatures')),
    categories.map((c) => h('section', { 'aria-labelledby': `cat-${c}` },
      h('h2', { id: `cat-${c}` }, `${c}.*`),
      h('ul', { class: 'cards' }, types.filter((t) => t.category === c).map((t) => h('li', { class: 'card', id: `type-${t.type}` },
        h('h3', {}, h('code', {}, t.type)),
        h('p', {}, t.description),
        t.service ? h('p', { class: 'muted' }, `Sent by ${t.service}`) : null,
        h('details', {}, h('summary', {}, 'Example payload'), pre(pretty(t.example), `Example of ${t.type}`))))))),
    h('section', { 'aria-labelledby': 'verify-h' },
      h('h2', { id: 'verify-h' }, 'Verifying signatures'),
      h('p', {}, 'Every request carries X-Webhook-Signature: sha256= followed by the hex HMAC-SHA256 of the raw body, keyed with your endpoint\'s secret (and the Standard Webhooks headers webhook-id, webhook-timestamp, webhook-signature). Compute it over the raw body, compare in constant time, and ignore an event id you have already processed.'),
      SNIPPETS.map((s, i) => h('details', { class: 'card', open: i === 0 },
        h('summary', {}, s.title),
        pre(s.code, `${s.title} example`)))));
  if (showVerification) document.getElementById('verify-h').scrollIntoView();
}
