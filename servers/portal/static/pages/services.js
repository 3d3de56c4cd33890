// Services editor and weekly working hours with date overrides. Both send the API's own shapes
// back: a service's `price` object, and hours as the compact lines ("mon 09:00-17:00") that the
// REST door and the MCP tool both read.

import * as api from "../api.js";
import { html, useState, Empty, ErrorBox, Field, Loading, PageHeader, useAsync } from "../ui.js";
import { browserZone } from "./calendar.js";
import { ChangedMeanwhile, FreshRead, useVersioned } from "./versioned.js";

const NUMBERS = [
  ["duration_minutes", "Duration (minutes)", "60"],
  ["buffer_before_minutes", "Buffer before (minutes)", "0"],
  ["buffer_after_minutes", "Buffer after (minutes)", "0"],
  ["min_notice_minutes", "Minimum notice (minutes)", "0"],
  ["max_advance_days", "Bookable up to (days ahead)", "60"],
  ["slot_interval_minutes", "Start times every (minutes)", ""],
  ["cancel_notice_minutes", "Late cancellation within (minutes)", "0"],
];

const LOCATIONS = [
  { value: "in_person", label: "In person" },
  { value: "phone", label: "Phone" },
  { value: "video", label: "Video" },
  { value: "client_address", label: "At the client's address" },
  { value: "other", label: "Other" },
];

function toForm(s) {
  const f = { name: s ? s.name : "", description: s && s.description ? s.description : "" };
  for (const [k, , d] of NUMBERS) f[k] = s && s[k] != null ? String(s[k]) : d;
  f.price = s && s.price ? String(s.price.amount) : "";
  f.currency = s && s.price ? s.price.currency : s && s.late_cancel_fee ? s.late_cancel_fee.currency : "EUR";
  f.fee = s && s.late_cancel_fee ? String(s.late_cancel_fee.amount) : "";
  f.location_kind = s ? s.location_kind : "in_person";
  f.location = s && s.location ? s.location : "";
  f.active = s && !s.active ? "no" : "yes";
  f.approval = s && s.approval_required ? "yes" : "no";
  return f;
}

function toBody(f) {
  const body = { name: f.name.trim(), description: f.description.trim() || null };
  for (const [k] of NUMBERS) {
    if (f[k].trim() !== "") body[k] = Number(f[k]);
    else if (k === "slot_interval_minutes") body[k] = null;
  }
  const currency = f.currency.trim();
  // The API's own answer shape: {"amount", "currency"} (or null for no price).
  body.price = f.price.trim() ? { amount: f.price.trim(), currency } : null;
  body.late_cancel_fee = f.fee.trim() ? { amount: f.fee.trim(), currency } : null;
  body.location_kind = f.location_kind;
  body.location = f.location.trim() || null;
  body.active = f.active === "yes";
  body.approval_required = f.approval === "yes";
  return body;
}

