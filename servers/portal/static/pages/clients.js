// Clients of the current context: a searchable list, and one client's threads, bookings and
// identity (polyseme) id. Names and notes may come from clients themselves: always text.

import * as api from "../api.js";
import { html, useState, Empty, ErrorBox, Loading, PageHeader, CopyButton, useAsync, when } from "../ui.js";
import { EditClient, NewClient, NewConversation } from "./client_forms.js";

const PAGE = 25;

export function ClientsPage({ ctx, query, navigate }) {
  const q = (query && query.q) || "";
  const [text, setText] = useState(q);
  const [extra, setExtra] = useState({ items: [], cursor: undefined, error: null, busy: false });
  const [adding, setAdding] = useState(false);
  const first = useAsync(() => api.get("/v1/clients", { limit: PAGE, q: q || undefined }), [ctx.base, q]);
  const items = first.data ? [...first.data.items, ...extra.items] : [];
  const cursor = extra.cursor === undefined ? first.data && first.data.next_cursor : extra.cursor;
  const search = (e) => {
    e.preventDefault();
    const t = text.trim();
    navigate(ctx.url("clients") + (t ? `?q=${encodeURIComponent(t)}` : ""));
  };
  const more = async () => {
    setExtra({ ...extra, busy: true, error: null });
    try {
      const page = await api.get("/v1/clients", { limit: PAGE, q: q || undefined, cursor });
      setExtra({ items: [...extra.items, ...page.items], cursor: page.next_cursor || null, error: null, busy: false });
    } catch (error) {
      setExtra({ ...extra, error, busy: false });
    }
  };
  return html`<section>
    <${PageHeader} title="Clients">
      ${!adding && html`<button type="button" onClick=${() => setAdding(true)}>New client</button>`}
    <//>
    ${adding && html`<${NewClient} ctx=${ctx} navigate=${navigate} onCancel=${() => setAdding(false)} />`}
    <form class="inline clients-search" role="search" aria-label="Client search" onSubmit=${search}>
      <div class="field">
        <label for="client-search">Search clients</label>
        <input id="client-search" type="search" value=${text} onInput=${(e) => setText(e.target.value)} placeholder="Name, email or phone" />
      </div>
      <button type="submit">Search</button>
      ${q && html`<a href=${ctx.url("clients")}>Clear search</a>`}
    </form>
    ${first.loading && html`<${Loading} label="Loading clients…" />`}
    <${ErrorBox} error=${first.error} title="Could not load the clients" />
    ${first.data && items.length === 0 &&
    (q
      ? html`<${Empty} title=${`No client matches “${q}”.`}>Try part of a name, an email or a phone number, or <a href=${ctx.url("clients")}>see all clients</a>.<//>`
      : html`<${Empty} title="No clients yet.">Clients appear here when they write to you or book. You can also add one yourself with <strong>New client</strong>, then start a conversation from their page.<//>`)}
    ${items.length > 0 &&
    html`<table aria-label="Clients">
      <thead><tr><th scope="col">Name</th><th scope="col">Email</th><th scope="col">Phone</th><th scope="col">Since</th></tr></thead>
      <tbody>
        ${items.map(
          (c) => html`<tr key=${c.id}>
            <td><a href=${ctx.url(`clients/${c.id}`)}>${c.name}</a></td>
            <td>${c.email || html`<span class="muted">—</span>`}</td>
            <td>${c.phone || html`<span class="muted">—</span>`}</td>
            <td>${when(c.created_at)}</td>
          </tr>`,
        )}
      </tbody>
    </table>`}
    <${ErrorBox} error=${extra.error} title="Could not load more clients" />
    ${cursor && html`<p><button type="button" class="secondary" disabled=${extra.busy} onClick=${more}>Load more clients</button></p>`}
  </section>`;
}

const BOOKING_LABELS = { held: "Held", requested: "Requested", confirmed: "Confirmed", cancelled: "Cancelled", declined: "Declined", completed: "Completed", no_show: "No-show", expired: "Expired" };

export function ClientPage({ ctx, params, navigate }) {
  const id = params.id;
  // null, "edit" or "talk": the form open under the client's details.
  const [open, setOpen] = useState(null);
  const [said, setSaid] = useState("");
  const client = useAsync(() => api.get(`/v1/clients/${encodeURIComponent(id)}`), [ctx.base, id]);
  const threads = useAsync(() => api.get("/v1/messaging/threads", { client_id: id, limit: 50 }), [ctx.base, id]);
  const bookings = useAsync(() => api.get("/v1/bookings", { client_id: id, limit: 50 }), [ctx.base, id]);
  const c = client.data;
  const back = html`<p><a href=${ctx.url("clients")}>← All clients</a></p>`;
  if (client.error) {
    // Nothing of a client that is not there (another context's, or gone): no empty lists under it.
    const gone = client.error.status === 404;
    return html`<section>${back}<${PageHeader} title=${gone ? "Client not found" : "Could not load this client"} />
      <${ErrorBox} error=${client.error} title="Could not load this client" />
      ${gone && html`<p>Clients belong to the context they were added in: switch to it to see this one.</p>`}</section>`;
  }
  return html`<section>
    ${back}
    ${client.loading && html`<${Loading} label="Loading the client…" />`}
    ${c &&
    html`<${PageHeader} title=${c.name}>
        <button type="button" class="secondary" disabled=${open === "edit"} onClick=${() => { setSaid(""); setOpen("edit"); }}>Edit client</button>
        <button type="button" disabled=${open === "talk"} onClick=${() => { setSaid(""); setOpen("talk"); }}>New conversation</button>
      <//>
      ${said && html`<p class="success" role="status">${said}</p>`}
      ${open === "edit" && html`<${EditClient} client=${c} onCancel=${() => setOpen(null)}
        onSaved=${(saved) => { setOpen(null); setSaid(`Saved ${saved.name}.`); client.reload(); }} />`}
      ${open === "talk" && html`<${NewConversation} ctx=${ctx} client=${c} navigate=${navigate} onCancel=${() => setOpen(null)} />`}
      <dl class="client-facts">
        <dt>Email</dt><dd>${c.email || html`<span class="muted">none</span>`}</dd>
        <dt>Phone</dt><dd>${c.phone || html`<span class="muted">none</span>`}</dd>
        <dt>Identity id</dt>
        <dd>${c.polyseme_person_id
          ? html`<code class="mono">${c.polyseme_person_id}</code> <${CopyButton} text=${c.polyseme_person_id} label="Copy identity id" />
              <p class="field-hint">The same id for this person in every component of this context.</p>`
          : html`<span class="muted">not linked yet</span>`}</dd>
        <dt>Client since</dt><dd>${when(c.created_at)}</dd>
        ${c.notes && html`<dt>Notes</dt><dd class="client-notes">${c.notes}</dd>`}
      </dl>`}
    <h2>Conversations</h2>
    ${threads.loading && html`<${Loading} label="Loading conversations…" />`}
    <${ErrorBox} error=${threads.error} title="Could not load the conversations" />
    ${threads.data && threads.data.items.length === 0 && html`<${Empty} title="No conversations with this client yet.">Start one with <strong>New conversation</strong>.<//>`}
    ${threads.data && threads.data.items.length > 0 &&
    html`<table aria-label="Conversations">
      <thead><tr><th scope="col">Subject</th><th scope="col">Channel</th><th scope="col">Status</th><th scope="col">Messages</th><th scope="col">Last activity</th></tr></thead>
      <tbody>${threads.data.items.map(
        (t) => html`<tr key=${t.id}>
          <td><a href=${ctx.url(`inbox/${t.id}`)}>${t.untrusted_subject || "(no subject)"}</a>
            ${t.unread_count > 0 && html` <span class="badge">${t.unread_count} unread</span>`}</td>
          <td>${t.channel}</td><td>${t.status}</td><td>${t.message_count}</td><td>${when(t.last_activity_at)}</td>
        </tr>`,
      )}</tbody>
    </table>`}
    <h2>Bookings</h2>
    ${bookings.loading && html`<${Loading} label="Loading bookings…" />`}
    <${ErrorBox} error=${bookings.error} title="Could not load the bookings" />
    ${bookings.data && bookings.data.items.length === 0 && html`<${Empty} title="No bookings for this client yet." />`}
    ${bookings.data && bookings.data.items.length > 0 &&
    html`<table aria-label="Bookings">
      <thead><tr><th scope="col">When</th><th scope="col">Service</th><th scope="col">Status</th><th scope="col">With</th></tr></thead>
      <tbody>${bookings.data.items.map(
        (b) => html`<tr key=${b.id}>
          <td><a href=${ctx.url(`calendar/bookings/${b.id}`)}>${when(b.start_at)}</a></td><td>${b.service.name}</td>
          <td><span class=${`badge status-${b.status}`}>${BOOKING_LABELS[b.status] || b.status}</span></td>
          <td>${b.provider.display_name || b.provider.slug}</td>
        </tr>`,
      )}</tbody>
    </table>`}
  </section>`;
}
