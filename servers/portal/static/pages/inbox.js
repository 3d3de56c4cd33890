// The inbox: threads of the current context, one thread with its messages and agent drafts,
// live through GET /v1/events/stream. Client-written text (names, subjects, previews, message
// bodies) is untrusted: it only ever goes through htm's escaping as text, and messages from the
// client are visibly marked as such.

import * as api from "../api.js";
import { html, useState, useEffect, useRef, Empty, ErrorBox, Field, Loading, PageHeader, useAction, useAsync, when } from "../ui.js";
import { ChangedMeanwhile } from "./versioned.js";

const STATUSES = ["open", "pending", "snoozed", "closed"];
const MODES = [
  { value: "auto", label: "Auto", hint: "agents may answer" },
  { value: "draft_only", label: "Drafts only", hint: "agents draft, a person approves" },
  { value: "off", label: "Off", hint: "agents stay out" },
];
const newKey = () => (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random());

/** Calls `onEvent(frame)` for every messaging event of this context, while mounted. */
function useLiveEvents(onEvent, deps) {
  const [state, setState] = useState("connecting");
  const handler = useRef(onEvent);
  handler.current = onEvent;
  useEffect(() => {
    const stop = new AbortController();
    api.stream("/v1/events/stream", {
      signal: stop.signal,
      onState: setState,
      onEvent: (frame) => {
        if (frame.data && frame.data.name) handler.current(frame.data);
      },
    });
    return () => stop.abort();
  }, deps);
  return state;
}

function LiveBadge({ state }) {
  const text = state === "live" ? "Live: new messages appear here" : state === "reconnecting" ? "Reconnecting…" : "Connecting…";
  return html`<span class=${"badge live-" + state} role="status">${text}</span>`;
}

function ClientText({ text }) {
  // white-space: pre-wrap keeps the client's line breaks; the text is never parsed as HTML.
  return html`<p class="client-text">${text}</p>`;
}

// — the thread list —

const EMPTY_FILTERS = { q: "", status: "", assignee: "", label: "", channel: "", unread: "" };

function Filters({ initial, channels, onApply }) {
  const [f, setF] = useState(initial);
  const set = (k) => (v) => setF({ ...f, [k]: v });
  const submit = (e) => {
    e.preventDefault();
    onApply(f);
  };
  return html`<form class="inline inbox-filters" role="search" aria-label="Filter threads" onSubmit=${submit}>
    <${Field} label="Search" name="q" type="search" value=${f.q} onInput=${set("q")} />
    <${Field} label="Status" name="status" value=${f.status} onInput=${set("status")}
      options=${[{ value: "", label: "Any" }, ...STATUSES.map((s) => ({ value: s, label: s }))]} />
    <${Field} label="Assignee" name="assignee" value=${f.assignee} onInput=${set("assignee")}
      options=${[{ value: "", label: "Anyone" }, { value: "me", label: "Me" }, { value: "none", label: "Nobody" }]} />
    <${Field} label="Label" name="label" value=${f.label} onInput=${set("label")} />
    <${Field} label="Channel" name="channel" value=${f.channel} onInput=${set("channel")}
      options=${[{ value: "", label: "Any" }, ...channels.map((c) => ({ value: c, label: c }))]} />
    <${Field} label="Unread" name="unread" value=${f.unread} onInput=${set("unread")}
      options=${[{ value: "", label: "All" }, { value: "true", label: "Unread only" }]} />
    <div class="actions">
      <button type="submit">Apply filters</button>
      <button type="button" class="secondary" onClick=${() => { setF(EMPTY_FILTERS); onApply(EMPTY_FILTERS); }}>Clear</button>
    </div>
  </form>`;
}

function ThreadRow({ t, ctx }) {
  return html`<li class=${"thread-row" + (t.unread_count ? " unread" : "")}>
    <a href=${ctx.url(`inbox/${t.id}`)} class="thread-link">
      <span class="thread-client">${t.client.untrusted_name || t.client.email || t.client.phone || "Client"}</span>
      <span class="thread-subject">${t.untrusted_subject || "(no subject)"}</span>
    </a>
    <span class="thread-preview muted">${t.untrusted_preview}</span>
    <span class="thread-meta">
      ${t.unread_count > 0 && html`<span class="badge unread-count">${t.unread_count} unread</span>`}
      <span class="badge">${t.status}</span>
      <span class="badge">${t.channel}</span>
      <span class="badge">agents: ${MODES.find((m) => m.value === t.agent_mode).label.toLowerCase()}</span>
      ${t.labels.map((l) => html`<span class="badge label" key=${l}>${l}</span>`)}
      ${t.assignee && html`<span class="muted">→ ${t.assignee.display_name}</span>`}
      <span class="muted">${when(t.last_activity_at)}</span>
    </span>
  </li>`;
}

