// Brands of the current context (personal or org): each is a site configuration, never a fork.

import * as api from "../api.js";
import { html, useState, Empty, ErrorBox, Field, Loading, PageHeader, useAsync } from "../ui.js";
import { ChangedMeanwhile, FreshRead, useVersioned } from "./versioned.js";

function parseDomains(text) {
  return text.split(/[\s,]+/).map((d) => d.trim()).filter(Boolean);
}

function parseConfig(text) {
  if (!text.trim()) return {};
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new api.ApiError({ status: 0, code: "invalid_json", title: "The configuration is not valid JSON", detail: String(err.message), hint: "fix the JSON, e.g. {\"tagline\": \"…\"}", fields: [{ field: "config", message: "not valid JSON" }] });
  }
}

const toForm = (brand) => ({
  name: brand ? brand.name : "",
  slug: brand ? brand.slug : "",
  domains: brand ? brand.domains.join(", ") : "",
  config: brand ? JSON.stringify(brand.config, null, 2) : "{}",
});

/** `version`: {data, etag} of the brand as read when the form opened; none for a new one. */
function BrandForm({ version, onSaved, onCancel }) {
  const brand = version ? version.data : null;
  const path = brand ? `/v1/brands/${brand.id}` : "/v1/brands";
  const edit = useVersioned(version, path, toForm);
  const { form, setForm, busy, error } = edit;
  const set = (k) => (v) => setForm({ ...form, [k]: v });
  const submit = async (e) => {
    e.preventDefault();
    const saved = await edit.save((opts) => {
      const body = { name: form.name.trim(), domains: parseDomains(form.domains), config: parseConfig(form.config) };
      return brand ? api.patch(path, body, opts) : api.post(path, { ...body, slug: form.slug.trim() }, opts);
    });
    if (saved) onSaved(saved);
  };
  const label = brand ? `Edit ${brand.name}` : "New brand";
  return html`<form onSubmit=${submit} aria-label=${label} novalidate>
    <${ErrorBox} error=${error} title=${brand ? "Could not save the brand" : "Could not create the brand"} />
    <${ChangedMeanwhile} edit=${edit} what="brand" />
    <${Field} label="Brand name" name="name" value=${form.name} onInput=${set("name")} error=${error} required />
    ${!brand && html`<${Field} label="Brand handle" name="slug" value=${form.slug} onInput=${set("slug")} error=${error} required hint="3–40 lowercase letters, digits and hyphens." />`}
    <${Field} label="Domains" name="domains" value=${form.domains} onInput=${set("domains")} error=${error} hint="Separated by commas, e.g. cocotte.maison, www.cocotte.maison" />
    <${Field} label="Site configuration (JSON)" name="config" type="textarea" value=${form.config} onInput=${set("config")} error=${error} />
    <div class="actions">
      <button type="submit" disabled=${busy}>${brand ? "Save brand" : "Create brand"}</button>
      ${onCancel && html`<button type="button" class="secondary" onClick=${onCancel}>Cancel</button>`}
    </div>
  </form>`;
}

export function BrandsPage({ ctx }) {
  const list = useAsync(() => api.getAll("/v1/brands"), [ctx.base]);
  const [editing, setEditing] = useState(null); // a brand id, "new" or null
  const [saved, setSaved] = useState("");
  const done = (brand) => {
    setEditing(null);
    setSaved(`Saved ${brand.name}.`);
    list.reload();
  };
  const where = ctx.kind === "org" ? ctx.orgName : "your personal context";
  const canChange = ctx.kind !== "org" || ctx.role === "owner" || ctx.role === "admin";
  return html`<section>
    <${PageHeader} title="Brands">
      ${canChange && editing !== "new" && html`<button type="button" onClick=${() => { setSaved(""); setEditing("new"); }}>New brand</button>`}
    <//>
    <p class="muted">Brand sites of ${where}: a name, the domains that serve it and its site configuration.</p>
    ${!canChange && html`<p class="notice">You are a ${ctx.role} of ${where}: you can see its brands; its owner or an admin creates and changes them.</p>`}
    ${saved && html`<p class="success" role="status">${saved}</p>`}
    ${editing === "new" && html`<h2>New brand</h2><${BrandForm} onSaved=${done} onCancel=${() => setEditing(null)} />`}
    ${list.loading && !list.data && html`<${Loading} label="Loading brands…" />`}
    <${ErrorBox} error=${list.error} />
    ${list.data && list.data.length === 0 && editing !== "new" &&
    html`<${Empty} title="No brands yet.">
      ${canChange && html`<button type="button" onClick=${() => setEditing("new")}>Create the first brand</button>`}
    <//>`}
    ${list.data && list.data.length > 0 &&
    html`<table>
      <thead><tr><th scope="col">Brand</th><th scope="col">Domains</th>${canChange && html`<th scope="col">Actions</th>`}</tr></thead>
      <tbody>
        ${list.data.map((b) =>
          editing === b.id
            ? html`<tr key=${b.id}><td colspan="3"><h2>Edit ${b.name}</h2>
                <${FreshRead} path=${`/v1/brands/${b.id}`} label=${`Opening ${b.name}…`}
                  form=${(version) => html`<${BrandForm} version=${version} onSaved=${done} onCancel=${() => setEditing(null)} />`} /></td></tr>`
            : html`<tr key=${b.id}>
                <td><strong>${b.name}</strong> <span class="muted mono">${b.slug}</span></td>
                <td>${b.domains.length ? b.domains.join(", ") : html`<span class="muted">none</span>`}</td>
                ${canChange && html`<td><button type="button" class="secondary" aria-label=${`Edit ${b.name}`} onClick=${() => { setSaved(""); setEditing(b.id); }}>Edit</button></td>`}
              </tr>`,
        )}
      </tbody>
    </table>`}
  </section>`;
}
