// Calendar and bookings: week and day views in the provider's time zone, a booking's detail
// (confirm, decline, cancel, outcome, reschedule through a dry-run preview, manage link), and
// new bookings from the free slots the API computes. Times are always shown in the provider's
// zone (their working hours' zone), whatever the browser's zone is: Intl does the DST work.

import * as api from "../api.js";
import { html, useState, useEffect, CopyButton, Empty, ErrorBox, Field, Loading, PageHeader, useAction, useAsync } from "../ui.js";

// How a booking's reminder fared (GET /v1/bookings/{id} → reminder).
const REMINDER_LABELS = { queued: "Being sent", sent: "Sent", failed: "Not delivered", skipped: "Not sent" };

export const STATUS_LABELS = {
  held: "Held", requested: "Requested", confirmed: "Confirmed", declined: "Declined",
  cancelled: "Cancelled", expired: "Expired", completed: "Completed", no_show: "No-show",
};

// --- dates as "YYYY-MM-DD" strings, instants in a zone ------------------------------------------

const pad = (n) => String(n).padStart(2, "0");

export function browserZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

/** {date: "YYYY-MM-DD", time: "HH:MM"} of an instant on the wall clock of `zone`. */
export function wall(iso, zone) {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat("en-GB", {
      timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
    }).formatToParts(new Date(iso)).map((p) => [p.type, p.value]),
  );
  return { date: `${parts.year}-${parts.month}-${parts.day}`, time: `${parts.hour}:${parts.minute}` };
}

export function today(zone) {
  return wall(new Date().toISOString(), zone).date;
}

function utcDate(day) {
  const [y, m, d] = day.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d));
}

export function addDays(day, n) {
  const d = utcDate(day);
  d.setUTCDate(d.getUTCDate() + n);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
}

/** The Monday of the week holding `day`. */
export function monday(day) {
  return addDays(day, -((utcDate(day).getUTCDay() + 6) % 7));
}

export function dayLabel(day, style = "short") {
  return utcDate(day).toLocaleDateString(undefined, { timeZone: "UTC", weekday: style, day: "numeric", month: style });
}

/** A calendar date written YYYY-MM-DD that exists (2026-13-45 is none: Date would roll it over). */
function isDay(value) {
  if (typeof value !== "string" || !/^\d{4}-\d{2}-\d{2}$/.test(value)) return false;
  return utcDate(value).toISOString().slice(0, 10) === value;
}

/** The provider's zone: their working hours' zone, else the browser's. */
function useZone(ctx) {
  const hours = useAsync(() => api.get("/v1/bookings/availability"), [ctx.base]);
  const zone = hours.data && hours.data.time_zone ? hours.data.time_zone : hours.data || hours.error ? browserZone() : null;
  return { zone, hours };
}

/** Bookings starting on the days [first, last] of `zone` (asked with a day's margin each side,
 * then kept by their wall-clock date, so a zone's offset or a DST change never drops one). */
function useBookings(ctx, zone, first, last) {
  return useAsync(async () => {
    if (!zone) return null;
    const items = await api.getAll("/v1/bookings", {
      from_at: `${addDays(first, -1)}T00:00:00Z`,
      to_at: `${addDays(last, 2)}T00:00:00Z`,
    }, 1000);
    return items.filter((b) => {
      const d = wall(b.start_at, zone).date;
      return d >= first && d <= last;
    });
  }, [ctx.base, zone, first, last]);
}

function BookingChip({ booking, zone, ctx }) {
  const start = wall(booking.start_at, zone).time;
  const end = wall(booking.end_at, zone).time;
  const who = booking.client ? booking.client.name : "No client yet";
  return html`<a class=${`booking status-${booking.status}`} href=${ctx.url(`calendar/bookings/${booking.id}`)}
      aria-label=${`${start}–${end} ${booking.service.name}, ${who}, ${STATUS_LABELS[booking.status]}`}>
    <span class="booking-time">${start}–${end}</span>
    <span class="booking-what">${booking.service.name}</span>
    <span class="booking-who">${who}</span>
    <span class="badge">${STATUS_LABELS[booking.status]}</span>
  </a>`;
}

