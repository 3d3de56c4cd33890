// "My invitations": the orgs that asked you to join; accept or decline each.

import * as api from "../api.js";
import { html, useState, Empty, ErrorBox, Loading, PageHeader, useAction, useAsync, when } from "../ui.js";

function InvitationCard({ inv, onAnswered }) {
  const { busy, error, run } = useAction();
  const answer = (verb) =>
    run(async () => {
      await api.post(`/v1/invitations/${inv.id}/${verb}`);
      onAnswered(inv, verb);
    });
  return html`<li>
    <p><strong>${inv.org.name}</strong> invites you as <strong>${inv.role}</strong>${inv.invited_by && html` (from ${inv.invited_by.display_name})`}.</p>
    <p class="muted">Expires ${when(inv.expires_at)}</p>
    <div class="actions">
      <button type="button" disabled=${busy} onClick=${() => answer("accept")} aria-label=${`Accept the invitation to ${inv.org.name}`}>Accept</button>
      <button type="button" class="secondary" disabled=${busy} onClick=${() => answer("decline")} aria-label=${`Decline the invitation to ${inv.org.name}`}>Decline</button>
    </div>
    <${ErrorBox} error=${error} title="Could not answer" />
  </li>`;
}

export function MyInvitationsPage({ refreshMe }) {
  const list = useAsync(() => api.getAll("/v1/me/invitations"), []);
  const [answered, setAnswered] = useState(null);
  const onAnswered = async (inv, verb) => {
    setAnswered({ inv, verb });
    if (verb === "accept") await refreshMe();
    list.reload();
  };
  return html`<section>
    <${PageHeader} title="My invitations" />
    ${answered &&
    (answered.verb === "accept"
      ? html`<p class="success" role="status">You joined ${answered.inv.org.name}. <a href=${`/o/${answered.inv.org.slug}`}>Open ${answered.inv.org.name}</a></p>`
      : html`<p class="success" role="status">You declined the invitation to ${answered.inv.org.name}.</p>`)}
    ${list.loading && !list.data && html`<${Loading} label="Loading your invitations…" />`}
    <${ErrorBox} error=${list.error} />
    ${list.data && list.data.length === 0 &&
    html`<${Empty} title="No pending invitations.">
      Ask an org's owner or admin to invite your handle or email, or <a href="/me/orgs/new">create your own org</a>.
    <//>`}
    ${list.data && list.data.length > 0 &&
    html`<ul class="cards">${list.data.map((inv) => html`<${InvitationCard} key=${inv.id} inv=${inv} onAnswered=${onAnswered} />`)}</ul>`}
  </section>`;
}
