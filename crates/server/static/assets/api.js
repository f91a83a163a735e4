// The dashboard's only way to the gateway: the public REST API under /api/v1, authenticated by the
// HttpOnly session cookie (scripts never see it) plus the session's CSRF token on writes.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const session = { csrf: null };
let onUnauthorized = () => {};

/** Called when any request answers 401 (session ended, token revoked or rotated elsewhere). */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export function setCsrf(csrf) {
  session.csrf = csrf;
}

/**
 * api('GET', '/me') → parsed JSON (or null for 204). Throws ApiError with the server's message.
 */
export async function api(method, path, body, { quiet401 = false } = {}) {
  const headers = { Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (method !== 'GET' && method !== 'HEAD' && session.csrf) headers['X-CSRF-Token'] = session.csrf;
  let resp;
  try {
    resp = await fetch(`/api/v1${path}`, init);
  } catch (e) {
    throw new ApiError(0, 'network', 'Cannot reach the gateway. Check your connection and try again.');
  }
  if (resp.status === 204) return null;
  const text = await resp.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!resp.ok) {
    const err = data && data.error ? data.error : null;
    const message = err && err.message ? err.message : `The gateway answered ${resp.status}.`;
    const e = new ApiError(resp.status, err && err.code ? err.code : 'http', message);
    if (resp.status === 401 && !quiet401) onUnauthorized(e);
    throw e;
  }
  return data;
}

/** True when the route does not exist on this gateway (an older build, or a feature not yet merged). */
export function isMissingRoute(e) {
  return e instanceof ApiError && e.status === 404 && /no such API route/i.test(e.message);
}

export const get = (path, opts) => api('GET', path, undefined, opts);
export const post = (path, body, opts) => api('POST', path, body, opts);
export const del = (path, opts) => api('DELETE', path, undefined, opts);

/** Exchanges a token for the session cookie; the token is not kept anywhere. */
export async function login(token) {
  const r = await api('POST', '/auth/login', { token }, { quiet401: true });
  setCsrf(r.csrf);
  return r;
}

/** The current cookie session, or null when there is none. */
export async function currentSession() {
  try {
    const r = await api('GET', '/auth/session', undefined, { quiet401: true });
    setCsrf(r.csrf);
    return r;
  } catch (e) {
    if (e instanceof ApiError && (e.status === 401 || e.status === 400)) return null;
    throw e;
  }
}

export async function logout() {
  try {
    await api('POST', '/auth/logout', undefined, { quiet401: true });
  } finally {
    setCsrf(null);
  }
}

/** GET /health, /ready (outside /api/v1; public). */
export async function probe(path) {
  try {
    const resp = await fetch(path, { cache: 'no-store', headers: { Accept: 'application/json' } });
    const data = await resp.json().catch(() => null);
    return { ok: resp.ok, status: resp.status, data };
  } catch {
    return { ok: false, status: 0, data: null };
  }
}

export const q = encodeURIComponent;
