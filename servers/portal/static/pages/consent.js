// The OAuth consent page: an MCP host (Claude Code, an IDE, ...) asks to act for the signed-in
// person. It names the client and what it may do, lets the person choose the context it acts
// in (personal or one of their orgs), and sends the browser back to the client with the answer.

import * as api from "../api.js";
import { html, useState, ErrorBox, Loading, Empty, PageHeader, useAsync, useAction } from "../ui.js";

// Characters that reorder the text around them; the API refuses them in a client's name, and
// the page isolates the name (<bdi>) besides, so a name can never rewrite the page around it.
const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

export function Consent({ auth, me, query }) {
  const id = query.request || "";
  const request = useAsync(() => (id ? api.get(`/v1/oauth/requests/${encodeURIComponent(id)}`) : Promise.resolve(null)), [id]);
  const [choice, setChoice] = useState("personal");
  const action = useAction();
  const [leaving, setLeaving] = useState(false);

  if (!id) {
    return html`<section>
      <${PageHeader} title="Connect an app" />
      <${Empty} title="This link does not name a request.">Start again from your MCP host: it opens this page for you.<//>
    </section>`;
  }
  if (request.loading) return html`<${Loading} label="Reading the request…" />`;
  if (request.error) {
    return html`<section>
      <${PageHeader} title="Connect an app" />
      <${ErrorBox} error=${request.error} title="This request cannot be answered" />
    </section>`;
  }
  const r = request.data;
  const memberships = (me && me.memberships) || [];
  const decide = (verb) =>
    action.run(async () => {
      const body = verb === "approve" ? { org: choice === "personal" ? null : choice } : undefined;
      const answer = await api.post(`/v1/oauth/requests/${encodeURIComponent(id)}/${verb}`, body);
      setLeaving(true);
      window.location.assign(answer.redirect_to);
    });
  const submit = (e) => {
    e.preventDefault();
    decide("approve");
  };

  return html`<section class="consent">
    <${PageHeader} title=${`Connect ${r.client.name.replace(BIDI, "")}?`} />
    <p>
      <strong><bdi>${r.client.name}</bdi></strong> wants to use Atlilith's MCP tools as
      <strong> ${auth.person.display_name}</strong> (${auth.person.slug}).
      After you answer, your browser goes back to <strong class="mono">${r.redirect_host}</strong>.
    </p>
    <p class="muted">The name is the app's own; make sure you started this from an app you trust.
      ${r.client.client_uri && html` Its site: <span class="mono">${r.client.client_uri}</span>.`}</p>
    <h2>It will be able to</h2>
    <ul>
      ${r.scopes.map((s) => html`<li key=${s.name}>${s.description} <span class="muted mono">(${s.name})</span></li>`)}
    </ul>
    <p class="muted">Access is to <span class="mono">${r.resource}</span>. You can disconnect it at any time from your Agents page.</p>
    <form onSubmit=${submit}>
      <fieldset>
        <legend>Act in which context?</legend>
        <p class="field-hint">Its calls act here by default; it can still name another org you belong to, and loses access to an org the moment you leave it.</p>
        <div class="choice">
          <input type="radio" id="ctx-personal" name="context" value="personal"
            checked=${choice === "personal"} onChange=${() => setChoice("personal")} />
          <label for="ctx-personal">Personal (${auth.person.slug})</label>
        </div>
        ${memberships.map(
          (m) => html`<div class="choice" key=${m.org.slug}>
            <input type="radio" id=${`ctx-${m.org.slug}`} name="context" value=${m.org.slug}
              checked=${choice === m.org.slug} onChange=${() => setChoice(m.org.slug)} />
            <label for=${`ctx-${m.org.slug}`}>${m.org.name} <span class="muted">(${m.role})</span></label>
          </div>`,
        )}
      </fieldset>
      <${ErrorBox} error=${action.error} />
      <div class="actions">
        <button type="submit" disabled=${action.busy || leaving}>Approve</button>
        <button type="button" class="secondary" disabled=${action.busy || leaving} onClick=${() => decide("deny")}>Deny</button>
      </div>
      ${leaving && html`<${Loading} label="Returning to the app…" />`}
    </form>
  </section>`;
}