function Legend() {
  return html`<ul class="legend" aria-label="Status colours">
    ${["held", "requested", "confirmed", "cancelled"].map((s) => html`<li key=${s} class=${`booking status-${s}`}>${STATUS_LABELS[s]}</li>`)}
  </ul>`;
}

// --- the calendar page --------------------------------------------------------------------------

export function CalendarPage({ ctx, query, navigate }) {
  const { zone, hours } = useZone(ctx);
  const view = query.view === "day" ? "day" : "week";
  const anchor = isDay(query.date) ? query.date : zone ? today(zone) : null;
  const first = anchor ? (view === "week" ? monday(anchor) : anchor) : null;
  const last = first ? (view === "week" ? addDays(first, 6) : first) : null;
  const bookings = useBookings(ctx, zone, first, last);
  const go = (v, date) => navigate(ctx.url(`calendar?view=${v}&date=${date}`));
  const step = view === "week" ? 7 : 1;

  if (!zone) return html`<section><${PageHeader} title="Calendar" /><${Loading} label="Loading the calendar…" /></section>`;
  const title = view === "week" ? `Week of ${dayLabel(first, "long")}` : dayLabel(first, "long");
  return html`<section>
    <${PageHeader} title="Calendar">
      <a href=${ctx.url("services")}>Services</a>
      <a href=${ctx.url("hours")}>Working hours</a>
    <//>
    <p class="muted">Times in ${zone}${hours.data && !hours.data.configured ? " (your browser's zone: set your working hours to choose one)" : ""}.</p>
    <div class="calendar-bar" role="toolbar" aria-label="Calendar navigation">
      <button type="button" class="secondary" onClick=${() => go(view, addDays(first, -step))}>${view === "week" ? "Previous week" : "Previous day"}</button>
      <button type="button" class="secondary" onClick=${() => go(view, today(zone))}>Today</button>
      <button type="button" class="secondary" onClick=${() => go(view, addDays(first, step))}>${view === "week" ? "Next week" : "Next day"}</button>
      <span class="calendar-views">
        <button type="button" class=${view === "week" ? "" : "secondary"} aria-pressed=${view === "week"} onClick=${() => go("week", anchor)}>Week</button>
        <button type="button" class=${view === "day" ? "" : "secondary"} aria-pressed=${view === "day"} onClick=${() => go("day", anchor)}>Day</button>
      </span>
    </div>
    <h2>${title}</h2>
    <${Legend} />
    ${bookings.loading && !bookings.data && html`<${Loading} label="Loading bookings…" />`}
    <${ErrorBox} error=${bookings.error} title="Could not load the bookings" />
    ${bookings.data && view === "week" && html`<${Week} first=${first} bookings=${bookings.data} zone=${zone} ctx=${ctx} />`}
    ${bookings.data && view === "day" && html`<${Day} day=${first} bookings=${bookings.data} zone=${zone} ctx=${ctx} navigate=${navigate} />`}
  </section>`;
}

function byStart(a, b) {
  return a.start_at < b.start_at ? -1 : a.start_at > b.start_at ? 1 : 0;
}

function Week({ first, bookings, zone, ctx }) {
  const days = [0, 1, 2, 3, 4, 5, 6].map((i) => addDays(first, i));
  return html`<div class="week">
    ${days.map((day) => {
      const mine = bookings.filter((b) => wall(b.start_at, zone).date === day).sort(byStart);
      return html`<section class="week-day" key=${day} aria-label=${dayLabel(day, "long")}>
        <h3><a href=${ctx.url(`calendar?view=day&date=${day}`)}>${dayLabel(day)}</a></h3>
        ${mine.length === 0 && html`<p class="muted">Free</p>`}
        ${mine.map((b) => html`<${BookingChip} key=${b.id} booking=${b} zone=${zone} ctx=${ctx} />`)}
      </section>`;
    })}
  </div>`;
}

