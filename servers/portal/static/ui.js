// Shared bits of every page. Every control gets an accessible name (label, text or aria-label).

import { html, useState, useEffect, useCallback, useRef } from "./vendor/htm-preact-standalone.mjs";

export { html, useState, useEffect, useCallback, useRef };

let fieldIds = 0;

/** A refused call, shown where it happened: the API's message, its hint and field problems. */
// The API speaks to developers ("invalid input: display_name", "fix the fields listed in
// `errors`"); a person reads the field by its name in words and what to do about it.
// The API's names that the portal's forms label otherwise ("Handle" for `slug`).
const WORDS = { slug: "handle", price_amount: "price", late_cancel_fee: "late cancellation fee", weekly: "weekly hours", overrides: "date overrides" };
const fieldWords = (field) =>
  field.split(".").filter((p) => !/^\d+$/.test(p)).map((p) => WORDS[p] || p).join(" › ").replace(/_/g, " ");
const plain = (text) => (text || "").replace(/`/g, "");
// A hint written for API callers ("find the client with GET /v1/clients") says nothing to a
// person using the portal: a request named in brackets after the words is dropped, and a hint
// that still asks for a request is left out rather than show a request to make.
const REQUEST = /\b(GET|POST|PUT|PATCH|DELETE) \/|\/v1\//;
const forPeople = (hint) => {
  const words = plain((hint || "").replace(/\s*\([^()]*\b(?:GET|POST|PUT|PATCH|DELETE) \/[^()]*\)/g, ""));
  return REQUEST.test(words) ? "" : words;
};

// A refused conditional write (412): the API's words are for a program holding ETags ("If-Match
// does not match", "retry with the new ETag"); a person needs to know that nothing of theirs
// overwrote the other change, and the way on.
const CHANGED = {
  detail: "Someone changed this after you opened it (in another tab, or another member or an agent), so nothing was saved over their change.",
  hint: "load the current version, check your changes on it, then save again",
};

export function ErrorBox({ error, title }) {
  if (!error) return null;
  const given = error.fields || [];
  const invalid = error.code === "validation_failed" && given.length > 0;
  const changed = error.code === "precondition_failed";
  const detail = invalid ? "Some of what was entered can't be used." : changed ? CHANGED.detail : plain(error.detail);
  // A problem the detail already says in the same words is said once.
  const fields = given.filter((f) => invalid || !detail.includes(plain(f.message)));
  const hint = invalid ? "correct what is listed below, then try again" : changed ? CHANGED.hint : forPeople(error.hint);
  return html`<div class="error-box" role="alert">
    <p class="error-title"><strong>${title || error.title || "Something went wrong"}</strong></p>
    ${detail && html`<p class="error-detail">${detail}</p>`}
    ${hint && html`<p class="error-hint">What to do: ${hint}</p>`}
    ${fields.length > 0 &&
    html`<ul class="error-fields">
      ${fields.map((f) => html`<li key=${f.field}><strong>${fieldWords(f.field) || "This"}</strong>: ${plain(f.message)}</li>`)}
    </ul>`}
  </div>`;
}

export function Loading({ label = "Loading…" }) {
  return html`<p class="loading" role="status" aria-live="polite">${label}</p>`;
}

/** Nothing here yet, and what to do next (children: a link or a button). */
export function Empty({ title, children }) {
  return html`<div class="empty">
    <p class="empty-title">${title}</p>
    ${children && html`<div class="empty-next">${children}</div>`}
  </div>`;
}

/** A page's heading; also sets the window title. */
export function PageHeader({ title, children }) {
  useEffect(() => {
    document.title = `${title} · Atlilith`;
  }, [title]);
  return html`<header class="page-header">
    <h1>${title}</h1>
    ${children && html`<div class="page-actions">${children}</div>`}
  </header>`;
}

/** A labelled input. `error`: an ApiError (its message for `name` is shown) or a string. */
export function Field({ label, name, type = "text", value, onInput, hint, error, required, autocomplete, options, ...rest }) {
  const id = useRef(`f-${name}-${++fieldIds}`).current;
  // The API's words, without the backticks it writes names in for developers.
  const message = plain(typeof error === "string" ? error : error && error.fieldMessage ? error.fieldMessage(name) : "");
  const described = [hint && `${id}-hint`, message && `${id}-error`].filter(Boolean).join(" ") || undefined;
  const common = {
    id,
    name,
    required,
    "aria-invalid": message ? "true" : undefined,
    "aria-describedby": described,
  };
  const handler = (e) => onInput && onInput(e.target.value);
  let control;
  if (options) {
    control = html`<select ...${common} value=${value} onChange=${handler} ...${rest}>
      ${options.map((o) => html`<option key=${o.value} value=${o.value}>${o.label}</option>`)}
    </select>`;
  } else if (type === "textarea") {
    control = html`<textarea ...${common} value=${value} onInput=${handler} ...${rest}></textarea>`;
  } else {
    control = html`<input ...${common} type=${type} value=${value} onInput=${handler} autocomplete=${autocomplete} ...${rest} />`;
  }
  return html`<div class=${"field" + (message ? " field-invalid" : "")}>
    <label for=${id}>${label}</label>
    ${hint && html`<p class="field-hint" id=${`${id}-hint`}>${hint}</p>`}
    ${message && html`<p class="field-error" id=${`${id}-error`}>${message}</p>`}
    ${control}
  </div>`;
}

/** Copies `text`; says so for screen readers too. */
export function CopyButton({ text, label = "Copy" }) {
  const [done, setDone] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setDone(true);
      setTimeout(() => setDone(false), 2000);
    } catch {
      setDone(false);
    }
  };
  return html`<button type="button" class="secondary" onClick=${copy} aria-label=${label}>
    ${done ? "Copied" : label}
  </button>
  <span class="visually-hidden" aria-live="polite">${done ? "Copied to the clipboard" : ""}</span>`;
}

/** A button that asks once more before doing something hard to undo. */
export function ConfirmButton({ label, confirmLabel, onConfirm, danger = true, disabled, ariaLabel }) {
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  // The button a keyboard user pressed disappears: keep their focus on what replaced it
  // (the question, then the first button again after Cancel).
  const yesRef = useRef(null);
  const first = useRef(null);
  const moved = useRef(false);
  useEffect(() => {
    if (!moved.current) return;
    const target = asking ? yesRef.current : first.current;
    if (target) target.focus();
  }, [asking]);
  const ask = (next) => {
    moved.current = true;
    setAsking(next);
  };
  if (!asking) {
    return html`<button type="button" ref=${first} class=${danger ? "danger" : ""} disabled=${disabled} aria-label=${ariaLabel} onClick=${() => ask(true)}>
      ${label}
    </button>`;
  }
  const go = async () => {
    setBusy(true);
    try {
      await onConfirm();
    } finally {
      setBusy(false);
      ask(false);
    }
  };
  const yes = confirmLabel || `Yes, ${(ariaLabel || label).toLowerCase()}`;
  return html`<span class="confirm" role="group" aria-label=${`Confirm: ${ariaLabel || label}`}>
    <button type="button" class=${danger ? "danger" : ""} disabled=${busy} onClick=${go} ref=${yesRef}>${yes}</button>
    <button type="button" class="secondary" onClick=${() => ask(false)}>Cancel</button>
  </span>`;
}

/** Load something once (and again on `reload()` or when `deps` change): {data, error, loading, reload}. */
export function useAsync(fn, deps = []) {
  const [state, setState] = useState({ data: undefined, error: null, loading: true });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true, error: null }));
    fn().then(
      (data) => live && setState({ data, error: null, loading: false }),
      (error) => live && setState({ data: undefined, error, loading: false }),
    );
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload };
}

/** Form state + submit: `run(fn)` shows busy, keeps the ApiError for ErrorBox/Field. */
export function useAction() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const run = async (fn) => {
    setBusy(true);
    setError(null);
    try {
      return await fn();
    } catch (err) {
      setError(err);
      return undefined;
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, setError, run };
}

/** Short, local date-time. */
export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}
