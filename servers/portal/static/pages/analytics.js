// Analytics of the current context: summary cards against the previous period, a trend chart
// (top N breakdown series + other) and a funnel, both drawn as SVG from the REST answers with a
// table view as their text alternative, and (org owners/admins) the per-member table.
// Everything the page shows is in its URL query, so a view can be bookmarked or shared.
// Breakdown values are data sent with events: rendered as text, never as markup.

import * as api from "../api.js";
import { html, useState, Empty, ErrorBox, Field, Loading, PageHeader, useAsync } from "../ui.js";

const PERIODS = [
  ["last_7_days", "Last 7 days"],
  ["last_30_days", "Last 30 days"],
  ["last_90_days", "Last 90 days"],
  ["this_week", "This week"],
  ["last_week", "Last week"],
  ["this_month", "This month"],
  ["last_month", "Last month"],
  ["this_year", "This year"],
  ["custom", "Custom dates"],
];
const INTERVALS = [["hour", "Hour"], ["day", "Day"], ["week", "Week"]];
const DEFAULTS = {
  period: "last_30_days",
  interval: "day",
  events: "page_view",
  breakdown: "channel",
  top: "3",
  steps: "page_view, service_viewed, booking_started, booking_requested",
  window: "1d",
};

const list = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);
export const timeZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

function rangeOf(v) {
  const tz = timeZone();
  return v.period === "custom" ? { start: v.start || undefined, end: v.end || undefined, time_zone: tz } : { period: v.period, time_zone: tz };
}

function pct(x) {
  return x === null || x === undefined ? "—" : `${(x * 100).toFixed(1)}%`;
}

