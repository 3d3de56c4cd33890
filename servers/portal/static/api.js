// The portal's only door to the platform: the public REST API (/v1), with fetch.
// The access token lives in this module's memory only (never in web storage); the refresh token
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
const lostListeners = new Set();

/** Subscribe to "the person is no longer a member of the org this page acts in" (a call was
 * refused 403 `not_a_member`, e.g. they were removed meanwhile); returns the unsubscribe. */
export function onContextLost(fn) {
  lostListeners.add(fn);
  return () => lostListeners.delete(fn);
}

let lostToken = null; // told once per access token: the listeners' own calls may meet it again

function noticeLost(err) {
  if (err.status === 403 && err.code === "not_a_member" && auth && auth.context.kind === "org") {
    if (lostToken !== auth.access_token) {
      lostToken = auth.access_token;
      for (const fn of lostListeners) fn(err);
    }
    return true;
  }
  return false;
}

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

async function send(method, path, { body, query, headers = {}, token, tagged = false } = {}) {
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
  const data = type.includes("json") ? await response.json() : await response.text();
  return tagged ? { data, etag: response.headers.get("etag") } : data;
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
    noticeLost(err);
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
/** One resource and the ETag of that read: {data, etag}. An edit form keeps both and saves
 * with `ifMatch(version)`, so the save applies to the version the person saw or is refused
 * (412) — not to whatever a list, read earlier, or a later read in this tab last showed. */
export const getTagged = (path, query) => request("GET", path, { query, tagged: true });
/** The headers of a write conditional on `version` (from `getTagged`). */
export const ifMatch = (version) => (version && version.etag ? { "If-Match": version.etag } : {});
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

// — live events (inbox) —

function parseFrame(block) {
  const frame = { event: "message", id: null, data: "" };
  let seen = false;
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const at = line.indexOf(":");
    const key = at < 0 ? line : line.slice(0, at);
    const value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
    if (key === "event") frame.event = value;
    else if (key === "id") frame.id = value;
    else if (key === "data") frame.data += (frame.data ? "\n" : "") + value;
    seen = true;
  }
  if (!seen) return null;
  try {
    frame.data = frame.data ? JSON.parse(frame.data) : null;
  } catch {
    frame.data = null;
  }
  return frame;
}

const pause = (ms, signal) =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
  });

async function openStream(path, query, signal) {
  let url = path;
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) for (const one of [].concat(v)) if (one !== null && one !== undefined) qs.append(k, one);
  if ([...qs].length) url += "?" + qs;
  const go = () =>
    fetch(url, { headers: { Accept: "text/event-stream", Authorization: `Bearer ${auth.access_token}` }, credentials: "same-origin", signal });
  if (!auth) throw new ApiError({ status: 401, code: "signed_out" });
  let response = await go();
  if (response.status === 401) {
    await request("GET", "/v1/me"); // refreshes (and puts the token back in this context)
    response = await go();
  }
  if (!response.ok) throw await problem(response);
  return response;
}

/**
 * Follow a Server-Sent Events endpoint of the API until `signal` aborts: with the bearer token
 * in a header (EventSource cannot send one, and a token never goes into a URL), reconnecting
 * with the last cursor when a connection ends. `onEvent({event, id, data})`; `onState("live" |
 * "reconnecting")`.
 */
export async function stream(path, { query = {}, onEvent, onState = () => {}, signal }) {
  let after = null;
  let failures = 0;
  while (!signal.aborted) {
    try {
      const response = await openStream(path, after === null ? query : { ...query, after }, signal);
      failures = 0;
      onState("live");
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer = (buffer + decoder.decode(value, { stream: true })).replace(/\r\n/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = parseFrame(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (!frame) continue;
          if (frame.id) after = frame.id;
          if (frame.event === "error") throw new ApiError({ status: 401, ...(frame.data || {}) });
          onEvent(frame);
        }
      }
    } catch (err) {
      if (signal.aborted) return;
      if (noticeLost(err)) return; // no longer a member: nothing to reconnect to
      failures += 1;
      onState("reconnecting");
      await pause(Math.min(30_000, 500 * 2 ** failures), signal);
    }
  }
}