/** `version`: {data, etag} of the service as read when the form opened; none for a new one. */
function ServiceForm({ version, onSaved, onCancel }) {
  const service = version ? version.data : null;
  const path = service ? `/v1/bookings/services/${service.id}` : "/v1/bookings/services";
  const edit = useVersioned(version, path, toForm);
  const { form, setForm, busy, error } = edit;
  const set = (k) => (v) => setForm({ ...form, [k]: v });
  const submit = async (e) => {
    e.preventDefault();
    const saved = await edit.save((opts) => (service ? api.patch(path, toBody(form), opts) : api.post(path, toBody(form), opts)));
    if (saved) onSaved(saved);
  };
  const label = service ? `Edit ${service.name}` : "New service";
  return html`<form onSubmit=${submit} aria-label=${label} novalidate class="service-form">
    <${ErrorBox} error=${error} title="Could not save the service" />
    <${ChangedMeanwhile} edit=${edit} what="service" />
    <${Field} label="Service name" name="name" value=${form.name} onInput=${set("name")} error=${error} required />
    <${Field} label="Description" name="description" type="textarea" value=${form.description} onInput=${set("description")} error=${error} />
    <div class="grid-fields">
      ${NUMBERS.map(([k, label]) => html`<${Field} key=${k} label=${label} name=${k} type="number" min="0" value=${form[k]} onInput=${set(k)} error=${error}
        hint=${k === "slot_interval_minutes" ? "Empty: the duration." : undefined} />`)}
      <${Field} label="Price" name="price_amount" value=${form.price} onInput=${set("price")} error=${error} hint="Empty: no price." inputmode="decimal" />
      <${Field} label="Currency" name="currency" value=${form.currency} onInput=${set("currency")} error=${error} hint="e.g. EUR" />
      <${Field} label="Late cancellation fee" name="late_cancel_fee" value=${form.fee} onInput=${set("fee")} error=${error} inputmode="decimal" />
      <${Field} label="Location" name="location_kind" value=${form.location_kind} onInput=${set("location_kind")} options=${LOCATIONS} />
      <${Field} label="Address or video link" name="location" value=${form.location} onInput=${set("location")} error=${error} />
      <${Field} label="Offered" name="active" value=${form.active} onInput=${set("active")}
        options=${[{ value: "yes", label: "Active: offered to clients" }, { value: "no", label: "Inactive: not offered" }]} />
      <${Field} label="Approval required" name="approval_required" value=${form.approval} onInput=${set("approval")}
        hint="Bookings clients make on your booking page wait for your confirmation."
        options=${[{ value: "no", label: "No: clients book directly" }, { value: "yes", label: "Yes: clients send a request" }]} />
    </div>
    <div class="actions">
      <button type="submit" disabled=${busy}>Save service</button>
      ${onCancel && html`<button type="button" class="secondary" onClick=${onCancel}>Cancel</button>`}
    </div>
  </form>`;
}

