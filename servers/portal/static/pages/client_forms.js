// Writing clients from the portal: add one, correct one, start a conversation with one. A refused
// save keeps everything typed, with the API's reasons shown next to the form and its fields.

import * as api from "../api.js";
import { html, useState, useRef, ErrorBox, Field, useAction, useAsync } from "../ui.js";
import { ChangedMeanwhile, FreshRead, useVersioned } from "./versioned.js";

const newKey = () => (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random());

const toForm = (c) => ({ name: c ? c.name : "", email: (c && c.email) || "", phone: (c && c.phone) || "", notes: (c && c.notes) || "" });

/** The client's fields and buttons; the caller owns the state (`form`, `setForm`) and the save. */
function ClientForm({ label, form, setForm, busy, error, submitLabel, onSubmit, onCancel, children }) {
  const set = (k) => (v) => setForm({ ...form, [k]: v });
  return html`<form onSubmit=${onSubmit} aria-label=${label} novalidate class="client-form">
    <${ErrorBox} error=${error} title="Could not save the client" />
    ${children}
    <${Field} label="Name" name="name" value=${form.name} onInput=${set("name")} error=${error} required autocomplete="off" />
    <${Field} label="Email" name="email" type="email" value=${form.email} onInput=${set("email")} error=${error} autocomplete="off" />
    <${Field} label="Phone" name="phone" type="tel" value=${form.phone} onInput=${set("phone")} error=${error} autocomplete="off"
      hint="With the country code, e.g. +33 6 12 34 56 78." />
    <${Field} label="Notes" name="notes" type="textarea" value=${form.notes} onInput=${set("notes")} error=${error}
      hint="Only you and your team see these." />
    <div class="actions">
      <button type="submit" disabled=${busy}>${submitLabel}</button>
      <button type="button" class="secondary" onClick=${onCancel}>Cancel</button>
    </div>
  </form>`;
}

/** "New client": the form, then the new client's page. */
export function NewClient({ ctx, navigate, onCancel }) {
  // One client, however often the button is pressed (a retry after a timeout included).
  const key = useRef(newKey()).current;
  const [form, setForm] = useState(toForm(null));
  const { busy, error, run } = useAction();
  const submit = async (e) => {
    e.preventDefault();
    const body = { name: form.name.trim() };
    for (const k of ["email", "phone", "notes"]) if (form[k].trim()) body[k] = form[k].trim();
    const made = await run(() => api.post("/v1/clients", body, { headers: { "Idempotency-Key": key } }));
    if (made) navigate(ctx.url(`clients/${made.id}`));
  };
  return html`<section class="panel" aria-labelledby="new-client-h">
    <h2 id="new-client-h">New client</h2>
    <${ClientForm} label="New client" form=${form} setForm=${setForm} busy=${busy} error=${error}
      submitLabel="Add client" onSubmit=${submit} onCancel=${onCancel} />
  </section>`;
}

/** `version`: {data, etag} of the client as read when the form opened. */
function EditClientForm({ version, onSaved, onCancel }) {
  const client = version.data;
  const path = `/v1/clients/${encodeURIComponent(client.id)}`;
  const edit = useVersioned(version, path, toForm);
  const submit = async (e) => {
    e.preventDefault();
    // An emptied field clears it (null); the name can't be cleared, the API says so.
    const body = { name: edit.form.name.trim() };
    for (const k of ["email", "phone", "notes"]) body[k] = edit.form[k].trim() || null;
    const saved = await edit.save((opts) => api.patch(path, body, opts));
    if (saved) onSaved(saved);
  };
  return html`<${ClientForm} label=${`Edit ${client.name}`} form=${edit.form} setForm=${edit.setForm} busy=${edit.busy}
    error=${edit.error} submitLabel="Save changes" onSubmit=${submit} onCancel=${onCancel}>
    <${ChangedMeanwhile} edit=${edit} what="client" />
  <//>`;
}

/** Correct a client's details, starting from a fresh read of them (the page may be older):
 * the save applies to the version the form shows, or is refused with what was typed kept. */
export function EditClient({ client, onSaved, onCancel }) {
  return html`<section class="panel" aria-labelledby="edit-client-h">
    <h2 id="edit-client-h">Edit ${client.name}</h2>
    <${FreshRead} path=${`/v1/clients/${encodeURIComponent(client.id)}`} label="Opening the client…"
      form=${(version) => html`<${EditClientForm} version=${version} onSaved=${onSaved} onCancel=${onCancel} />`} />
  </section>`;
}

/** Start a thread with this client: a channel that can deliver, a subject, an optional first
 * message; then the thread itself. */
export function NewConversation({ ctx, client, navigate, onCancel }) {
  const settings = useAsync(() => api.get("/v1/messaging/settings"), [ctx.base]);
  const [form, setForm] = useState({ channel: "portal", subject: "", body: "" });
  const set = (k) => (v) => setForm({ ...form, [k]: v });
  const key = useRef(newKey()).current;
  const { busy, error, run } = useAction();
  const channels = settings.data ? settings.data.channels.filter((c) => c.deliverable).map((c) => c.name) : ["portal"];
  const submit = async (e) => {
    e.preventDefault();
    const body = { client_id: client.id, channel: form.channel, subject: form.subject.trim() };
    if (form.body.trim()) body.body = form.body;
    const made = await run(() => api.post("/v1/messaging/threads", body, { headers: { "Idempotency-Key": key } }));
    if (made) navigate(ctx.url(`inbox/${made.thread.id}`));
  };
  return html`<section class="panel" aria-labelledby="new-conversation-h">
    <h2 id="new-conversation-h">New conversation with ${client.name}</h2>
    <form onSubmit=${submit} aria-label="New conversation" novalidate>
      <${ErrorBox} error=${error} title="Could not start the conversation" />
      <${Field} label="Channel" name="channel" value=${form.channel} onInput=${set("channel")} error=${error}
        options=${channels.map((c) => ({ value: c, label: c === "portal" ? "portal (the client replies on a private page)" : c }))} />
      <${Field} label="Subject" name="subject" value=${form.subject} onInput=${set("subject")} error=${error} />
      <${Field} label="First message (optional)" name="body" type="textarea" value=${form.body} onInput=${set("body")} error=${error}
        hint="Leave empty to open the conversation and write later." />
      <div class="actions">
        <button type="submit" disabled=${busy}>Start conversation</button>
        <button type="button" class="secondary" onClick=${onCancel}>Cancel</button>
      </div>
    </form>
  </section>`;
}
