// The portal's shell: theme, navigation and the hash router.

import { takeTokenFromUrl, token, claims } from './api.js';
import { h, render, errorBox, timeLong } from './dom.js';
import { endpointList, endpointForm, endpointDetail } from './endpoints.js';
import { deliveryLog, deliveryDetail } from './deliveries.js';
import { catalogue } from './catalogue.js';
import { overview } from './overview.js';

takeTokenFromUrl();

const main = document.getElementById('main');
let leaving = [];

const ctx = {
  claims: claims(),
  /** Runs `fn` when the page is left (stops polling). */
  onLeave(fn) {
    leaving.push(fn);
  },
  go(hash) {
    location.hash = hash;
  },
};

async function applyTheme() {
  let config = { title: 'Webhooks', brandColor: null };
  try {
    const response = await fetch('/portal/config.json');
    if (response.ok) config = await response.json();
  } catch {
    // The defaults of the stylesheet stay.
  }
  // An embedding application may theme its link: ?title=...&brand=%23rrggbb
  const query = new URLSearchParams(location.search);
  const title = (query.get('title') || config.title || 'Webhooks').slice(0, 80);
  const brand = query.get('brand') || config.brandColor;
  document.getElementById('title').textContent = title;
  document.title = title;
  if (brand && /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(brand)) {
    document.documentElement.style.setProperty('--brand', brand);
  }
}

const routes = [
  [/^#\/endpoints\/new$/, () => endpointForm(main, ctx, null)],
  [/^#\/endpoints\/([^/]+)\/edit$/, (id) => endpointForm(main, ctx, id)],
  [/^#\/endpoints\/([^/]+)\/log$/, (id) => deliveryLog(main, ctx, id)],
  [/^#\/endpoints\/([^/]+)\/deliveries\/([^/]+)$/, (id, did) => deliveryDetail(main, ctx, id, did)],
  [/^#\/endpoints\/([^/]+)$/, (id) => endpointDetail(main, ctx, id)],
  [/^#\/catalogue(\/verify)?$/, (verify) => catalogue(main, ctx, Boolean(verify))],
  [/^#\/overview$/, () => overview(main, ctx)],
  [/^(#\/endpoints|#\/?|)$/, () => endpointList(main, ctx)],
];

function navigation() {
  const links = [['#/endpoints', 'Endpoints'], ['#/catalogue', 'Event catalogue']];
  if (ctx.claims && ctx.claims.admin) links.push(['#/overview', 'Operator overview']);
  const current = location.hash || '#/endpoints';
  render(document.getElementById('nav'),
    links.map(([href, label]) => h('a', {
      href,
      'aria-current': current.startsWith(href) ? 'page' : null,
    }, label)),
    h('a', { href: '/docs', target: '_blank', rel: 'noopener' }, 'API reference'));
  const c = ctx.claims;
  render(document.getElementById('who'), c && c.user
    ? [c.user, c.admin ? ' · operator' : '', c.readOnly ? ' · read-only' : '']
    : '');
}

async function route() {
  for (const fn of leaving) fn();
  leaving = [];
  // A new link opened in the same tab arrives as a fragment change.
  takeTokenFromUrl();
  // A new page starts at its top, as a page load would.
  window.scrollTo(0, 0);
  const toastBox = document.getElementById('toast');
  if (toastBox) toastBox.classList.remove('show');
  ctx.claims = claims();
  navigation();
  if (!token()) {
    render(main, h('section', { class: 'state' },
      h('h1', {}, 'Open the portal from a link'),
      h('p', {}, 'This portal is opened through a link your platform gives you (it ends in #token=…). Ask your application for a new link.'),
      h('p', {}, h('a', { href: '/docs' }, 'API reference'))));
    return;
  }
  if (ctx.claims && ctx.claims.exp && ctx.claims.exp * 1000 < Date.now()) {
    render(main, errorBox(
      { status: 401, message: 'This portal link has expired.' },
      'Link expired'), h('p', { class: 'muted' }, 'It expired ', timeLong(new Date(ctx.claims.exp * 1000).toISOString()), '.'));
    return;
  }
  const hash = location.hash;
  for (const [pattern, view] of routes) {
    const match = hash.match(pattern);
    if (match) {
      try {
        await view(...match.slice(1).map((part) => (part === undefined ? undefined : decodeURIComponent(part))));
      } catch (e) {
        render(main, errorBox(e));
      }
      const heading = main.querySelector('h1');
      if (heading && document.activeElement === document.body) {
        heading.setAttribute('tabindex', '-1');
        heading.focus({ preventScroll: true });
      }
      return;
    }
  }
  render(main, errorBox({ message: `There is no page at ${hash}.` }, 'Not found'));
}

window.addEventListener('hashchange', route);
applyTheme();
route();
