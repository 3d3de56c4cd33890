// Running an org: the roster and roles, invitations, settings and ownership, and a new org.
// The rules are the API's: the page offers what your role may try and shows each refusal
// (message + hint) next to the control that caused it.

import * as api from "../api.js";
import { html, useState, ConfirmButton, Empty, ErrorBox, Field, Loading, PageHeader, useAction, useAsync, when } from "../ui.js";

const ROLE_OPTIONS = [
  { value: "member", label: "Member" },
  { value: "admin", label: "Admin" },
];

const manages = (ctx) => ctx.role === "owner" || ctx.role === "admin";

function MemberRow({ member, ctx, auth, onChanged, navigate, refreshMe }) {
  const { busy, error, run } = useAction();
  const [done, setDone] = useState("");
  const [role, setRoleShown] = useState(member.role); // what the select shows, back on a refusal
  const p = member.person;
  const self = p.id === auth.person.id;
  const name = p.display_name;
  const setRole = async (next) => {
    setRoleShown(next);
    const changed = await run(() => api.patch(`/v1/orgs/${ctx.org}/members/${p.slug}`, { role: next }));
    if (changed) setDone(`${name} is now ${changed.role}.`);
    else setRoleShown(member.role);
  };
  const remove = () =>
    run(async () => {
      await api.del(`/v1/orgs/${ctx.org}/members/${p.slug}`);
      if (self) {
        await refreshMe();
        navigate("/me");
      } else onChanged();
    });
  return html`<tr>
    <td><strong>${name}</strong> <span class="muted mono">${p.slug}</span>${self && html` <span class="badge">you</span>`}</td>
    <td>
      ${member.role === "owner" || !manages(ctx)
        ? html`<span class="badge">${member.role}</span>`
        : html`<label class="visually-hidden" for=${`role-${p.slug}`}>Role of ${name}</label>
            <select id=${`role-${p.slug}`} value=${role} disabled=${busy} onChange=${(e) => setRole(e.target.value)}>
              ${ROLE_OPTIONS.map((o) => html`<option key=${o.value} value=${o.value}>${o.label}</option>`)}
            </select>`}
    </td>
    <td>${when(member.joined_at)}</td>
    <td>
      <div class="actions">
        ${member.role === "owner"
          ? html`<span class="muted">${self ? "Transfer ownership to leave" : "The owner stays"}</span>`
          : (manages(ctx) || self) &&
            html`<${ConfirmButton} label=${self ? "Leave" : "Remove"} ariaLabel=${self ? "Leave this org" : `Remove ${name}`} onConfirm=${remove} />`}
      </div>
      <${ErrorBox} error=${error} title=${`Could not change ${name}`} />
      ${done && !error && html`<p class="success" role="status">${done}</p>`}
    </td>
  </tr>`;
}

// People join an org only by accepting an invitation: the roster offers to invite, never to add.
function InviteForm({ ctx, onSent }) {
  const [invitee, setInvitee] = useState("");
  const [role, setRole] = useState("member");
  const [sent, setSent] = useState(null);
  const { busy, error, run } = useAction();
  const submit = async (e) => {
    e.preventDefault();
    const value = invitee.trim();
    const body = value.includes("@") ? { email: value, role } : { person: value, role };
    const inv = await run(() => api.post(`/v1/orgs/${ctx.org}/invitations`, body));
    if (inv) {
      setSent(inv);
      setInvitee("");
      onSent();
    }
  };
  return html`<form class="inline" onSubmit=${submit} aria-label="Send an invitation">
      <${Field} label="Email or handle to invite" name="invitee" value=${invitee} onInput=${setInvitee} required
        hint="They join when they accept, from “My invitations” once signed in (an email works before they sign up)." />
      <${Field} label="Role" name="role" value=${role} onInput=${setRole} options=${ROLE_OPTIONS} />
      <button type="submit" disabled=${busy}>Send invitation</button>
    </form>
    <${ErrorBox} error=${error} title="Could not send the invitation" />
    ${sent && !error && html`<p class="success" role="status">Invitation sent to ${sent.email || (sent.invitee && sent.invitee.slug)}.</p>`}`;
}

