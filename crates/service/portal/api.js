// Calls to the service's /api/v1 with the portal link's token.
//
// The token arrives in the URL fragment (#token=...), which browsers never
// send to a server, and is kept in sessionStorage: no cookie, so the portal
// works inside a third-party iframe where cookies are blocked.

const KEY = 'webhookPortalToken';

/** Moves a `#token=` fragment into sessionStorage and out of the address bar. */
export function takeTokenFromUrl() {
  const match = location.hash.match(/^#token=([^&]+)/);
  if (match) {
    sessionStorage.setItem(KEY, decodeURIComponent(match[1]));
    history.replaceState(null, '', location.pathname + location.search + '#/endpoints');
  }
}

export function token() {
  return sessionStorage.getItem(KEY);
}

/** The token's claims, for display only: the service checks every call. */
export function claims() {
  const t = token();
  if (!t) return null;
  try {
    const part = t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
    const roles = Array.isArray(json.roles) ? json.roles : String(json.roles || '').split(',');
    return {
      user: String(json.sub || json.userId || json.id || ''),
      admin: roles.includes('admin') || json.role === 'admin',
      readOnly: json.aud === 'webhook-portal' && json.ro !== false,
      exp: typeof json.exp === 'number' ? json.exp : null,
    };
  } catch {
    return { user: '', admin: false, readOnly: false, exp: null };
  }
}

/** An answer of the service that is not a success, with its message. */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = Array.isArray(details) ? details : [];
  }
}

/** `{data, meta, message}` of a success; throws ApiError otherwise. */
export async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token() || ''}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(`/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, 'NETWORK', `The webhook service cannot be reached (${e.message}).`);
  }
  let json = null;
  try {
    json = await response.json();
  } catch {
    json = null;
  }
  if (!response.ok || !json || json.success === false) {
    const error = (json && json.error) || {};
    const message = error.message || (json && json.message) || `The service answered ${response.status}.`;
    throw new ApiError(response.status, error.code || `HTTP_${response.status}`, message, error.details);
  }
  return json;
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body);
