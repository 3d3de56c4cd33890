// Credits and jobs: the balance of this context, what running jobs hold, the ledger, the jobs
// with their status, cost and trace id — and one job in detail.

import * as api from "../api.js";
import { html, useState, ConfirmButton, Empty, ErrorBox, Field, Loading, PageHeader, useAction, useAsync, when } from "../ui.js";
import { usePaged, MoreFooter } from "./paged.js";

const STATUSES = ["", "queued", "running", "succeeded", "failed", "cancelled"];

export function CreditsPage({ ctx }) {
  const balance = useAsync(() => api.get("/v1/credits"), []);
  const where = ctx.org ? ctx.orgName || ctx.org : "your personal context";
  return html`<section>
    <${PageHeader} title="Credits and jobs" />
    <p>Jobs (an agent's or yours) hold their price in credits while they run and are charged when they finish. This is <strong>${where}</strong>.</p>
    <${Balance} balance=${balance} ctx=${ctx} />
    <h2 id="jobs-title">Jobs</h2>
    <${Jobs} ctx=${ctx} />
    <h2 id="ledger-title">Ledger</h2>
    <${Ledger} ctx=${ctx} />
  </section>`;
}

function Balance({ balance, ctx }) {
  if (balance.loading) return html`<${Loading} label="Reading the balance…" />`;
  if (balance.error) return html`<${ErrorBox} error=${balance.error} title="The balance could not be read" />`;
  const b = balance.data;
  return html`<div>
    <dl class="stats" aria-label="Balance">
      <div><dt>Balance</dt><dd data-testid="balance">${b.balance}</dd></div>
      <div><dt>Available</dt><dd>${b.available}</dd></div>
      <div><dt>Held by running jobs</dt><dd data-testid="held">${b.held}</dd></div>
      <div><dt>Low-balance alert below</dt><dd>${b.low_balance_threshold}</dd></div>
    </dl>
    ${b.balance === 0 && html`<p class="notice">No credits yet. Credits come from a purchase or a grant by the platform operator; free tools work without them.</p>`}
    <h3>Open holds (${b.open_holds_count})</h3>
    ${b.open_holds.length === 0
      ? html`<p class="muted">Nothing is held: no job is running.</p>`
      : html`<table aria-label="Open holds">
          <thead><tr><th scope="col">Job</th><th scope="col">Action</th><th scope="col">Credits</th><th scope="col">Expires</th></tr></thead>
          <tbody>${b.open_holds.map(
            (h) => html`<tr key=${h.job_id}><td><a href=${ctx.url(`jobs/${h.job_id}`)}>${shortId(h.job_id)}</a></td>
              <td><code>${h.component}/${h.action}</code></td><td>${h.credits}</td><td>${when(h.expires_at)}</td></tr>`,
          )}</tbody>
        </table>`}
  </div>`;
}

function Jobs({ ctx }) {
  const [status, setStatus] = useState("");
  const jobs = usePaged("/v1/jobs", status ? { status } : {});
  const options = STATUSES.map((s) => ({ value: s, label: s || "any status" }));
  return html`<div>
    <form class="inline" aria-label="Filter jobs" onSubmit=${(e) => e.preventDefault()}>
      <${Field} label="Status" name="status" value=${status} onInput=${setStatus} options=${options} />
    </form>
    ${!jobs.loading && !jobs.error && jobs.items.length === 0
      ? html`<${Empty} title=${status ? `No ${status} job.` : "No job has run here yet."}>
          Jobs appear when an agent or you run a paid action (e.g. <code>identity</code>'s resolve-person), through MCP, <code>POST /v1/run/…</code> or the CLI.<//>`
      : html`<table aria-labelledby="jobs-title">
          <thead><tr><th scope="col">Job</th><th scope="col">Action</th><th scope="col">Status</th><th scope="col">Cost</th>
            <th scope="col">Trace id</th><th scope="col">Created</th></tr></thead>
          <tbody>${jobs.items.map(
            (j) => html`<tr key=${j.id}>
              <td><a href=${ctx.url(`jobs/${j.id}`)} aria-label=${`Job ${j.component}/${j.action} of ${when(j.created_at)}`}>${shortId(j.id)}</a></td>
              <td><code>${j.component}/${j.action}</code></td>
              <td><span class=${`badge status-${j.status}`}>${j.status}</span></td>
              <td>${cost(j)}</td>
              <td><code>${j.trace_id}</code></td>
              <td>${when(j.created_at)}</td>
            </tr>`,
          )}</tbody>
        </table>`}
    <${MoreFooter} list=${jobs} label="Load more jobs" />
  </div>`;
}

function Ledger({ ctx }) {
  const ledger = usePaged("/v1/credits/ledger");
  if (!ledger.loading && !ledger.error && ledger.items.length === 0) {
    return html`<${Empty} title="The ledger is empty.">Every grant, purchase, hold and charge of this context will be listed here.<//>`;
  }
  return html`<div>
    <${LedgerTable} items=${ledger.items} ctx=${ctx} label="Ledger" />
    <${MoreFooter} list=${ledger} label="Load more ledger entries" />
  </div>`;
}