function Day({ day, bookings, zone, ctx, navigate }) {
  const mine = bookings.slice().sort(byStart);
  return html`<div class="day-view">
    <section aria-label="Bookings of the day">
      ${mine.length === 0 && html`<${Empty} title="No bookings this day.">Pick a free time on the right to book one.<//>`}
      ${mine.map((b) => html`<${BookingChip} key=${b.id} booking=${b} zone=${zone} ctx=${ctx} />`)}
    </section>
    <${NewBooking} day=${day} zone=${zone} ctx=${ctx} navigate=${navigate} />
  </div>`;
}

// --- new booking from a free slot ---------------------------------------------------------------

/** Free times of a service, or with `moving` (a booking) the times that booking could move to:
 * the API leaves its own time out and lets it not block the times next to it. */
function SlotPicker({ serviceId, moving, day, zone, provider, selected, onSelect, label = "Free times" }) {
  const days = { from_date: day, to_date: day, time_zone: zone, ...(provider ? { provider } : {}) };
  const slots = useAsync(
    () => {
      if (moving) return api.get(`/v1/bookings/${moving}/slots`, days);
      return serviceId ? api.get("/v1/bookings/slots", { service_id: serviceId, ...days }) : Promise.resolve(null);
    },
    [serviceId, moving, day, zone, provider],
  );
  if (!serviceId) return null;
  if (slots.loading) return html`<${Loading} label="Finding free times…" />`;
  if (slots.error) return html`<${ErrorBox} error=${slots.error} title="Could not compute the free times" />`;
  const list = slots.data.slots;
  if (list.length === 0) return html`<${Empty} title="No free time this day.">Try another day, or check your working hours.<//>`;
  return html`<fieldset class="slots">
    <legend>${label}</legend>
    ${list.map((s) => {
      const t = wall(s.start, zone).time;
      return html`<button type="button" key=${s.start} class=${selected === s.start ? "" : "secondary"} aria-pressed=${selected === s.start}
        onClick=${() => onSelect(s)}>${t}</button>`;
    })}
  </fieldset>`;
}

/** The refusal the API would answer for a booking without a usable client, or null. */
function missingClient(mode, name, email) {
  if (email) return null;
  if (mode === "hold" && !name) return null; // a hold may wait for its client
  return new api.ApiError({
    status: 422,
    code: name ? "contact_required" : "client_required",
    detail: name ? "a client needs an email or a phone number" : "this booking needs a client",
    hint: name ? "add the client's email" : "enter the client's name and email, or choose \u201cHold it for a few minutes\u201d",
    fields: [{ field: "client_email", message: "required", code: "required" }],
  });
}

/** Confirm a fresh hold; if that fails, release the hold (never leave it blocking the time)
 * and report why confirming failed. A confirmation whose answer was lost may still have gone
 * through: the booking is read again first, and only a booking still held is released. */
async function confirmOrRelease(held, zone) {
  try {
    return await api.post(`/v1/bookings/${held.id}/confirm`, {});
  } catch (err) {
    try {
      const now = await api.get(`/v1/bookings/${held.id}`);
      if (now.status === "confirmed") return now;
      if (now.status === "held") await api.post(`/v1/bookings/${held.id}/cancel`, { reason: "released: confirming it failed" });
    } catch {
      const until = held.hold_expires_at ? ` until ${wall(held.hold_expires_at, zone).time}` : "";
      err.hint = `${err.hint ? `${err.hint}. ` : ""}The time stays held${until}; cancel the hold from its booking page to free it sooner.`;
    }
    throw err;
  }
}