function change(now, before) {
  if (!before) return now ? "new this period" : "no change";
  const d = (now - before) / before;
  if (d === 0) return "no change";
  return `${d > 0 ? "+" : "−"}${Math.abs(d * 100).toFixed(0)}% vs previous period (${before.toLocaleString()})`;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} days`;
}

/** Amounts come as decimal strings written with their currency's decimals ("45.00", "1500"):
 * shown with those decimals, grouped the reader's way. */
function amount(text) {
  const digits = (String(text).split(".")[1] || "").length;
  return Number(text).toLocaleString(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function money(list) {
  if (!list || list.length === 0) return "0";
  return list.map((r) => `${amount(r.booked)} ${r.currency || ""}`.trim()).join(" + ");
}

/** Revenue against the previous period, per currency: amounts in different currencies are
 * never added up (10,000 JPY + 60 EUR is no amount). */
function revenueChange(now, before) {
  const by = (list) => Object.fromEntries((list || []).map((r) => [r.currency || "", Number(r.booked)]));
  const n = by(now), b = by(before);
  const currencies = [...new Set([...Object.keys(n), ...Object.keys(b)])].sort();
  if (currencies.length <= 1) return change(n[currencies[0]] || 0, b[currencies[0]] || 0);
  return currencies.map((c) => `${c}: ${change(n[c] || 0, b[c] || 0)}`).join("; ");
}

/** A bucket's label, read from the answer's local time (already in the query's zone). */
function bucketLabel(b, interval) {
  const date = b.slice(0, 10);
  const [, m, d] = date.split("-");
  if (interval === "hour") return `${d}/${m} ${b.slice(11, 16)}`;
  if (interval === "week") return `week of ${d}/${m}`;
  return `${d}/${m}`;
}

/** A series' name: the event without a breakdown; else the value (with the event when several). */
export function seriesLabel(s, many, breakdown) {
  if (!breakdown) return s.event;
  const who = s.is_other ? "Other" : s.member ? s.member.display_name || s.member.slug || "former member" : s.untrusted_breakdown_value ?? "(not set)";
  return many ? `${s.event} · ${who}` : who;
}

// --- the trend ----------------------------------------------------------------------------

const W = 720, H = 260, PL = 48, PR = 16, PT = 12, PB = 36;

function ticks(max) {
  const raw = max / 4;
  const mag = 10 ** Math.floor(Math.log10(raw || 1));
  // Counts are whole numbers: never a 0.5 gridline.
  const step = Math.max(1, [1, 2, 5, 10].map((k) => k * mag).find((s) => s >= raw) || mag);
  const top = Math.max(step, Math.ceil(max / step) * step);
  const out = [];
  for (let v = 0; v <= top + 1e-9; v += step) out.push(Math.round(v * 100) / 100);
  return { top, values: out };
}

function TrendChart({ data, labels }) {
  const n = data.buckets.length;
  const max = Math.max(1, ...data.series.flatMap((s) => s.values));
  const { top, values } = ticks(max);
  const x = (i) => PL + (n <= 1 ? (W - PL - PR) / 2 : (i * (W - PL - PR)) / (n - 1));
  const y = (v) => PT + (H - PT - PB) * (1 - v / top);
  const every = Math.max(1, Math.ceil(n / 8));
  const summary = data.series.map((s, i) => `${labels[i]}: ${s.total}`).join(", ");
  return html`<figure class="chart">
    <svg viewBox=${`0 0 ${W} ${H}`} role="img" aria-label=${`Trend chart, ${data.query.interval} by ${data.query.interval}. Totals: ${summary}`}>
      ${values.map((v) => html`<g key=${"t" + v}>
        <line class="grid" x1=${PL} x2=${W - PR} y1=${y(v)} y2=${y(v)} />
        <text class="axis" x=${PL - 6} y=${y(v) + 4} text-anchor="end">${v}</text>
      </g>`)}
      ${data.buckets.map((b, i) => (i % every === 0 ? html`<text key=${b} class="axis" x=${x(i)} y=${H - PB + 18} text-anchor="middle">${bucketLabel(b, data.query.interval)}</text>` : null))}
      ${data.series.map((s, si) => {
        const cls = s.is_other ? "other" : `s${si % 8}`;
        return html`<g key=${"s" + si} class=${`series ${cls}`}>
          <polyline points=${s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ")} />
          ${n <= 40 && s.values.map((v, i) => html`<circle key=${i} cx=${x(i)} cy=${y(v)} r="2.5"><title>${labels[si]}, ${bucketLabel(data.buckets[i], data.query.interval)}: ${v}</title></circle>`)}
        </g>`;
      })}
    </svg>
    <figcaption>
      <ul class="legend" aria-label="Series">
        ${data.series.map((s, si) => html`<li key=${si}><span class=${`swatch ${s.is_other ? "other" : `s${si % 8}`}`} aria-hidden="true"></span>${labels[si]} <span class="muted">(${s.total})</span></li>`)}
      </ul>
    </figcaption>
  </figure>`;
}

function TrendTable({ data, labels }) {
  return html`<table aria-label="Trend table">
    <thead><tr><th scope="col">${data.query.interval === "hour" ? "Hour" : data.query.interval === "week" ? "Week" : "Day"}</th>
      ${labels.map((l, i) => html`<th key=${i} scope="col">${l}</th>`)}</tr></thead>
    <tbody>
      ${data.buckets.map((b, i) => html`<tr key=${b}><th scope="row">${bucketLabel(b, data.query.interval)}</th>${data.series.map((s, si) => html`<td key=${si}>${s.values[i]}</td>`)}</tr>`)}
    </tbody>
    <tfoot><tr><th scope="row">Total</th>${data.series.map((s, si) => html`<td key=${si}>${s.total}</td>`)}</tr></tfoot>
  </table>`;
}

function Trend({ state }) {
  const [asTable, setAsTable] = useState(false);
  const { data, error, loading } = state;
  const many = data && data.query.events.length > 1;
  const labels = data ? data.series.map((s) => seriesLabel(s, many, data.query.breakdown)) : [];
  const empty = data && data.series.every((s) => s.total === 0);
  return html`<section aria-labelledby="trend-h" class="panel">
    <div class="panel-head">
      <h2 id="trend-h">Trend</h2>
      ${data && !empty && html`<button type="button" class="secondary" onClick=${() => setAsTable(!asTable)}>${asTable ? "Show trend as chart" : "Show trend as table"}</button>`}
    </div>
    ${loading && html`<${Loading} label="Loading the trend…" />`}
    <${ErrorBox} error=${error} title="Could not compute the trend" />
    ${empty && html`<${Empty} title="No events in this period.">Send events with <code>POST /v1/analytics/events</code> (an agent with the scope <code>analytics:ingest</code> can), or pick a longer period.<//>`}
    ${data && !empty && html`<p class="muted">${data.text}</p>`}
    ${data && !empty && (asTable ? html`<${TrendTable} data=${data} labels=${labels} />` : html`<${TrendChart} data=${data} labels=${labels} />`)}
  </section>`;
}

// --- the funnel -----------------------------------------------------------------------------

function FunnelChart({ data }) {
  const first = Math.max(1, data.steps[0].clients);
  const row = 46, labelW = 190, barW = W - labelW - 150;
  const height = data.steps.length * row + 8;
  return html`<figure class="chart">
    <svg viewBox=${`0 0 ${W} ${height}`} role="img" aria-label=${`Funnel chart: ${data.steps.map((s) => `${s.event} ${s.clients}`).join(", ")}; conversion ${pct(data.conversion)}`}>
      ${data.steps.map((s, i) => {
        const w = Math.max(2, (barW * s.clients) / first);
        const top = i * row + 4;
        return html`<g key=${i} class="funnel-step">
          <text class="axis label" x=${labelW - 10} y=${top + 24} text-anchor="end">${i + 1}. ${s.event}</text>
          <rect class="bar-track" x=${labelW} y=${top + 6} width=${barW} height="28" rx="4" />
          <rect class="bar" x=${labelW} y=${top + 6} width=${w} height="28" rx="4"><title>${s.event}: ${s.clients} clients</title></rect>
          <text class="value" x=${labelW + barW + 10} y=${top + 18}>${s.clients} clients</text>
          <text class="axis" x=${labelW + barW + 10} y=${top + 34}>${i === 0 ? "start" : `${pct(s.conversion_from_previous)} of previous`}</text>
        </g>`;
      })}
    </svg>
  </figure>`;
}

function FunnelTable({ data }) {
  return html`<table aria-label="Funnel table">
    <thead><tr><th scope="col">Step</th><th scope="col">Event</th><th scope="col">Clients</th><th scope="col">From start</th><th scope="col">From previous</th><th scope="col">Median time from previous</th></tr></thead>
    <tbody>${data.steps.map((s) => html`<tr key=${s.step}>
      <td>${s.step}</td><td>${s.event}${s.filters.length > 0 && html` <span class="muted">where ${s.filters.join(" and ")}</span>`}</td><td>${s.clients}</td>
      <td>${pct(s.conversion_from_start)}</td><td>${pct(s.conversion_from_previous)}</td><td>${duration(s.median_seconds_from_previous)}</td>
    </tr>`)}</tbody>
  </table>`;
}

function Funnel({ state }) {
  const [asTable, setAsTable] = useState(false);
  const { data, error, loading } = state;
  const empty = data && data.steps[0].clients === 0;
  return html`<section aria-labelledby="funnel-h" class="panel">
    <div class="panel-head">
      <h2 id="funnel-h">Funnel</h2>
      ${data && !empty && html`<button type="button" class="secondary" onClick=${() => setAsTable(!asTable)}>${asTable ? "Show funnel as chart" : "Show funnel as table"}</button>`}
    </div>
    ${loading && html`<${Loading} label="Loading the funnel…" />`}
    <${ErrorBox} error=${error} title="Could not compute the funnel" />
    ${empty && html`<${Empty} title="Nobody reached the first step in this period.">Check the step names (they are event names), or pick a longer period.<//>`}
    ${data && !empty && html`<p><strong>Overall conversion: ${pct(data.conversion)}</strong></p><p class="muted">${data.text}</p>`}
    ${data && !empty && (asTable ? html`<${FunnelTable} data=${data} />` : html`<${FunnelChart} data=${data} />`)}
  </section>`;
}

// --- summary and members --------------------------------------------------------------------

function Card({ title, value, now, before, changed }) {
  return html`<li class="stat">
    <p class="stat-title">${title}</p>
    <p class="stat-value">${value}</p>
    <p class="stat-change muted">${changed || change(now, before)}</p>
  </li>`;
}

function Summary({ state }) {
  const { data, error, loading } = state;
  if (loading) return html`<${Loading} label="Loading the summary…" />`;
  if (error) return html`<${ErrorBox} error=${error} title="Could not load the summary" />`;
  if (!data) return null;
  const s = data, p = data.previous;
  return html`<ul class="cards stats" aria-label="Summary">
    <${Card} title="Bookings confirmed" value=${s.bookings.confirmed} now=${s.bookings.confirmed} before=${p.bookings.confirmed} />
    <${Card} title="Booking requests" value=${s.bookings.requested} now=${s.bookings.requested} before=${p.bookings.requested} />
    <${Card} title="Revenue booked" value=${money(s.revenue)} changed=${revenueChange(s.revenue, p.revenue)} />
    <${Card} title="Messages received" value=${s.messages.received} now=${s.messages.received} before=${p.messages.received} />
    <${Card} title="Messages sent" value=${s.messages.sent} now=${s.messages.sent} before=${p.messages.sent} />
    <li class="stat">
      <p class="stat-title">Median first response</p>
      <p class="stat-value">${duration(s.first_response.median_seconds)}</p>
      <p class="stat-change muted">${s.first_response.answered} of ${s.first_response.conversations} conversations answered</p>
    </li>
  </ul>`;
}

function Members({ data, orgName }) {
  if (!data || !data.members) return null;
  const sum = (k) => data.members.reduce((t, m) => t + m[k], 0);
  return html`<section aria-labelledby="members-h" class="panel">
    <h2 id="members-h">Per member</h2>
    <p class="muted">Each member's own numbers next to the org's.</p>
    <table aria-label="Per member">
      <thead><tr><th scope="col">Member</th><th scope="col">Bookings confirmed</th><th scope="col">Bookings completed</th><th scope="col">Messages received</th><th scope="col">Messages sent</th><th scope="col">Revenue booked</th></tr></thead>
      <tbody>${data.members.map((m) => html`<tr key=${m.member.id}>
        <th scope="row">${m.member.display_name || m.member.slug || "former member"}</th>
        <td>${m.bookings_confirmed}</td><td>${m.bookings_completed}</td><td>${m.messages_received}</td><td>${m.messages_sent}</td><td>${money(m.revenue)}</td>
      </tr>`)}</tbody>
      <tfoot><tr><th scope="row">${orgName || "Org"} (all members)</th>
        <td>${data.bookings.confirmed}</td><td>${data.bookings.completed}</td><td>${data.messages.received}</td><td>${data.messages.sent}</td><td>${money(data.revenue)}</td>
      </tr></tfoot>
    </table>
    ${sum("bookings_confirmed") !== data.bookings.confirmed && html`<p class="muted">Bookings of former members count in the org's total only.</p>`}
  </section>`;
}

// --- the page -------------------------------------------------------------------------------

export function AnalyticsPage({ ctx, query, navigate }) {
  // An empty value in the URL is a choice (e.g. no breakdown), not "use the default".
  const v = { ...DEFAULTS, ...(query || {}) };
  const [form, setForm] = useState(v);
  const set = (k) => (x) => setForm({ ...form, [k]: x });
  const key = JSON.stringify(v);
  const range = rangeOf(v);
  const summary = useAsync(() => api.get("/v1/analytics/summary", range), [ctx.base, key]);
  const trend = useAsync(
    () => api.post("/v1/analytics/trends", {
      ...range,
      events: list(v.events),
      interval: v.interval,
      breakdown: v.breakdown.trim() || null,
      breakdown_limit: Number(v.top) || 3,
    }),
    [ctx.base, key],
  );
  const funnel = useAsync(() => api.post("/v1/analytics/funnel", { ...range, steps: list(v.steps), window: v.window }), [ctx.base, key]);
  const apply = (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, x] of Object.entries(form)) {
      const unused = (k === "start" || k === "end") && form.period !== "custom";
      if (x !== undefined && x !== DEFAULTS[k] && !unused) q.set(k, x);
    }
    const qs = q.toString();
    navigate(ctx.url("analytics") + (qs ? `?${qs}` : ""));
  };
  const where = ctx.kind === "org" ? ctx.orgName || ctx.org : "your personal context";
  return html`<section class="analytics">
    <${PageHeader} title="Analytics" />
    <p class="muted">For ${where}, in your time zone (${timeZone()}).</p>
    <form class="inline analytics-controls" aria-label="What to show" onSubmit=${apply}>
      <${Field} label="Period" name="period" value=${form.period} onInput=${set("period")} options=${PERIODS.map(([value, label]) => ({ value, label }))} />
      ${form.period === "custom" && html`
        <${Field} label="From" name="start" type="date" value=${form.start || ""} onInput=${set("start")} />
        <${Field} label="To (included)" name="end" type="date" value=${form.end || ""} onInput=${set("end")} />`}
      <${Field} label="By" name="interval" value=${form.interval} onInput=${set("interval")} options=${INTERVALS.map(([value, label]) => ({ value, label }))} />
      <${Field} label="Events" name="events" value=${form.events} onInput=${set("events")} />
      <${Field} label="Break down by" name="breakdown" value=${form.breakdown} onInput=${set("breakdown")} />
      <${Field} label="Series" name="top" type="number" min="1" max="20" value=${form.top} onInput=${set("top")} />
      <${Field} label="Funnel steps" name="steps" value=${form.steps} onInput=${set("steps")} />
      <${Field} label="Within" name="window" value=${form.window} onInput=${set("window")} />
      <button type="submit">Update charts</button>
    </form>
    <${Summary} state=${summary} />
    <${Trend} state=${trend} />
    <${Funnel} state=${funnel} />
    ${ctx.kind === "org" && summary.data && html`<${Members} data=${summary.data} orgName=${ctx.orgName} />`}
  </section>`;
}
