// The home of a context: who you are acting as, and where to go next.

import * as api from "../api.js";
import { html, Empty, ErrorBox, Loading, PageHeader, useAsync } from "../ui.js";

export function Dashboard({ auth, me, ctx }) {
  const invitations = useAsync(() => api.get("/v1/me/invitations", { limit: 5 }), []);
  const orgs = useAsync(() => api.getAll("/v1/orgs"), []);
  const pending = invitations.data ? invitations.data.items.length : 0;
  const memberships = (me && me.memberships) || [];
  // Orgs whose owner offers them to this person: theirs to accept (or decline) in its settings.
  const offered = (orgs.data || []).filter((o) => o.ownership_offer && o.ownership_offer.person.id === auth.person.id);
  if (ctx.kind === "org") {
    return html`<section>
      <${PageHeader} title=${ctx.orgName || ctx.org} />
      <p>You are acting in <strong>${ctx.orgName}</strong> as <strong>${ctx.role}</strong>. Everything you do here belongs to the org.</p>
      <ul class="cards">
        <li><a href=${ctx.url("members")}>Members and roles</a></li>
        <li><a href=${ctx.url("invitations")}>Invitations</a></li>
        <li><a href=${ctx.url("brands")}>Brands</a></li>
        <li><a href=${ctx.url("settings")}>Org settings</a></li>
      </ul>
    </section>`;
  }
  return html`<section>
    <${PageHeader} title=${`Welcome, ${auth.person.display_name}`} />
    <p>You are acting <strong>personally</strong> (${auth.person.slug}). Switch to an org in the bar above.</p>
    ${invitations.loading && html`<${Loading} label="Looking for invitations…" />`}
    <${ErrorBox} error=${invitations.error} />
    ${pending > 0 && html`<p class="notice">You have ${pending} pending invitation${pending > 1 ? "s" : ""}. <a href="/invitations">Answer them</a></p>`}
    ${offered.map((o) => html`<p class="notice" key=${o.slug}>${o.owner.display_name} offers you ownership of <strong>${o.name}</strong>. <a href=${`/o/${o.slug}/settings`}>Answer in its settings</a></p>`)}
    <h2>Your orgs</h2>
    ${memberships.length === 0
      ? html`<${Empty} title="You are not in any org yet.">
          <a href="/me/orgs/new">Create an org</a> or wait for an invitation.
        <//>`
      : html`<ul class="cards">
          ${memberships.map((m) => html`<li key=${m.org.slug}><a href=${`/o/${m.org.slug}`}>${m.org.name}</a> <span class="muted">${m.role}</span></li>`)}
        </ul>`}
  </section>`;
}
