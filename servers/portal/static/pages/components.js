// Components: what this context has installed, the registry to find more, install/uninstall
// (in an org: owner or admin) and the skill that teaches an agent each one.

import * as api from "../api.js";
import { html, useState, ConfirmButton, Empty, ErrorBox, Field, Loading, PageHeader, useAction, useAsync, when } from "../ui.js";
import { usePaged, MoreFooter } from "./paged.js";

export function ComponentsPage({ ctx }) {
  const installed = usePaged("/v1/installations");
  const [query, setQuery] = useState(null); // null: no search yet
  const where = ctx.org ? ctx.orgName || ctx.org : "your personal context";
  const canChange = !ctx.org || ctx.role === "owner" || ctx.role === "admin";
  return html`<section>
    <${PageHeader} title="Components" />
    <p>Components are what agents and people can do here: each brings MCP tools, REST routes and a skill.
      They are installed per context — this page is about <strong>${where}</strong>.</p>
    ${!canChange && html`<p class="notice">You are a ${ctx.role} of ${where}: you can see its components; its owner or an admin installs and uninstalls them.</p>`}
    <h2 id="installed-title">Installed here</h2>
    <${Installed} list=${installed} canChange=${canChange} />
    <p class="muted">Besides these, every context has the tenancy and registry tools built in.</p>
    <h2 id="registry-title">Find components</h2>
    <${Search} onSearch=${setQuery} />
    ${query !== null && html`<${Results} q=${query} onChanged=${installed.reload} />`}
  </section>`;
}

function Installed({ list, canChange }) {
  const { error, run } = useAction();
  const [failed, setFailed] = useState("");
  const uninstall = async (slug) => {
    setFailed(slug);
    await run(() => api.del(`/v1/installations/${slug}`));
    list.reload();
  };
  if (!list.loading && !list.error && list.items.length === 0) {
    return html`<${Empty} title="Nothing is installed here yet.">
      ${canChange
        ? "Search the registry below (try “bookings” or “messaging”) and install what you need."
        : "Ask an owner or admin of the org to install what you need; the registry below shows what exists."}<//>`;
  }
  return html`<div>
    ${list.items.length > 0 &&
    html`<ul class="components" aria-labelledby="installed-title">
      ${list.items.map(
        (i) => html`<li key=${i.component} class="component">
          <div class="component-head">
            <strong>${i.name}</strong> <code>${i.component}</code> <span class="badge">v${i.version}</span>
            <span class="muted">installed ${when(i.installed_at)}</span>
          </div>
          <div class="actions">
            <${SkillToggle} slug=${i.component} name=${i.name} />
            <${ConfirmButton} label=${`Uninstall ${i.name}`} confirmLabel=${`Yes, uninstall ${i.name}`}
              onConfirm=${() => uninstall(i.component)} />
          </div>
          ${failed === i.component && html`<${ErrorBox} error=${error} title=${`${i.name} was not uninstalled`} />`}
        </li>`,
      )}
    </ul>`}
    <${MoreFooter} list=${list} label="Load more installed components" />
  </div>`;
}

function Search({ onSearch }) {
  const [q, setQ] = useState("");
  const submit = (e) => {
    e.preventDefault();
    onSearch(q.trim());
  };
  return html`<form class="inline" role="search" aria-label="Search the registry" onSubmit=${submit}>
    <${Field} label="Search the registry" name="q" type="search" value=${q} onInput=${setQ}
      placeholder="e.g. book appointments" />
    <button type="submit">Search</button>
  </form>`;
}

function Results({ q, onChanged }) {
  const results = usePaged("/v1/registry", q ? { q } : {});
  const { error, run } = useAction();
  const [done, setDone] = useState("");
  const [failed, setFailed] = useState("");
  const install = async (c) => {
    setDone("");
    setFailed(c.slug);
    const out = await run(() => api.post("/v1/installations", { component: c.slug }));
    if (out) {
      setDone(`${c.name} is installed: its tools answer here from now on.`);
      results.reload();
      onChanged();
    }
  };
  if (!results.loading && !results.error && results.items.length === 0) {
    return html`<${Empty} title=${q ? `No component matches “${q}”.` : "The registry is empty."}>
      Try other words, or search with an empty box to see the whole catalogue.<//>`;
  }
  return html`<div>
    ${done && html`<p class="success" role="status">${done}</p>`}
    ${results.items.length > 0 &&
    html`<ul class="components" aria-labelledby="registry-title">
      ${results.items.map(
        (c) => html`<li key=${c.slug} class="component">
          <div class="component-head">
            <strong>${c.name}</strong> <code>${c.slug}</code> <span class="badge">v${c.version}</span>
            <span class="badge">${c.kind}</span> <span class="muted">${c.tools_count} tools</span>
            ${c.installed && html`<span class="badge installed">installed</span>`}
          </div>
          <p>${c.description}</p>
          <div class="actions">
            <${SkillToggle} slug=${c.slug} name=${c.name} />
            ${!c.installed && html`<button type="button" onClick=${() => install(c)}>Install ${c.name}</button>`}
          </div>
          ${failed === c.slug && html`<${ErrorBox} error=${error} title=${`${c.name} was not installed`} />`}
        </li>`,
      )}
    </ul>`}
    <${MoreFooter} list=${results} label="Load more components" />
  </div>`;
}

/** The component's SKILL.md, shown on demand. */
function SkillToggle({ slug, name }) {
  const [open, setOpen] = useState(false);
  return html`<div class="skill">
    <button type="button" class="secondary" aria-expanded=${open ? "true" : "false"} onClick=${() => setOpen(!open)}>
      ${open ? `Hide the skill of ${name}` : `Show the skill of ${name}`}
    </button>
    ${open && html`<${Skill} slug=${slug} name=${name} />`}
  </div>`;
}

function Skill({ slug, name }) {
  const skill = useAsync(() => api.get(`/v1/registry/${slug}/skill`), [slug]);
  if (skill.loading) return html`<${Loading} label="Loading the skill…" />`;
  if (skill.error) return html`<${ErrorBox} error=${skill.error} title="The skill could not be read" />`;
  return html`<div class="skill-text">
    <p class="muted">Drop this in <code>.claude/skills/${slug}/SKILL.md</code> (or run <code>atlilith add ${slug} --dir .claude/skills</code>).</p>
    <pre aria-label=${`Skill of ${name}`} tabindex="0">${skill.data}</pre>
  </div>`;
}