export function MembersPage(props) {
  const { ctx } = props;
  const members = useAsync(() => api.getAll(`/v1/orgs/${ctx.org}/members`), [ctx.org]);
  return html`<section>
    <${PageHeader} title="Members" />
    <p class="muted">Owners and admins invite, re-role and remove members; people join by accepting an invitation. The owner cannot be removed — transfer ownership first (Settings).</p>
    ${members.loading && !members.data && html`<${Loading} label="Loading the roster…" />`}
    <${ErrorBox} error=${members.error} />
    ${members.data &&
    html`<table>
      <caption class="visually-hidden">Members of ${ctx.orgName}</caption>
      <thead><tr><th scope="col">Person</th><th scope="col">Role</th><th scope="col">Joined</th><th scope="col">Actions</th></tr></thead>
      <tbody>
        ${members.data.map((m) => html`<${MemberRow} key=${m.person.id} member=${m} onChanged=${members.reload} ...${props} />`)}
      </tbody>
    </table>`}
    ${members.data && members.data.length === 1 && html`<${Empty} title="You are the only member.">
      Invite someone by handle or email below; they join when they accept. <a href=${ctx.url("invitations")}>Sent invitations</a> shows who has not answered yet.
    <//>`}
    ${manages(ctx) && html`<h2>Invite a member</h2><${InviteForm} ctx=${ctx} onSent=${() => {}} />`}
  </section>`;
}

function InvitationRow({ inv, ctx, onChanged }) {
  const { error, run } = useAction();
  const who = inv.invitee ? `${inv.invitee.display_name} (${inv.invitee.slug})` : inv.email;
  return html`<tr>
    <td>${who}</td>
    <td>${inv.role}</td>
    <td><span class="badge">${inv.status}</span></td>
    <td>${when(inv.expires_at)}</td>
    <td>
      ${inv.status === "pending" && manages(ctx) &&
      html`<${ConfirmButton} label="Revoke" ariaLabel=${`Revoke the invitation of ${who}`}
        onConfirm=${() => run(async () => {
          await api.del(`/v1/orgs/${ctx.org}/invitations/${inv.id}`);
          onChanged();
        })} />`}
      <${ErrorBox} error=${error} title="Could not revoke" />
    </td>
  </tr>`;
}

export function OrgInvitationsPage({ ctx }) {
  // The org's invitations are the owner's and admins' to read: a member is told so, and the
  // page asks for nothing that would only be refused.
  if (!manages(ctx)) {
    return html`<section>
      <${PageHeader} title="Invitations" />
      <p class="notice">You are a ${ctx.role} of ${ctx.orgName}: its owner and admins send invitations and see who was invited. Invitations to you are under <a href="/invitations">My invitations</a>.</p>
    </section>`;
  }
  return html`<${SentInvitations} ctx=${ctx} />`;
}

function SentInvitations({ ctx }) {
  const [status, setStatus] = useState("pending");
  const list = useAsync(() => api.getAll(`/v1/orgs/${ctx.org}/invitations`, { status: status === "all" ? "" : status }), [ctx.org, status]);
  return html`<section>
    <${PageHeader} title="Invitations" />
    <${InviteForm} ctx=${ctx} onSent=${list.reload} />
    <h2>Sent invitations</h2>
    <${Field} label="Show" name="status" value=${status} onInput=${setStatus}
      options=${["pending", "accepted", "declined", "revoked", "expired", "all"].map((s) => ({ value: s, label: s[0].toUpperCase() + s.slice(1) }))} />
    ${list.loading && !list.data && html`<${Loading} label="Loading invitations…" />`}
    <${ErrorBox} error=${list.error} />
    ${list.data && list.data.length === 0 && html`<${Empty} title=${`No ${status === "all" ? "" : status + " "}invitations.`}>Invite someone with the form above.<//>`}
    ${list.data && list.data.length > 0 &&
    html`<table>
      <thead><tr><th scope="col">Invitee</th><th scope="col">Role</th><th scope="col">Status</th><th scope="col">Expires</th><th scope="col">Actions</th></tr></thead>
      <tbody>${list.data.map((inv) => html`<${InvitationRow} key=${inv.id} inv=${inv} ctx=${ctx} onChanged=${list.reload} />`)}</tbody>
    </table>`}
  </section>`;
}

export function OrgSettingsPage({ ctx, me, refreshMe, navigate }) {
  const org = useAsync(() => api.get(`/v1/orgs/${ctx.org}`), [ctx.org]);
  // Only the owner hands the org on: nobody else needs the roster here.
  const members = useAsync(() => (ctx.role === "owner" ? api.getAll(`/v1/orgs/${ctx.org}/members`) : Promise.resolve([])), [ctx.org]);
  const [name, setName] = useState(null);
  const [heir, setHeir] = useState("");
  const rename = useAction();
  const transfer = useAction();
  const [saved, setSaved] = useState("");
  if (org.loading) return html`<${Loading} />`;
  if (org.error) return html`<${ErrorBox} error=${org.error} />`;
  const o = org.data;
  const others = (members.data || []).filter((m) => m.role !== "owner");
  const save = async (e) => {
    e.preventDefault();
    if (await rename.run(() => api.patch(`/v1/orgs/${ctx.org}`, { name: (name ?? o.name).trim() }))) {
      setSaved("Saved.");
      await refreshMe();
      org.reload();
    }
  };
  const offer = o.ownership_offer;
  const offeredToMe = offer && me && offer.person.id === me.person.id;
  const offerIt = () =>
    transfer.run(async () => {
      await api.post(`/v1/orgs/${ctx.org}/transfer`, { person: heir || (others[0] && others[0].person.slug) });
      org.reload();
    });
  const endOffer = () =>
    transfer.run(async () => {
      await api.del(`/v1/orgs/${ctx.org}/transfer`);
      org.reload();
    });
  const takeIt = () =>
    transfer.run(async () => {
      await api.post(`/v1/orgs/${ctx.org}/transfer/accept`, {});
      await refreshMe();
      await api.switchTo(ctx.org); // the token carries the role: take the new one
      navigate(ctx.url("members"));
    });
  const ownership = () => {
    if (offeredToMe) {
      return html`<div class="field-group">
        <p class="notice" role="status">${o.owner.display_name} offers you ownership of this org. As owner you get every right, and cannot leave it until you hand it on; ${o.owner.display_name} becomes an admin.</p>
        <${ConfirmButton} label="Accept ownership" danger=${false} onConfirm=${takeIt} />
        <button type="button" class="secondary" onClick=${endOffer} disabled=${transfer.busy}>Decline</button>
      </div>`;
    }
    if (o.role !== "owner") {
      return html`<p class="notice">Only the owner, ${o.owner.display_name}, can offer the org to someone else.</p>`;
    }
    if (offer) {
      return html`<div class="field-group">
        <p class="notice" role="status">Ownership is offered to <strong>${offer.person.display_name}</strong> (${offer.person.slug}) since ${new Date(offer.offered_at).toLocaleString()}. The org is theirs when they accept it; you then become an admin.</p>
        <button type="button" class="secondary" onClick=${endOffer} disabled=${transfer.busy}>Withdraw the offer</button>
      </div>`;
    }
    if (others.length === 0) {
      return html`<${Empty} title="There is nobody to hand the org to yet."><a href=${ctx.url("members")}>Invite a member first</a>; they can own it once they have joined.<//>`;
    }
    return html`<div class="field-group">
      <p>The member you choose becomes the owner when they accept; you then become an admin.</p>
      <${Field} label="New owner" name="heir" value=${heir || others[0].person.slug} onInput=${setHeir}
        options=${others.map((m) => ({ value: m.person.slug, label: `${m.person.display_name} (${m.person.slug}, ${m.role})` }))} />
      <${ConfirmButton} label="Offer ownership" onConfirm=${offerIt} />
    </div>`;
  };
  return html`<section>
    <${PageHeader} title="Org settings" />
    <p>Owner: <strong>${o.owner.display_name}</strong> <span class="muted mono">${o.owner.slug}</span> · your role: <span class="badge">${o.role}</span></p>
    <h2>Name</h2>
    ${manages(ctx)
      ? html`<form onSubmit=${save} aria-label="Rename the org">
          <${Field} label="Org name" name="name" value=${name ?? o.name} onInput=${setName} error=${rename.error} required />
          <${ErrorBox} error=${rename.error} title="Could not rename" />
          ${saved && !rename.error && html`<p class="success" role="status">${saved}</p>`}
          <div><button type="submit" disabled=${rename.busy}>Save name</button></div>
        </form>`
      : html`<p><strong>${o.name}</strong></p>
        <p class="notice">You are a ${o.role} of ${o.name}: its owner or an admin renames it.</p>`}
    <h2>Transfer ownership</h2>
    ${ownership()}
    <${ErrorBox} error=${transfer.error} title="Could not change the ownership offer" />
  </section>`;
}

