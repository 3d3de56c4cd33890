// Pages for links that lead nowhere: an unknown page, or an org the person has left.

import { html, ErrorBox, PageHeader } from "../ui.js";

export function NotFound() {
  return html`<section>
    <${PageHeader} title="Page not found" />
    <p>There is no such page here. <a href="/me">Go to your personal dashboard</a>.</p>
  </section>`;
}

/** The URL names an org the person cannot act in (removed, never a member, or gone). */
export function NotMember({ org, error }) {
  if (error && error.status !== 403 && error.status !== 404) {
    return html`<section>
      <${PageHeader} title="This org could not be opened" />
      <${ErrorBox} error=${error} />
      <p><a href="/me">Go to your personal dashboard</a></p>
    </section>`;
  }
  return html`<section>
    <${PageHeader} title="You are not a member of this org" />
    <p>You cannot act in <strong>${org}</strong>: you were removed from it, it was deleted, or you never joined it.</p>
    <p><a href="/me">Go to your personal dashboard</a> or <a href="/invitations">see your invitations</a>.</p>
  </section>`;
}