function NewBooking({ day, zone, ctx, navigate }) {
  const services = useAsync(() => api.getAll("/v1/bookings/services", { active: true }), [ctx.base]);
  const [serviceId, setServiceId] = useState("");
  const [slot, setSlot] = useState(null);
  const [form, setForm] = useState({ name: "", email: "", mode: "confirm" });
  const set = (k) => (v) => setForm({ ...form, [k]: v });
  const { busy, error, setError, run } = useAction();
  useEffect(() => {
    if (!serviceId && services.data && services.data.length) setServiceId(services.data[0].id);
  }, [services.data]);
  const submit = async (e) => {
    e.preventDefault();
    const name = form.name.trim();
    const email = form.email.trim();
    // What the API would refuse anyway is said before anything is held (the API stays the
    // judge of the rest): a confirmed booking or a request needs its client, and a client
    // is found or created by their email.
    const missing = missingClient(form.mode, name, email);
    if (missing) {
      setError(missing);
      return;
    }
    const made = await run(async () => {
      const body = { service_id: serviceId, start_at: slot.start, time_zone: zone };
      if (name) body.client_name = name;
      if (email) body.client_email = email;
      if (form.mode === "request") return api.post("/v1/bookings/requests", body);
      const held = await api.post("/v1/bookings/holds", body);
      return form.mode === "confirm" ? confirmOrRelease(held, zone) : held;
    });
    if (made) navigate(ctx.url(`calendar/bookings/${made.id}`));
  };
  return html`<section class="new-booking" aria-labelledby="new-booking-title">
    <h3 id="new-booking-title">New booking</h3>
    ${services.loading && html`<${Loading} label="Loading services…" />`}
    <${ErrorBox} error=${services.error} />
    ${services.data && services.data.length === 0 && html`<${Empty} title="No active service yet."><a href=${ctx.url("services")}>Create a service</a> first.<//>`}
    ${services.data && services.data.length > 0 && html`
      <${Field} label="Service" name="service_id" value=${serviceId} onInput=${(v) => { setServiceId(v); setSlot(null); }}
        options=${services.data.map((s) => ({ value: s.id, label: `${s.name} (${s.duration_minutes} min)` }))} />
      <${SlotPicker} serviceId=${serviceId} day=${day} zone=${zone} selected=${slot && slot.start} onSelect=${setSlot} />
      ${slot && html`<form onSubmit=${submit} aria-label="Book this time" novalidate>
        <p>At <strong>${wall(slot.start, zone).time}</strong> on ${dayLabel(day, "long")}.</p>
        <${ErrorBox} error=${error} title="Could not book this time" />
        <${Field} label="Client name" name="client_name" value=${form.name} onInput=${set("name")} error=${error} />
        <${Field} label="Client email" name="client_email" type="email" value=${form.email} onInput=${set("email")} error=${error} />
        <${Field} label="How to book" name="mode" value=${form.mode} onInput=${set("mode")} options=${[
          { value: "confirm", label: "Book it (confirmed)" },
          { value: "hold", label: "Hold it for a few minutes" },
          { value: "request", label: "As a request to approve" },
        ]} />
        <div class="actions"><button type="submit" disabled=${busy}>Create booking</button></div>
      </form>`}`}
  </section>`;
}

// --- one booking --------------------------------------------------------------------------------

function span(b, zone) {
  const s = wall(b.start_at, zone);
  const e = wall(b.end_at, zone);
  return `${dayLabel(s.date, "long")}, ${s.time}–${e.time}`;
}

function ReasonForm({ label, field, button, onSubmit, error, busy }) {
  const [reason, setReason] = useState("");
  const submit = (e) => {
    e.preventDefault();
    onSubmit(reason.trim());
  };
  return html`<form class="inline" onSubmit=${submit} aria-label=${button} novalidate>
    <${Field} label=${label} name=${field} value=${reason} onInput=${setReason} error=${error} />
    <button type="submit" class="danger" disabled=${busy}>${button}</button>
  </form>`;
}

/** Cancelling asks first, with what it would cost: the API's dry run says the late fee, if any. */
function CancelBooking({ booking, onDone }) {
  const [reason, setReason] = useState("");
  const [preview, setPreview] = useState(null);
  const { busy, error, run } = useAction();
  const body = (dry_run) => ({ ...(reason.trim() ? { reason: reason.trim() } : {}), dry_run });
  const ask = async (e) => {
    e.preventDefault();
    const p = await run(() => api.post(`/v1/bookings/${booking.id}/cancel`, body(true)));
    if (p) setPreview(p);
  };
  const commit = async () => {
    const done = await run(() => api.post(`/v1/bookings/${booking.id}/cancel`, body(false)));
    if (done) onDone(done.booking);
  };
  return html`<div>
    <form class="inline" onSubmit=${ask} aria-label="Cancel booking" novalidate>
      <${Field} label="Reason for cancelling" name="reason" value=${reason} onInput=${(v) => { setReason(v); setPreview(null); }} error=${error} />
      <button type="submit" class="danger" disabled=${busy || preview}>Cancel booking</button>
    </form>
    <${ErrorBox} error=${error} title="Could not cancel" />
    ${preview && html`<div class="preview" role="region" aria-label="Cancel this booking?">
      <p><strong>Nothing is cancelled yet.</strong> ${preview.fee ? `A late-cancellation fee of ${preview.fee.amount} ${preview.fee.currency} applies.` : "No fee applies."}</p>
      ${preview.policy_note && html`<p class="notice">${preview.policy_note}</p>`}
      <div class="actions">
        <button type="button" class="danger" disabled=${busy} onClick=${commit}>Yes, cancel booking</button>
        <button type="button" class="secondary" onClick=${() => setPreview(null)}>Keep the booking</button>
      </div>
    </div>`}
  </div>`;
}

// An instant as the API writes it in a change ("start: 2026-12-09T08:00:00Z -> …").
const INSTANT = /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})/g;

/** One of the API's change lines with its instants on the provider's wall clock, like the rest
 * of the page. */
export function changeLine(change, zone) {
  const text = change
    .replace(INSTANT, (iso) => {
      const w = wall(iso, zone);
      return `${dayLabel(w.date)} ${w.time}`;
    })
    .replace(/ -> /g, " \u2192 ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function Reschedule({ booking, zone, onDone }) {
  const [day, setDay] = useState(wall(booking.start_at, zone).date);
  const [slot, setSlot] = useState(null);
  const [preview, setPreview] = useState(null);
  const { busy, error, run } = useAction();
  const body = () => ({ start_at: slot.start, provider: booking.provider.slug });
  const ask = async () => {
    const p = await run(() => api.post(`/v1/bookings/${booking.id}/reschedule`, { ...body(), dry_run: true }));
    if (p) setPreview(p);
  };
  const commit = async () => {
    const done = await run(() => api.post(`/v1/bookings/${booking.id}/reschedule`, { ...body(), dry_run: false }));
    if (done) onDone(done.booking);
  };
  return html`<section aria-labelledby="reschedule-title" class="panel">
    <h2 id="reschedule-title">Reschedule</h2>
    <${Field} label="New day" name="day" type="date" value=${day} onInput=${(v) => { setDay(v); setSlot(null); setPreview(null); }} />
    ${isDay(day) && html`<${SlotPicker} serviceId=${booking.service.id} moving=${booking.id} day=${day} zone=${zone} provider=${booking.provider.slug}
      selected=${slot && slot.start} onSelect=${(s) => { setSlot(s); setPreview(null); }} label="New time" />`}
    <${ErrorBox} error=${error} title="Could not reschedule" />
    ${slot && !preview && html`<div class="actions"><button type="button" disabled=${busy} onClick=${ask}>Preview the change</button></div>`}
    ${preview && html`<div class="preview" role="region" aria-label="Preview of the change">
      <p><strong>Nothing is changed yet.</strong> After the change:</p>
      <p>${span(booking, zone)} → <strong>${span(preview.booking, zone)}</strong></p>
      <ul aria-label="What changes">${preview.changes.map((c) => html`<li key=${c}>${changeLine(c, zone)}</li>`)}</ul>
      ${preview.policy_note && html`<p class="notice">${preview.policy_note}</p>`}
      <div class="actions">
        <button type="button" disabled=${busy} onClick=${commit}>Confirm the reschedule</button>
        <button type="button" class="secondary" onClick=${() => setPreview(null)}>Discard</button>
      </div>
    </div>`}
  </section>`;
}

/** A hold made without a client: confirming it first asks who the client is (the API finds
 * the client by email or phone, or creates them). */
function ConfirmWithClient({ booking, onDone, onClose }) {
  const [form, setForm] = useState({ name: "", email: "", phone: "" });
  const set = (k) => (v) => setForm({ ...form, [k]: v });
  const { busy, error, setError, run } = useAction();
  // Opened by the Confirm button: the keyboard lands in the form it opened, not behind it.
  useEffect(() => {
    const first = document.querySelector("#confirm-client input");
    if (first) first.focus();
  }, []);
  const submit = async (e) => {
    e.preventDefault();
    const name = form.name.trim();
    const email = form.email.trim();
    const phone = form.phone.trim();
    if (!email && !phone) {
      setError(new api.ApiError({
        status: 422,
        code: "contact_required",
        detail: "a client needs an email or a phone number",
        hint: "enter the client's email or phone number",
        fields: [{ field: "client_email", message: "email or phone required", code: "required" }],
      }));
      return;
    }
    const body = { ...(name ? { client_name: name } : {}), ...(email ? { client_email: email } : {}), ...(phone ? { client_phone: phone } : {}) };
    const done = await run(() => api.post(`/v1/bookings/${booking.id}/confirm`, body));
    if (done) onDone(done);
  };
  return html`<form id="confirm-client" class="panel" onSubmit=${submit} aria-label="Who is the client?" novalidate>
    <h3>Who is the client?</h3>
    <p class="muted">This hold has no client yet: say who it is for to confirm it.</p>
    <${ErrorBox} error=${error} title="Could not confirm" />
    <${Field} label="Client name" name="client_name" value=${form.name} onInput=${set("name")} error=${error} autocomplete="off" />
    <${Field} label="Client email" name="client_email" type="email" value=${form.email} onInput=${set("email")} error=${error} autocomplete="off" />
    <${Field} label="Client phone" name="client_phone" type="tel" value=${form.phone} onInput=${set("phone")} error=${error} hint="With the country code; needed only without an email." autocomplete="off" />
    <div class="actions">
      <button type="submit" disabled=${busy}>Confirm with this client</button>
      <button type="button" class="secondary" onClick=${onClose}>Not now</button>
    </div>
  </form>`;
}

export function BookingPage({ ctx, params }) {
  const { zone } = useZone(ctx);
  const booking = useAsync(() => api.get(`/v1/bookings/${params.id}`), [params.id]);
  const [current, setCurrent] = useState(null);
  const [said, setSaid] = useState("");
  const [link, setLink] = useState(null);
  const [asking, setAsking] = useState(false);
  const { busy, error, run } = useAction();
  const b = current || booking.data;
  const act = async (fn, message) => {
    const out = await run(fn);
    if (out) {
      setCurrent(out.booking || out);
      setSaid(message);
    }
  };
  const back = html`<p><a href=${ctx.url("calendar")}>← Calendar</a></p>`;
  if (!b && booking.error) {
    // Like a client or a job of another context: say where it may be, and the way back.
    const gone = booking.error.status === 404;
    return html`<section>${back}<${PageHeader} title=${gone ? "Booking not found" : "Could not load this booking"} />
      <${ErrorBox} error=${booking.error} title="Could not load this booking" />
      ${gone && html`<p>Bookings belong to the context they were made in: switch to it to see this one.</p>`}</section>`;
  }
  if (!b || !zone) {
    return html`<section>${back}<${PageHeader} title="Booking" /><${Loading} label="Loading the booking…" /></section>`;
  }
  const open = ["held", "requested", "confirmed"].includes(b.status);
  const day = wall(b.start_at, zone).date;
  return html`<section>
    <${PageHeader} title=${`${b.service.name} · ${b.client ? b.client.name : "no client yet"}`} />
    <p><a href=${ctx.url(`calendar?view=day&date=${day}`)}>← Back to ${dayLabel(day, "long")}</a></p>
    ${said && html`<p class="success" role="status">${said}</p>`}
    <${ErrorBox} error=${error} />
    <dl class="facts">
      <dt>Status</dt><dd><span class=${`badge status-${b.status}`}>${STATUS_LABELS[b.status]}</span></dd>
      <dt>When</dt><dd>${span(b, zone)} <span class="muted">(${zone})</span></dd>
      <dt>Provider</dt><dd>${b.provider.display_name || b.provider.slug}</dd>
      <dt>Client</dt><dd>${b.client ? [b.client.name, b.client.email, b.client.phone].filter(Boolean).join(" · ") : "—"}</dd>
      ${b.price && html`<dt>Price</dt><dd>${b.price.amount} ${b.price.currency}</dd>`}
      ${b.hold_expires_at && b.status === "held" && html`<dt>Hold expires</dt><dd>${wall(b.hold_expires_at, zone).time}</dd>`}
      ${b.decline_reason && html`<dt>Declined because</dt><dd>${b.decline_reason}</dd>`}
      ${b.cancellation && html`<dt>Cancelled</dt><dd>by ${b.cancellation.by}${b.cancellation.reason ? `: ${b.cancellation.reason}` : ""}${b.cancellation.untrusted_reason ? html` <span class="from-client">(from the client) ${b.cancellation.untrusted_reason}</span>` : ""}</dd>`}
      ${b.reminder && html`<dt>Reminder</dt><dd>${REMINDER_LABELS[b.reminder.status]}${b.reminder.channel ? ` (${b.reminder.channel})` : ""}${b.reminder.error ? html` <span class="muted">${b.reminder.error}</span>` : ""}</dd>`}
      <dt>Booking id</dt><dd class="mono">${b.id}</dd>
    </dl>
    ${b.untrusted_client_note && html`<blockquote class="from-client" aria-label="Note from the client"><p class="muted">Written by the client:</p><p>${b.untrusted_client_note}</p></blockquote>`}
    ${b.reschedules.length > 0 && html`<h2>History</h2><ul>${b.reschedules.map((r) => html`<li key=${r.at}>Moved by ${r.by} from ${span({ start_at: r.from_start_at, end_at: r.from_end_at }, zone)} to ${span({ start_at: r.to_start_at, end_at: r.to_end_at }, zone)}</li>`)}</ul>`}

    <h2>Actions</h2>
    <div class="actions">
      ${["held", "requested"].includes(b.status) && html`<button type="button" disabled=${busy || asking} aria-expanded=${b.client ? undefined : asking} aria-controls=${b.client ? undefined : "confirm-client"}
        onClick=${() => (b.client ? act(() => api.post(`/v1/bookings/${b.id}/confirm`, {}), "Confirmed.") : setAsking(true))}>Confirm</button>`}
      <button type="button" class="secondary" disabled=${busy} onClick=${async () => { const l = await run(() => api.post(`/v1/bookings/${b.id}/manage-link`)); if (l) setLink(l); }}>Get the client's manage link</button>
      <button type="button" class="secondary" disabled=${busy} onClick=${async () => { const l = await run(() => api.post(`/v1/bookings/${b.id}/manage-link?revoke_previous=true`)); if (l) { setLink(l); setSaid("Earlier manage links no longer work; this is the new one."); } }}>Revoke earlier manage links</button>
    </div>
    ${asking && b.status === "held" && !b.client && html`<${ConfirmWithClient} booking=${b} onClose=${() => setAsking(false)}
      onDone=${(nb) => { setAsking(false); setCurrent(nb); setSaid("Confirmed."); }} />`}
    ${link && html`<p class="manage-link"><span class="mono">${link.url}</span> <${CopyButton} text=${link.url} label="Copy manage link" /></p>`}
    ${b.status === "requested" && html`<${ReasonForm} label="Reason for declining" field="reason" button="Decline" busy=${busy} error=${error}
      onSubmit=${(reason) => act(() => api.post(`/v1/bookings/${b.id}/decline`, { reason }), "Declined.")} />`}
    ${b.status === "confirmed" && new Date(b.start_at) <= new Date() && html`<form class="inline" aria-label="Record the outcome" onSubmit=${(e) => { e.preventDefault(); act(() => api.post(`/v1/bookings/${b.id}/outcome`, { outcome: e.target.outcome.value }), "Outcome recorded."); }}>
      <${Field} label="Outcome" name="outcome" value="completed" options=${[{ value: "completed", label: "Completed" }, { value: "no_show", label: "No-show" }]} />
      <button type="submit" class="secondary" disabled=${busy}>Record outcome</button>
    </form>`}
    ${open && html`<${Reschedule} key=${b.start_at} booking=${b} zone=${zone} onDone=${(nb) => { setCurrent(nb); setSaid(`Rescheduled to ${span(nb, zone)}. Same booking (id ${nb.id}).`); }} />`}
    ${open && html`<h2>Cancel</h2><${CancelBooking} booking=${b} onDone=${(nb) => { setCurrent(nb); setSaid("Cancelled."); }} />`}
  </section>`;
}