function suggestSlug(name) {
  return name.toLowerCase().normalize("NFKD").replace(/[\u0300-\u036f]/g, "").replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 40);
}

export function NewOrgPage({ refreshMe, navigate }) {
  const [name, setName] = useState("");
  const [slug, setSlug] = useState(null);
  const { busy, error, run } = useAction();
  const finalSlug = slug ?? suggestSlug(name);
  const submit = async (e) => {
    e.preventDefault();
    const org = await run(() => api.post("/v1/orgs", { name: name.trim(), slug: finalSlug }));
    if (org) {
      await refreshMe();
      navigate(`/o/${org.slug}`);
    }
  };
  return html`<section>
    <${PageHeader} title="Create an org" />
    <p class="muted">You will own it. Invite people afterwards; your personal data stays yours.</p>
    <form onSubmit=${submit} novalidate>
      <${ErrorBox} error=${error} title="Could not create the org" />
      <${Field} label="Org name" name="name" value=${name} onInput=${setName} error=${error} required />
      <${Field} label="Org handle" name="slug" value=${finalSlug} onInput=${setSlug} error=${error} required
        hint="Appears in links: /o/<handle>. 3–40 lowercase letters, digits and hyphens." />
      <div><button type="submit" disabled=${busy}>Create org</button></div>
    </form>
  </section>`;
}
