// Talking to the daemon: the same JSON API every client uses. A logged-in page sends its
// login's CSRF token on every write; the login itself is an HttpOnly cookie this code never
// sees.

let csrf = null;
let unauthorized = () => {};

export function setCsrf(token) { csrf = token || null; }
/** Called when the daemon answers 401 (no login, or it ended). */
export function onUnauthorized(fn) { unauthorized = fn; }

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** A JSON request; resolves with the parsed answer, rejects with the API's error message. */
export async function api(method, path, body, accept = 'application/json') {
  const headers = { Accept: accept };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (csrf && method !== 'GET') headers['X-CSRF-Token'] = csrf;
  let res;
  try {
    res = await fetch(path, {
      method, headers, credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, `the daemon cannot be reached (${err.message})`);
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) {
    const message = data && typeof data.error === 'string' ? data.error : `HTTP ${res.status}`;
    if (res.status === 401) unauthorized(message);
    throw new ApiError(res.status, message);
  }
  return data === null ? text : data;
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body);

/** A query string from the non-empty entries of `params`. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v != null && v !== '') q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : '';
}