/** "25 of 140 threads shown · 3 unread messages in 2 threads": the counts are the server's, of
 * every thread the filters match (GET /v1/messaging/threads/counts), not of the pages loaded.
 * No counts (yet, or they failed): no claim. */
function CountLine({ shown, counts }) {
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  if (!counts) return html`<p class="muted" aria-live="polite">${plural(shown, "thread")} shown</p>`;
  const unread = counts.unread_messages
    ? `${plural(counts.unread_messages, "unread message")} in ${plural(counts.unread_threads, "thread")}`
    : "nothing unread";
  // A thread that arrived live is listed a moment before the count that includes it.
  const total = Math.max(counts.threads, shown);
  return html`<p class="muted" aria-live="polite">${shown} of ${plural(total, "thread")} shown · ${unread}</p>`;
}

export function InboxPage({ ctx }) {
  const [filters, setFilters] = useState(EMPTY_FILTERS);
  const [items, setItems] = useState(null);
  const [cursor, setCursor] = useState(null);
  const [error, setError] = useState(null);
  const [more, setMore] = useState(false);
  const [counts, setCounts] = useState(null);
  // Each answer belongs to the filters it was asked with: one read on behalf of earlier filters
  // (a slow first page, a "load more", a count) is dropped, never mixed into the list shown.
  const generation = useRef(0);
  const settings = useAsync(() => api.get("/v1/messaging/settings"), [ctx.base]);

  const query = (f) => {
    const q = { limit: 25 };
    for (const [k, v] of Object.entries(f)) if (v) q[k] = v;
    return q;
  };
  const current = (asked) => asked === generation.current;
  const count = (f, asked) => {
    const { limit, ...filters } = query(f);
    api.get("/v1/messaging/threads/counts", filters).then(
      (found) => current(asked) && setCounts(found),
      () => current(asked) && setCounts(null), // no count rather than a wrong one
    );
  };
  const loadFirst = async (f, asked) => {
    count(f, asked);
    try {
      const page = await api.get("/v1/messaging/threads", query(f));
      if (!current(asked)) return;
      setItems(page.items);
      setCursor(page.next_cursor);
      setError(null);
    } catch (err) {
      if (current(asked)) setError(err);
    }
  };
  useEffect(() => {
    const asked = ++generation.current;
    setCounts(null); // the count of other filters is not this one
    setItems(null);
    setCursor(null);
    setMore(false);
    loadFirst(filters, asked);
  }, [ctx.base, filters]);
  const loadMore = async () => {
    const asked = generation.current;
    setMore(true);
    try {
      const page = await api.get("/v1/messaging/threads", { ...query(filters), cursor });
      if (!current(asked)) return;
      // Merged into the list as it is now (a live update may have changed it meanwhile).
      setItems((old) => [...(old || []), ...page.items.filter((t) => !(old || []).some((i) => i.id === t.id))]);
      setCursor(page.next_cursor);
    } catch (err) {
      if (current(asked)) setError(err);
    } finally {
      if (current(asked)) setMore(false);
    }
  };
  // Any message, draft or thread change re-reads the first page (keeps what "load more" added).
  const live = useLiveEvents(() => {
    const asked = generation.current;
    count(filters, asked);
    api.get("/v1/messaging/threads", query(filters)).then((page) => {
      if (!current(asked)) return;
      setItems((old) => [...page.items, ...(old || []).filter((o) => !page.items.some((n) => n.id === o.id))]);
    }, (err) => current(asked) && setError(err));
  }, [ctx.base, filters]);

  const channels = settings.data ? settings.data.channels.map((c) => c.name) : [];
  return html`<section class="inbox">
    <${PageHeader} title="Inbox"><${LiveBadge} state=${live} /><//>
    <${Filters} initial=${filters} channels=${channels} onApply=${setFilters} />
    <${ErrorBox} error=${error} />
    ${items === null && !error && html`<${Loading} label="Loading threads…" />`}
    ${items && html`<${CountLine} shown=${items.length} counts=${counts} />`}
    ${items && items.length === 0 &&
    html`<${Empty} title="No threads here.">
      ${Object.values(filters).some(Boolean)
        ? html`<p>Clear the filters to see every thread.</p>`
        : html`<p>Threads appear here when a client writes to you. To write first, open one of your <a href=${ctx.url("clients")}>clients</a> and choose <strong>New conversation</strong>.</p>`}
    <//>`}
    ${items && items.length > 0 && html`<ul class="thread-list" aria-label="Threads">
      ${items.map((t) => html`<${ThreadRow} key=${t.id} t=${t} ctx=${ctx} />`)}
    </ul>`}
    ${cursor && html`<button type="button" class="secondary" disabled=${more} onClick=${loadMore}>${more ? "Loading…" : "Load more threads"}</button>`}
  </section>`;
}

// — one thread —

function Message({ m, clientName, me }) {
  const fromClient = m.direction === "in";
  const who = fromClient
    ? `From the client · ${clientName}`
    : m.author.kind === "agent"
      ? "Sent by an agent"
      : m.author.kind === "system"
        ? "System"
        : m.author.person_id === me
          ? "Sent by you"
          : "Sent by a team member";
  return html`<li class=${"message " + (fromClient ? "from-client" : "from-us")}>
    <article aria-label=${`${who}, ${when(m.occurred_at)}`}>
      <header class="message-head">
        <strong>${who}</strong>
        ${fromClient && html`<span class="badge untrusted-badge">client text — shown as written</span>`}
        <span class="muted">${when(m.occurred_at)}</span>
        ${!fromClient && m.delivery_status && html`<span class="badge">${m.delivery_status}</span>`}
        ${fromClient && !m.read_at && html`<span class="badge unread-count">unread</span>`}
      </header>
      ${fromClient ? html`<${ClientText} text=${m.untrusted_body || ""} />` : html`<p class="our-text">${m.body}</p>`}
      ${m.failure_reason && html`<p class="field-error">Delivery failed: ${m.failure_reason}</p>`}
      ${m.attachments.length > 0 && html`<ul class="attachments">
        ${m.attachments.map((a) => html`<li key=${a.url}><span class="mono">${a.untrusted_name || a.url}</span> (${a.content_type}, ${a.size_bytes} bytes)</li>`)}
      </ul>`}
    </article>
  </li>`;
}

function Draft({ d, onDone }) {
  const [body, setBody] = useState(d.body);
  const [reason, setReason] = useState("");
  const [rejecting, setRejecting] = useState(false);
  const key = useRef(newKey()).current; // one approval, however often it is clicked
  const { busy, error, run } = useAction();
  const by = d.created_by_kind === "peer" ? `generated${d.peer_model ? ` by ${d.peer_model}` : ""}` : `written by ${d.created_by_kind === "agent" ? "an agent" : "a person"}`;
  const approve = async () => {
    const out = await run(() =>
      api.post(`/v1/messaging/drafts/${d.id}/approve`, body !== d.body ? { body } : {}, { headers: { "Idempotency-Key": key } }),
    );
    if (out) onDone(body !== d.body ? "Draft edited and sent." : "Draft approved and sent.");
  };
  const reject = async (e) => {
    e.preventDefault();
    const out = await run(() => api.post(`/v1/messaging/drafts/${d.id}/reject`, { reason: reason || "not right" }));
    if (out) onDone("Draft rejected.");
  };
  return html`<li class="draft">
    <article aria-label="Pending draft">
      <header class="message-head"><strong>Draft waiting for your approval</strong> <span class="muted">${by} · ${when(d.created_at)}</span></header>
      <${ErrorBox} error=${error} title="Could not decide on the draft" />
      <${Field} label="Draft reply (edit before approving if you like)" name="draft_body" type="textarea" value=${body} onInput=${setBody} />
      <div class="actions">
        <button type="button" disabled=${busy || !body.trim()} onClick=${approve}>${body !== d.body ? "Approve edited draft and send" : "Approve and send"}</button>
        ${!rejecting && html`<button type="button" class="secondary" onClick=${() => setRejecting(true)}>Reject draft</button>`}
      </div>
      ${rejecting && html`<form class="inline" onSubmit=${reject} aria-label="Reject the draft">
        <${Field} label="Why reject it?" name="reason" value=${reason} onInput=${setReason} />
        <button type="submit" class="danger" disabled=${busy}>Reject</button>
        <button type="button" class="secondary" onClick=${() => setRejecting(false)}>Cancel</button>
      </form>`}
    </article>
  </li>`;
}

function AgentMode({ thread, onChange, busy }) {
  // The choice shows at once; the thread re-read after the PATCH confirms it (or puts it back).
  const [chosen, setChosen] = useState(thread.agent_mode);
  useEffect(() => setChosen(thread.agent_mode), [thread.agent_mode, thread.updated_at]);
  const pick = (mode) => {
    setChosen(mode);
    onChange(mode);
  };
  return html`<fieldset class="agent-mode">
    <legend>Agent mode</legend>
    ${MODES.map(
      (m) => html`<label key=${m.value} class=${"mode-option" + (chosen === m.value ? " chosen" : "")}>
        <input type="radio" name="agent_mode" value=${m.value} checked=${chosen === m.value} disabled=${busy}
          onChange=${() => pick(m.value)} />
        ${m.label} <span class="muted">(${m.hint})</span>
      </label>`,
    )}
  </fieldset>`;
}

/** A field that follows the thread until the person types in it, and follows it again once
 * what they typed is saved: `[value, set, forget]`. A message arriving (which re-reads the
 * thread) must not wipe a half-typed label. */
function useEdit(current) {
  const [typed, setTyped] = useState(null);
  return [typed === null ? current : typed, setTyped, () => setTyped(null)];
}

function Triage({ thread, onPatch, busy, members }) {
  const [status, setStatus, keptStatus] = useEdit(thread.status === "snoozed" ? "open" : thread.status);
  const [until, setUntil, keptUntil] = useEdit("");
  const [labels, setLabels, keptLabels] = useEdit(thread.labels.join(", "));
  const [assignee, setAssignee, keptAssignee] = useEdit(thread.assignee ? thread.assignee.slug : "");
  // `onPatch` answers true once the change is saved and the thread re-read.
  const save = (body, kept) => async (e) => {
    if (e) e.preventDefault();
    if (await onPatch(body)) kept();
  };
  const labelList = labels.split(",").map((l) => l.trim()).filter(Boolean);
  return html`<div class="triage">
    <form class="inline" aria-label="Status" onSubmit=${save({ status }, keptStatus)}>
      <${Field} label="Status" name="status" value=${status} onInput=${setStatus} options=${STATUSES.filter((s) => s !== "snoozed").map((s) => ({ value: s, label: s }))} />
      <button type="submit" class="secondary" disabled=${busy}>Set status</button>
    </form>
    <form class="inline" aria-label="Snooze" onSubmit=${save({ status: "snoozed", snoozed_until: until && new Date(until).toISOString() }, keptUntil)}>
      <${Field} label="Snooze until" name="snoozed_until" type="datetime-local" value=${until} onInput=${setUntil} />
      <button type="submit" class="secondary" disabled=${busy || !until}>Snooze</button>
    </form>
    <form class="inline" aria-label="Labels" onSubmit=${save({ labels: labelList }, keptLabels)}>
      <${Field} label="Labels" name="labels" value=${labels} onInput=${setLabels} hint="Separated by commas." />
      <button type="submit" class="secondary" disabled=${busy}>Save labels</button>
    </form>
    <form class="inline" aria-label="Assignee" onSubmit=${save({ assignee: assignee.trim() }, keptAssignee)}>
      ${members
        ? html`<${Field} label="Assign to" name="assignee" value=${assignee} onInput=${setAssignee}
            options=${[{ value: "", label: "Choose a member" }, ...members.map((m) => ({ value: m.person.slug, label: `${m.person.display_name} (${m.person.slug})` }))]} />`
        : html`<${Field} label="Assign to (member handle)" name="assignee" value=${assignee} onInput=${setAssignee} />`}
      <button type="submit" class="secondary" disabled=${busy || !assignee.trim()}>Assign</button>
      <button type="button" class="secondary" disabled=${busy} onClick=${save({ assignee: "me" }, keptAssignee)}>Assign to me</button>
      <button type="button" class="secondary" disabled=${busy || !thread.assignee} onClick=${save({ assignee: null }, keptAssignee)}>Unassign</button>
    </form>
  </div>`;
}

function Compose({ threadId, onSent }) {
  const [body, setBody] = useState("");
  const key = useRef(newKey());
  const { busy, error, run } = useAction();
  const send = async (e) => {
    e.preventDefault();
    const out = await run(() => api.post(`/v1/messaging/threads/${threadId}/messages`, { body }, { headers: { "Idempotency-Key": key.current } }));
    if (out) {
      key.current = newKey();
      setBody("");
      onSent("Message sent.");
    }
  };
  return html`<form onSubmit=${send} aria-label="Reply" class="compose">
    <${ErrorBox} error=${error} title="Could not send" />
    <${Field} label="Your reply" name="body" type="textarea" value=${body} onInput=${setBody} error=${error} />
    <div class="actions"><button type="submit" disabled=${busy || !body.trim()}>Send reply</button></div>
  </form>`;
}

function Generate({ threadId, onDone }) {
  const [instructions, setInstructions] = useState("");
  const { busy, error, run } = useAction();
  const go = async (e) => {
    e.preventDefault();
    const out = await run(() => api.post(`/v1/messaging/threads/${threadId}/drafts/generate`, instructions.trim() ? { instructions } : {}));
    if (out) {
      setInstructions("");
      onDone("A draft was generated: review it above.");
    }
  };
  return html`<form class="inline generate" onSubmit=${go} aria-label="Generate a draft">
    <${ErrorBox} error=${error} title="Could not generate a draft" />
    <${Field} label="Instructions for the draft (optional)" name="instructions" value=${instructions} onInput=${setInstructions} />
    <button type="submit" class="secondary" disabled=${busy}>${busy ? "Generating…" : "Generate a draft"}</button>
  </form>`;
}

// A portal thread's client link: the page where the client reads this thread and replies
// (issued by the first message sent; after a revocation, by the next one).
function ClientLink({ threadId, version }) {
  const link = useAsync(() => api.get(`/v1/messaging/threads/${threadId}/client-link`), [threadId, version]);
  const { busy, error, run } = useAction();
  const [said, setSaid] = useState("");
  const revoke = async () => {
    const out = await run(() => api.post(`/v1/messaging/threads/${threadId}/client-link/revoke`, {}));
    if (out) {
      setSaid("Link revoked: it no longer opens this conversation. Your next message issues a new one.");
      link.reload();
    }
  };
  const copy = async () => {
    await navigator.clipboard.writeText(link.data.url);
    setSaid("Link copied.");
  };
  if (!link.data) return null;
  return html`<section class="client-link" aria-labelledby="client-link-h">
    <h2 id="client-link-h">Client's link</h2>
    ${said && html`<p class="success" role="status">${said}</p>`}
    <${ErrorBox} error=${error} title="Could not revoke the link" />
    ${link.data.active
      ? html`<p>The client reads this conversation and replies at <code class="mono">${link.data.url}</code></p>
          <div class="actions"><button type="button" class="secondary" onClick=${copy}>Copy the client's link</button>
          <button type="button" class="secondary" disabled=${busy} onClick=${revoke}>Revoke the client's link</button></div>`
      : html`<p class="muted">No live link: the next message you send issues one.</p>`}
  </section>`;
}

// Newest first, as the API pages them: by time, then id.
const newestFirst = (a, b) => Date.parse(b.occurred_at) - Date.parse(a.occurred_at) || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);

/** Every message loaded so far, with `fresh` (a page just read) replacing the copies it holds. */
function mergeMessages(fresh, loaded) {
  const ids = new Set(fresh.map((m) => m.id));
  return [...fresh, ...loaded.filter((m) => !ids.has(m.id))].sort(newestFirst);
}

export function ThreadPage({ auth, ctx, params }) {
  const id = params.id;
  // The thread as shown, with the ETag of the read that showed it: triage saves are conditional
  // on that version (If-Match), so a change made meanwhile is refused, not written over.
  const [shown, setShown] = useState(null);
  const detail = shown && shown.data;
  const [caughtUp, setCaughtUp] = useState(false);
  // Every message read so far, newest first. A live re-read brings only the newest page: the
  // ones it pushes off that page stay here, or they would vanish from a long thread.
  const [messages, setMessages] = useState([]);
  const [olderCursor, setOlderCursor] = useState(undefined);
  const [error, setError] = useState(null);
  const [notice, setNotice] = useState("");
  const settings = useAsync(() => api.get("/v1/messaging/settings"), [ctx.base]);
  // In an org, assignees are its members: offer them by name (personal: only yourself).
  const members = useAsync(() => (ctx.kind === "org" ? api.getAll(`/v1/orgs/${ctx.org}/members`) : Promise.resolve(null)), [ctx.base]);
  const patching = useAction();
  const older = useAction();

  const load = async () => {
    try {
      const read = await api.getTagged(`/v1/messaging/threads/${id}`, { limit: 50 });
      const d = read.data;
      setShown(read);
      setMessages((loaded) => mergeMessages(d.messages, loaded));
      setOlderCursor((c) => (c === undefined ? d.next_cursor : c));
      setError(null);
      return true;
    } catch (err) {
      setError(err);
      return false;
    }
  };
  useEffect(() => {
    load();
  }, [id]);
  const live = useLiveEvents((e) => {
    if (e.data && e.data.thread_id === id) load();
  }, [id]);
  const loadOlder = async () => {
    const page = await older.run(() => api.get(`/v1/messaging/threads/${id}`, { limit: 50, cursor: olderCursor }));
    if (!page) return;
    setMessages((loaded) => mergeMessages(page.messages, loaded));
    setOlderCursor(page.next_cursor);
  };
  const patch = async (body) => {
    setCaughtUp(false);
    const out = await patching.run(() => api.patch(`/v1/messaging/threads/${id}`, body, { headers: api.ifMatch(shown) }));
    if (!out) return false;
    setNotice("Thread updated.");
    await load();
    return true;
  };
  // After a refusal: the thread as it is now; what was typed in the triage fields stays.
  const catchUp = async () => {
    if (await patching.run(load)) setCaughtUp(true);
  };
  const done = async (text) => {
    setNotice(text);
    await load();
  };
  const markRead = async () => {
    const out = await patching.run(() => api.post(`/v1/messaging/threads/${id}/read`, {}));
    if (out !== undefined) await done("Marked as read.");
  };

  if (error && !detail) return html`<section><${PageHeader} title="Thread" /><${ErrorBox} error=${error} /><p><a href=${ctx.url("inbox")}>Back to the inbox</a></p></section>`;
  if (!detail) return html`<section><${PageHeader} title="Thread" /><${Loading} label="Loading the thread…" /></section>`;
  const t = detail.thread;
  const clientName = t.client.untrusted_name || t.client.email || t.client.phone || "Client";
  const canGenerate = t.agent_mode !== "off" && settings.data && settings.data.draft_peer_configured;
  return html`<section class="thread">
    <p><a href=${ctx.url("inbox")}>← Inbox</a></p>
    <${PageHeader} title=${t.untrusted_subject || "(no subject)"}><${LiveBadge} state=${live} /><//>
    <p class="thread-facts">
      <span>Client: <strong class="client-name">${clientName}</strong></span>
      ${t.client.email && html`<span class="mono">${t.client.email}</span>`}
      <span class="badge">${t.channel}</span> <span class="badge">${t.status}${t.snoozed_until ? ` until ${when(t.snoozed_until)}` : ""}</span>
      ${t.labels.map((l) => html`<span class="badge label" key=${l}>${l}</span>`)}
      <span>${t.assignee ? `Assigned to ${t.assignee.display_name}` : "Unassigned"}</span>
      ${t.unread_count > 0 && html`<span class="badge unread-count">${t.unread_count} unread</span>
        <button type="button" class="secondary" onClick=${markRead}>Mark as read</button>`}
    </p>
    ${notice && html`<p class="success" role="status">${notice}</p>`}
    <${ErrorBox} error=${error} />
    <${ErrorBox} error=${patching.error} title="Could not update the thread" />
    <${ChangedMeanwhile} edit=${{ ...patching, catchUp, caughtUp }} what="thread" />
    <${AgentMode} thread=${t} busy=${patching.busy} onChange=${(mode) => patch({ agent_mode: mode })} />
    <h2>Messages</h2>
    <${ErrorBox} error=${older.error} title="Could not load older messages" />
    ${olderCursor && html`<button type="button" class="secondary" disabled=${older.busy} onClick=${loadOlder}>${older.busy ? "Loading older messages…" : "Load older messages"}</button>`}
    ${messages.length === 0
      ? html`<${Empty} title="No messages yet.">Write the first one below.<//>`
      : html`<ol class="messages" aria-label="Messages, oldest first">
          ${[...messages].reverse().map((m) => html`<${Message} key=${m.id} m=${m} clientName=${clientName} me=${auth && auth.person.id} />`)}
        </ol>`}
    ${detail.pending_drafts.length > 0 && html`<h2>Drafts waiting for approval</h2>
      <ul class="drafts">${detail.pending_drafts.map((d) => html`<${Draft} key=${d.id} d=${d} onDone=${done} />`)}</ul>`}
    ${canGenerate && html`<${Generate} threadId=${id} onDone=${done} />`}
    <h2>Reply</h2>
    <${Compose} threadId=${id} onSent=${done} />
    ${t.channel === "portal" && html`<${ClientLink} threadId=${id} version=${t.message_count} />`}
    <h2>Triage</h2>
    <${Triage} thread=${t} busy=${patching.busy} onPatch=${patch} members=${members.data} />
  </section>`;
}
