// The portal's only door to the platform: the public REST API (/v1), with fetch.
// The access token lives in this module's memory only (never localStorage); the refresh token
// is an HttpOnly cookie the browser sends to /v1/auth only, and every use of it echoes the
// readable atlilith_csrf cookie in X-CSRF-Token.

const CSRF_COOKIE = "atlilith_csrf";

/** A refused call, from the API's problem+json: show `message` and `hint` where it happened. */
export class ApiError extends Error {
  constructor({ status = 0, code = "network_error", title = "", detail = "", hint = "", fields = [], trace_id = "" } = {}) {
    super(detail || title || code);
    this.status = status;
    this.code = code;
    this.title = title;
    this.detail = detail;
    this.hint = hint;
    this.fields = fields; // [{field, message, code}]
    this.traceId = trace_id;
  }
  /** The message for one input field, when the API named it. */
  fieldMessage(name) {
    const hit = this.fields.find((f) => f.field === name || f.field.endsWith("." + name));
    return hit ? hit.message : "";
  }
}

let auth = null; // the last AuthOut: {access_token, expires_at, person, context}
const listeners = new Set();

/** Subscribe to sign-in / sign-out / context changes; returns the unsubscribe function. */
export function onAuthChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function setAuth(next) {
  auth = next;
  for (const fn of listeners) fn(auth);
}

/** The signed-in person and current context ({kind, org, role}), or null when signed out. */
export function currentAuth() {
  return auth ? { person: auth.person, context: auth.context } : null;
}

function readCookie(name) {
  for (const part of document.cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return decodeURIComponent(v.join("="));
  }
  return "";
}

async function problem(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    body = {};
  }
  return new ApiError({
    status: response.status,
    code: body.code || `http_${response.status}`,
    title: body.title || response.statusText,
    detail: body.detail || body.message || "",
    hint: body.hint || "",
    fields: body.errors || [],
    trace_id: body.trace_id || response.headers.get("x-trace-id") || "",
  });
}

async function send(method, path, { body, query, headers = {}, token } = {}) {
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") params.set(k, v);
    const qs = params.toString();
    if (qs) url += "?" + qs;
  }
  const h = { Accept: "application/json", ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  if (body !== undefined) h["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch (err) {
    throw new ApiError({ code: "network_error", title: "The server could not be reached", hint: "check your connection and try again" });
  }
  if (!response.ok) throw await problem(response);
  if (response.status === 204) return null;
  // A few routes answer text (a component's SKILL.md is markdown).
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

// Tabs share one refresh cookie and each use rotates it: two tabs refreshing at once would
// present the same token twice, which the API treats as theft. A Web Lock serialises them.
async function withRefreshLock(fn) {
  if (navigator.locks && navigator.locks.request) return navigator.locks.request("atlilith-refresh", fn);
  return fn();
}

/** Resume the browser session from the refresh cookie. Resolves to the auth or null. */
export async function restore() {
  if (!readCookie(CSRF_COOKIE)) {
    setAuth(null);
    return null;
  }
  try {
    const out = await withRefreshLock(() =>
      send("POST", "/v1/auth/refresh", { headers: { "X-CSRF-Token": readCookie(CSRF_COOKIE) } }),
    );
    setAuth(out);
    return out;
  } catch (err) {
    if (err.status === 401 || err.status === 403) {
      setAuth(null);
      return null;
    }
    throw err;
  }
}

export async function signIn(login, password) {
  setAuth(await send("POST", "/v1/auth/login", { body: { login, password, refresh_cookie: true } }));
  return auth;
}

/** data: {email, password, slug, display_name} */
export async function signUp(data) {
  setAuth(await send("POST", "/v1/auth/signup", { body: { ...data, refresh_cookie: true } }));
  return auth;
}

export async function signOut() {
  try {
    // Through `request`: an expired access token is refreshed first, so the session is still
    // revoked and the cookies cleared.
    if (auth) await request("POST", "/v1/auth/logout");
  } finally {
    setAuth(null);
  }
}

/** Act in an org (slug) or personally (null): a new access token for that context. */
export async function switchTo(org) {
  setAuth(await request("POST", "/v1/auth/switch", { body: { org } }));
  return auth;
}

/** The slug of the org the access token acts in, or null for personal. */
export function contextSlug() {
  return auth && auth.context.kind === "org" ? auth.context.org.slug : null;
}

/** Call the API as the signed-in person; an expired access token is refreshed once. */
export async function request(method, path, opts = {}) {
  if (!auth) throw new ApiError({ status: 401, code: "signed_out", title: "You are signed out", hint: "sign in again" });
  try {
    return await send(method, path, { ...opts, token: auth.access_token });
  } catch (err) {
    if (err.status !== 401 || err.code === "invalid_credentials") throw err;
    const wanted = contextSlug();
    const resumed = await restore();
    if (!resumed) throw err;
    // The refreshed token acts in the session's last context (another tab may have switched
    // it); put this call back in ours first.
    if (contextSlug() !== wanted) {
      setAuth(await send("POST", "/v1/auth/switch", { body: { org: wanted }, token: auth.access_token }));
    }
    return send(method, path, { ...opts, token: auth.access_token });
  }
}

export const get = (path, query) => request("GET", path, { query });
export const post = (path, body, opts = {}) => request("POST", path, { ...opts, body });
export const patch = (path, body, opts = {}) => request("PATCH", path, { ...opts, body });
export const put = (path, body, opts = {}) => request("PUT", path, { ...opts, body });
export const del = (path, opts = {}) => request("DELETE", path, opts);

/** Every item of a paged list (limit/cursor), up to `max` items. */
export async function getAll(path, query = {}, max = 500) {
  const items = [];
  let cursor;
  do {
    const page = await get(path, { ...query, limit: 100, cursor });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}