export function ServicesPage({ ctx }) {
  const list = useAsync(() => api.getAll("/v1/bookings/services"), [ctx.base]);
  const canChange = ctx.kind !== "org" || ctx.role === "owner" || ctx.role === "admin";
  const [editing, setEditing] = useState(null);
  const [said, setSaid] = useState("");
  const done = (s) => {
    setEditing(null);
    setSaid(`Saved ${s.name}.`);
    list.reload();
  };
  return html`<section>
    <${PageHeader} title="Services">
      ${canChange && editing !== "new" && html`<button type="button" onClick=${() => { setSaid(""); setEditing("new"); }}>New service</button>`}
      <a href=${ctx.url("calendar")}>Calendar</a>
    <//>
    <p class="muted">What clients can book: duration, buffers around it, notice, price and cancellation terms. Requests are approved on the booking itself.</p>
    ${!canChange && html`<p class="notice">You are a ${ctx.role} of ${ctx.orgName}: you can see its services; its owner or an admin creates and changes them.</p>`}
    ${said && html`<p class="success" role="status">${said}</p>`}
    ${editing === "new" && html`<h2>New service</h2><${ServiceForm} onSaved=${done} onCancel=${() => setEditing(null)} />`}
    ${list.loading && !list.data && html`<${Loading} label="Loading services…" />`}
    <${ErrorBox} error=${list.error} />
    ${list.data && list.data.length === 0 && editing !== "new" && html`<${Empty} title="No services yet.">
      ${canChange && html`<button type="button" onClick=${() => setEditing("new")}>Create the first service</button>`}<//>`}
    ${list.data && list.data.length > 0 && html`<table>
      <thead><tr><th scope="col">Service</th><th scope="col">Duration</th><th scope="col">Price</th><th scope="col">State</th>${canChange && html`<th scope="col">Actions</th>`}</tr></thead>
      <tbody>${list.data.map((s) => editing === s.id
        ? html`<tr key=${s.id}><td colspan="5"><h2>Edit ${s.name}</h2><${FreshRead} path=${`/v1/bookings/services/${s.id}`} label=${`Opening ${s.name}…`}
            form=${(version) => html`<${ServiceForm} version=${version} onSaved=${done} onCancel=${() => setEditing(null)} />`} /></td></tr>`
        : html`<tr key=${s.id}>
            <td>${s.name}</td>
            <td>${s.duration_minutes} min${s.buffer_before_minutes || s.buffer_after_minutes ? ` (+${s.buffer_before_minutes}/${s.buffer_after_minutes} buffer)` : ""}</td>
            <td>${s.price ? `${s.price.amount} ${s.price.currency}` : "—"}</td>
            <td>${s.active ? "Active" : html`<span class="muted">Inactive</span>`}${s.approval_required ? " · approval required" : ""}</td>
            ${canChange && html`<td><button type="button" class="secondary" aria-label=${`Edit ${s.name}`} onClick=${() => { setSaid(""); setEditing(s.id); }}>Edit</button></td>`}
          </tr>`)}</tbody>
    </table>`}
  </section>`;
}

// --- working hours ------------------------------------------------------------------------------

const DAYS = [
  ["mon", "Monday"], ["tue", "Tuesday"], ["wed", "Wednesday"], ["thu", "Thursday"],
  ["fri", "Friday"], ["sat", "Saturday"], ["sun", "Sunday"],
];

function rangesText(ranges) {
  return ranges.map((r) => `${r.start}-${r.end}`).join(", ");
}

function hoursForm(h) {
  const f = { time_zone: (h && h.time_zone) || browserZone(), days: {}, overrides: [] };
  for (const [d] of DAYS) f.days[d] = rangesText(h ? h.weekly.filter((w) => w.weekday === d).sort((a, b) => (a.start < b.start ? -1 : 1)) : []);
  f.overrides = h ? h.overrides.map((o) => ({ date: o.date, hours: o.intervals.length ? rangesText(o.intervals) : "off" })) : [];
  return f;
}

function ranges(text) {
  return text.split(/[,\s]+/).map((r) => r.trim()).filter(Boolean);
}

/** The week as the API's objects, each range split at its first "-" (the API says what is wrong
 * with a part), and which day each object came from, to show the API's answer on that day. */
function weeklyBody(days) {
  const weekly = [];
  const from = [];
  for (const [d] of DAYS) {
    for (const r of ranges(days[d])) {
      const cut = r.indexOf("-");
      weekly.push({ weekday: d, start: cut < 0 ? r : r.slice(0, cut), end: cut < 0 ? "" : r.slice(cut + 1) });
      from.push(d);
    }
  }
  return { weekly, from };
}

/** What the API said about one day or one date, if anything: an object's fields
 * ("weekly.3.end": the 4th object sent) or a message that starts with that day ("mon: ...",
 * "2026-12-24: ...", "'2026-12-24 25:00': ..."). */
function saidAbout(error, field, key, sentFrom) {
  if (!error || !error.fields) return "";
  const hits = [];
  for (const f of error.fields) {
    const item = f.field.match(/^(\w+)\.(\d+)(?:\.|$)/);
    if (item && item[1] === field && sentFrom && sentFrom[Number(item[2])] === key) hits.push(f.message);
    else if (f.field === field) {
      const quoted = f.message.match(/^'([^']*)': (.*)$/s);
      const about = quoted ? quoted[1].split(" ")[0] : f.message.split(": ")[0];
      if (about === key) hits.push(quoted ? quoted[2] : f.message.slice(key.length + 2));
    }
  }
  return [...new Set(hits)].join("; ");
}

export function HoursPage({ ctx }) {
  return html`<section>
    <${PageHeader} title="Working hours"><a href=${ctx.url("calendar")}>Calendar</a><//>
    <p class="muted">When you can be booked. Write ranges like <code>09:00-12:00, 13:00-17:00</code>; leave a day empty when you do not work. Existing bookings are kept.</p>
    <${FreshRead} key=${ctx.base} path="/v1/bookings/availability" label="Loading working hours…" failed="Could not load the working hours"
      form=${(version) => html`<${HoursForm} version=${version} />`} />
  </section>`;
}

/** The hours as read (`version`): every save is conditional on the version this form shows. */
function HoursForm({ version }) {
  const edit = useVersioned(version, "/v1/bookings/availability", hoursForm);
  const { form: f, setForm, busy, error } = edit;
  const [extra, setExtra] = useState({ date: "", hours: "off" });
  const [said, setSaid] = useState("");
  const [sentFrom, setSentFrom] = useState([]);
  const update = (patch) => setForm({ ...f, ...patch });
  const save = async (e) => {
    e.preventDefault();
    const { weekly, from } = weeklyBody(f.days);
    setSentFrom(from);
    // Overrides as the compact lines the tool takes too: "2026-12-24 off".
    const overrides = f.overrides.map((o) => `${o.date} ${o.hours.trim().toLowerCase() === "off" ? "off" : ranges(o.hours).join(" ")}`);
    setSaid("");
    const saved = await edit.save((opts) => api.put("/v1/bookings/availability", { time_zone: f.time_zone.trim(), weekly, overrides }, opts));
    if (saved) {
      setForm(hoursForm(saved));
      setSaid("Working hours saved.");
    }
  };
  const addOverride = () => {
    if (!extra.date) return;
    update({ overrides: [...f.overrides.filter((o) => o.date !== extra.date), { ...extra }].sort((a, b) => (a.date < b.date ? -1 : 1)) });
    setExtra({ date: "", hours: "off" });
  };
  return html`
    ${said && html`<p class="success" role="status">${said}</p>`}
      <form onSubmit=${save} aria-label="Working hours" novalidate id="hours-form">
        <${ErrorBox} error=${error} title="Could not save the working hours" />
        <${ChangedMeanwhile} edit=${edit} what="working hours" />
        <${Field} label="Time zone" name="time_zone" value=${f.time_zone} onInput=${(v) => update({ time_zone: v })} error=${error} hint="An IANA zone, e.g. Europe/Paris." />
        <fieldset class="weekly"><legend>Every week</legend>
          ${DAYS.map(([d, name]) => html`<${Field} key=${d} label=${`${name} hours`} name=${`weekly-${d}`} value=${f.days[d]}
            onInput=${(v) => update({ days: { ...f.days, [d]: v } })} placeholder="closed" error=${saidAbout(error, "weekly", d, sentFrom)} />`)}
        </fieldset>
        <fieldset><legend>Date overrides</legend>
          ${f.overrides.length === 0 && html`<p class="muted">None: every date follows the weekly hours.</p>`}
          ${f.overrides.length > 0 && html`<table><thead><tr><th scope="col">Date</th><th scope="col">Hours</th><th scope="col">Actions</th></tr></thead>
            <tbody>${f.overrides.map((o) => html`<tr key=${o.date}><td>${o.date}</td><td>${o.hours === "off" ? "Day off" : o.hours}${saidAbout(error, "overrides", o.date) && html`<p class="field-error">${saidAbout(error, "overrides", o.date)}</p>`}</td>
              <td><button type="button" class="secondary" aria-label=${`Remove override ${o.date}`} onClick=${() => update({ overrides: f.overrides.filter((x) => x.date !== o.date) })}>Remove</button></td></tr>`)}</tbody></table>`}
          <div class="row" role="group" aria-label="Add a date override">
            <${Field} label="Override date" name="override-date" type="date" value=${extra.date} onInput=${(v) => setExtra({ ...extra, date: v })} />
            <${Field} label="Hours that day" name="override-hours" value=${extra.hours} onInput=${(v) => setExtra({ ...extra, hours: v })} hint='"off" or e.g. 10:00-14:00' />
            <button type="button" class="secondary" onClick=${addOverride}>Add override</button>
          </div>
          <p class="muted">Added overrides are kept once you save the working hours.</p>
        </fieldset>
        <div class="actions"><button type="submit" disabled=${busy}>Save working hours</button></div>
      </form>`;
}
