// Editing what another tab, member or agent may be editing too. The form starts from a fresh
// read of the one item (a list read earlier may be older than the tag), keeps that read's ETag
// and saves with it in If-Match: the save applies to the version the person saw, or is refused
// (412) with what they typed still in the form.

import * as api from "../api.js";
import { html, useState, ErrorBox, Loading, useAction, useAsync } from "../ui.js";

/** Was this save refused because the item changed since it was read? */
export const changedMeanwhile = (error) => Boolean(error) && error.status === 412;

const isRecord = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

/** The fields the person changed from `seen`, applied to `now`: their edits win, every other
 * field is what the item is now (so the other writer's change is kept too). Nested records
 * (the hours' days) merge field by field; a list the person changed is theirs as a whole. */
function keepChanges(seen, mine, now) {
  const out = { ...now };
  for (const k of Object.keys(mine)) {
    if (isRecord(mine[k]) && isRecord(seen[k]) && isRecord(now[k])) out[k] = keepChanges(seen[k], mine[k], now[k]);
    else if (mine[k] !== seen[k]) out[k] = mine[k];
  }
  return out;
}

/**
 * An edit form's state against one version of an item ({data, etag} from `api.getTagged`, or
 * null for a new one): `form`/`setForm`; `save(write)`, where `write(opts)` sends the request
 * with these request options (If-Match of that version, and the answer's ETag asked for) and
 * resolves to what was saved, which becomes the version the next save is conditional on;
 * `catchUp()` after a 412, which re-reads the item (`path`) and keeps the person's edits.
 * Plus `useAction`'s busy and error.
 */
export function useVersioned(version, path, toForm) {
  const [seen, setSeen] = useState(version);
  const [form, setForm] = useState(toForm(version ? version.data : null));
  const [caughtUp, setCaughtUp] = useState(false);
  const action = useAction();
  const save = async (write) => {
    setCaughtUp(false);
    const saved = await action.run(() => write({ headers: api.ifMatch(seen), tagged: true }));
    if (!saved) return undefined;
    setSeen(saved);
    return saved.data;
  };
  const catchUp = async () => {
    const now = await action.run(() => api.getTagged(path));
    if (now) {
      setForm(keepChanges(toForm(seen.data), form, toForm(now.data)));
      setSeen(now);
      setCaughtUp(true);
    }
  };
  return { ...action, form, setForm, save, catchUp, caughtUp };
}

/** Under the form's error box after a 412: what happened in words, and the way on. `edit` is
 * `useVersioned`'s state, or any {error, busy, catchUp, caughtUp} (the thread page's triage). */
export function ChangedMeanwhile({ edit, what }) {
  if (edit.caughtUp) {
    return html`<p class="notice" role="status">This form now shows the current ${what} with your changes on top. Check it, then save again.</p>`;
  }
  if (!changedMeanwhile(edit.error)) return null;
  return html`<div class="notice">
    <p>What you typed is still here.</p>
    <button type="button" class="secondary" disabled=${edit.busy} onClick=${edit.catchUp}>Load the current ${what} and keep my changes</button>
  </div>`;
}

/** Read the item at `path` (fresh, with its ETag), then show `form(version)`. */
export function FreshRead({ path, label, form, failed = "Could not open it for editing" }) {
  const read = useAsync(() => api.getTagged(path), [path]);
  if (read.error) return html`<${ErrorBox} error=${read.error} title=${failed} />`;
  if (!read.data) return html`<${Loading} label=${label} />`;
  return form(read.data);
}