function LedgerTable({ items, ctx, label }) {
  if (items.length === 0) return null;
  return html`<table aria-label=${label}>
    <thead><tr><th scope="col">When</th><th scope="col">Kind</th><th scope="col">Amount</th><th scope="col">Balance after</th>
      <th scope="col">Held after</th><th scope="col">Job</th><th scope="col">Memo</th></tr></thead>
    <tbody>${items.map(
      (e) => html`<tr key=${e.id}>
        <td>${when(e.created_at)}</td><td>${e.kind}</td><td>${e.amount}</td><td>${e.balance_after}</td><td>${e.held_after}</td>
        <td>${e.job_id ? html`<a href=${ctx.url(`jobs/${e.job_id}`)}>${shortId(e.job_id)}</a>` : "—"}</td>
        <td>${e.memo || ""}</td>
      </tr>`,
    )}</tbody>
  </table>`;
}

export function JobPage({ ctx, params }) {
  const job = useAsync(() => api.get(`/v1/jobs/${params.id}`), [params.id]);
  const entries = useAsync(() => api.get("/v1/credits/ledger", { job_id: params.id, limit: 100 }), [params.id]);
  const { error, run } = useAction();
  const cancel = () => run(() => api.post(`/v1/jobs/${params.id}/cancel`)).then(job.reload);
  const back = html`<p><a href=${ctx.url("credits")}>← Credits and jobs</a></p>`;
  if (job.loading && !job.data) return html`<section>${back}<${Loading} label="Loading the job…" /></section>`;
  if (job.error) {
    return html`<section>${back}<${PageHeader} title="Job not found" />
      <${ErrorBox} error=${job.error} />
      <p>Jobs belong to the context they ran in: switch to it to see this one.</p></section>`;
  }
  const j = job.data;
  return html`<section>
    ${back}
    <${PageHeader} title=${`Job ${j.component}/${j.action}`}>
      ${(j.status === "queued" || j.status === "running") &&
      html`<${ConfirmButton} label="Cancel this job" confirmLabel="Yes, cancel it" onConfirm=${cancel} />`}
    <//>
    <${ErrorBox} error=${error} title="The job was not cancelled" />
    <dl class="details">
      <dt>Status</dt><dd><span class=${`badge status-${j.status}`}>${j.status}</span></dd>
      <dt>Job id</dt><dd><code>${j.id}</code></dd>
      <dt>Trace id</dt><dd><code>${j.trace_id}</code> <span class="muted">(search the logs for it)</span></dd>
      <dt>Runs on</dt><dd>${j.executor === "peer" ? "a peer service" : "the platform"}</dd>
      <dt>Cost</dt><dd>${cost(j)} <span class="muted">(quoted ${j.credits_quoted}, held ${j.credits_held}, hold ${j.hold_status})</span></dd>
      <dt>Created</dt><dd>${when(j.created_at)}</dd>
      <dt>Started</dt><dd>${when(j.started_at)}</dd>
      <dt>Finished</dt><dd>${when(j.finished_at)}</dd>
      <dt>Deadline</dt><dd>${when(j.deadline_at)}</dd>
    </dl>
    ${j.error &&
    html`<div class="error-box" role="note"><p><strong>The job failed: ${j.error.message || j.error.code}</strong></p>
      ${j.error.hint && html`<p class="error-hint">What to do: ${j.error.hint}</p>`}</div>`}
    <h2>Input</h2>
    <pre tabindex="0" aria-label="Input">${JSON.stringify(j.input, null, 2)}</pre>
    <h2>Output</h2>
    ${j.output
      ? html`${j.executor === "peer" && html`<p class="muted">From a peer service: third-party data.</p>`}
        <pre tabindex="0" aria-label="Output">${JSON.stringify(j.output, null, 2)}</pre>`
      : html`<p class="muted">No output${j.status === "queued" || j.status === "running" ? " yet" : ""}.</p>`}
    ${j.usage && html`<h2>Usage</h2><pre tabindex="0" aria-label="Usage">${JSON.stringify(j.usage, null, 2)}</pre>`}
    <h2>Ledger entries of this job</h2>
    ${entries.loading && html`<${Loading} />`}
    <${ErrorBox} error=${entries.error} />
    ${entries.data && (entries.data.items.length === 0 ? html`<p class="muted">None.</p>` : html`<${LedgerTable} items=${entries.data.items} ctx=${ctx} label="Ledger entries of this job" />`)}
  </section>`;
}

function cost(j) {
  if (j.hold_status === "open") return `${credits(j.credits_held)} held`;
  if (j.hold_status === "released" && !j.credits_captured) return "nothing (hold released)";
  return credits(j.credits_captured);
}

function credits(n) {
  return `${n} credit${n === 1 ? "" : "s"}`;
}

function shortId(id) {
  return String(id).slice(0, 8);
}
