// Writing clients from the portal: add one, correct one, start a conversation with one. A refused
// save keeps everything typed, with the API's reasons shown next to the form and its fields.

import * as api from "../api.js";
import { html, useState, useRef, ErrorBox, Field, useAction, useAsync } from "../ui.js";

const newKey = () => (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random());

const toForm = (c) => ({ name: c ? c.name : "", email: (c && c.email) || "", phone: (c && c.phone) || "", notes: (c && c.notes) || "" });

function ClientForm({ label, client, submitLabel, save, onCancel }) {
  const [form, setForm] = useState(toForm(client));
  const set = (k) => (v) => setForm({ ...form, [k]: v });
  const { busy, error, run } = useAction();
  const submit = async (e) => {
    e.preventDefault();
    await run(() => save(form));
  };
  return html`<form onSubmit=${submit} aria-label=${label} novalidate class="client-form">
    <${ErrorBox} error=${error} title="Could not save the client" />
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
  const save = async (form) => {
    const body = { name: form.name.trim() };
    for (const k of ["email", "phone", "notes"]) if (form[k].trim()) body[k] = form[k].trim();
    const made = await api.post("/v1/clients", body, { headers: { "Idempotency-Key": key } });
    navigate(ctx.url(`clients/${made.id}`));
  };
  return html`<section class="panel" aria-labelledby="new-client-h">
    <h2 id="new-client-h">New client</h2>
    <${ClientForm} label="New client" submitLabel="Add client" save=${save} onCancel=${onCancel} />
  </section>`;
}

/** Correct a client's details. The PATCH carries the ETag of the client as shown (api.js sends
 * it as If-Match), so a change made meanwhile is refused instead of overwritten. */
export function EditClient({ client, onSaved, onCancel }) {
  const save = async (form) => {
    // An emptied field clears it (null); the name can't be cleared, the API says so.
    const body = { name: form.name.trim() };
    for (const k of ["email", "phone", "notes"]) body[k] = form[k].trim() || null;
    onSaved(await api.patch(`/v1/clients/${encodeURIComponent(client.id)}`, body));
  };
  return html`<section class="panel" aria-labelledby="edit-client-h">
    <h2 id="edit-client-h">Edit ${client.name}</h2>
    <${ClientForm} label=${`Edit ${client.name}`} client=${client} submitLabel="Save changes" save=${save} onCancel=${onCancel} />
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
