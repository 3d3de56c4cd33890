// Agents: connect one (copy-ready `claude mcp add` lines), API keys (created, shown once,
// revoked) and the OAuth apps connected through the browser.

import * as api from "../api.js";
import { html, useEffect, useRef, useState, ConfirmButton, CopyButton, Empty, ErrorBox, Field, Loading, PageHeader, useAction, useAsync, when } from "../ui.js";
import { usePaged, MoreFooter } from "./paged.js";

const PLACEHOLDER = "atl_…";

export function AgentsPage({ me, ctx }) {
  const meta = useAsync(() => api.get("/v1/meta"), []);
  const keys = usePaged("/v1/api-keys");
  const apps = usePaged("/v1/oauth/connections");
  // A server without the OAuth endpoints cannot sign an MCP host in through the browser.
  const oauth = !apps.loading && !(apps.error && apps.error.status === 404);
  const [created, setCreated] = useState(null); // the one response that carries the key itself
  return html`<section>
    <${PageHeader} title="Agents" />
    <p>Give an AI agent (Claude Code, Claude Desktop, any MCP host) its own credential: an API key for scripts and <code>claude mcp add</code>, or a browser sign-in that appears under <a href="#connected-apps">Connected apps</a>. Revoke either here; it stops working on its next call.</p>
    ${created && html`<${NewKey} created=${created} onDone=${() => setCreated(null)} />`}
    <${Connect} meta=${meta} ctx=${ctx} token=${created ? created.token : null} oauth=${oauth} />
    <h2 id="api-keys">API keys</h2>
    <${CreateKey} me=${me} ctx=${ctx} meta=${meta}
      onCreated=${(key) => {
        setCreated(key);
        keys.reload();
      }} />
    <${KeyList} keys=${keys} />
    <${ConnectedApps} apps=${apps} />
  </section>`;
}

/** The key, once: the API will never show it again. */
function NewKey({ created, onDone }) {
  // It appears above the form that made it: take the focus (and the eye) there.
  const box = useRef(null);
  useEffect(() => box.current && box.current.focus(), [created.id]);
  return html`<div class="key-once success" role="region" aria-label="Your new API key" tabindex="-1" ref=${box}>
    <h2>Your new key “${created.name}”</h2>
    <p><strong>Copy it now: it is shown only once.</strong> Store it where your agent reads its secrets.</p>
    <p class="key-line"><code class="mono" data-testid="new-key">${created.token}</code>
      <${CopyButton} text=${created.token} label="Copy the API key" /></p>
    <p>The commands below already contain it.</p>
    <button type="button" class="secondary" onClick=${onDone}>I have stored it, hide the key</button>
  </div>`;
}

function Command({ label, note, copyLabel, text }) {
  return html`<div class="command">
    <p class="command-label">${label} ${note && html`<span class="muted">${note}</span>`}</p>
    <div class="command-line"><pre><code>${text}</code></pre>
      <${CopyButton} text=${text} label=${copyLabel} /></div>
  </div>`;
}

function Connect({ meta, ctx, token, oauth }) {
  const key = token || PLACEHOLDER;
  const name = ctx.org ? `atlilith-${ctx.org}` : "atlilith";
  return html`<section aria-labelledby="connect-title">
    <h2 id="connect-title">Connect an agent</h2>
    ${meta.loading && html`<${Loading} label="Looking up this server's address…" />`}
    <${ErrorBox} error=${meta.error} title="The server's address could not be read" />
    ${meta.data &&
    html`${oauth &&
      html`<${Command} label="Claude Code over HTTP, signing in with your browser"
          note="(no key: the host opens this portal, you choose where it acts and approve)"
          copyLabel="Copy the sign-in command" text=${`claude mcp add --transport http ${name} ${meta.data.mcp_url}`} />`}
      <p>${token ? "With your new key:" : html`With an API key: create one below, then run one of these (replace <code>${PLACEHOLDER}</code> by the key):`}</p>
      <${Command} label="Claude Code over HTTP" copyLabel="Copy the HTTP command"
        text=${`claude mcp add --transport http ${name} ${meta.data.mcp_url} \\\n  --header "Authorization: Bearer ${key}"`} />
      <${Command} label="Claude Code over stdio" note="(where Atlilith is installed and its database is reachable)"
        copyLabel="Copy the stdio command" text=${`claude mcp add ${name} -e ATLILITH_TOKEN=${key} -- atlilith mcp`} />
      <p class="muted">MCP endpoint: <code>${meta.data.mcp_url}</code>.
        ${ctx.org
          ? html` A key bound to ${ctx.orgName || ctx.org} acts in that org; any other key acts personally unless a tool is given <code>org</code>.`
          : html` A key acts in your personal context; tools take an <code>org</code> argument to act in one of your orgs.`}
        ${!meta.data.public_url_configured && " (No public URL is configured: behind a proxy, set ATLILITH_PUBLIC_URL.)"}</p>`}
  </section>`;
}

function CreateKey({ me, ctx, meta, onCreated }) {
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState(["*"]);
  const [org, setOrg] = useState(ctx.org || "");
  const [days, setDays] = useState("");
  const { busy, error, run } = useAction();
  const memberships = (me && me.memberships) || [];
  const orgOptions = [
    { value: "", label: "Not bound: personal, or any of my orgs per call" },
    ...memberships.map((m) => ({ value: m.org.slug, label: `Only ${m.org.name}` })),
  ];
  const toggle = (scope, on) => setScopes((s) => (on ? [...s, scope] : s.filter((x) => x !== scope)));
  const submit = async (e) => {
    e.preventDefault();
    const body = { name, scopes, org: org || null };
    if (days) body.expires_in_days = Number(days);
    const key = await run(() => api.post("/v1/api-keys", body));
    if (key) {
      setName("");
      onCreated(key);
    }
  };
  // `admin:*` only for platform operators: anyone else's key could never use them.
  const listed = (meta.data && meta.data.api_key_scopes) || [{ scope: "*", description: "everything you may do" }];
  const available = listed.filter((s) => !s.scope.startsWith("admin:") || (me && me.platform_admin));
  return html`<form onSubmit=${submit} aria-labelledby="create-key-title">
    <h3 id="create-key-title">Create an API key</h3>
    <${Field} label="Name" name="name" value=${name} onInput=${setName} required
      hint="Who will use it, e.g. “claude on my laptop”." error=${error} />
    <fieldset class="scopes">
      <legend>Scopes (what the key may do)</legend>
      ${available.filter((s) => s.scope === "*").map((s) => html`<${ScopeBox} key="*" s=${s} scopes=${scopes} toggle=${toggle} />`)}
      <details>
        <summary>Narrow it to some features</summary>
        <p class="field-hint">Untick <code>*</code> and tick only what the agent needs; <code>write</code> includes <code>read</code>.</p>
        ${available.filter((s) => s.scope !== "*").map((s) => html`<${ScopeBox} key=${s.scope} s=${s} scopes=${scopes} toggle=${toggle} />`)}
      </details>
    </fieldset>
    <${Field} label="Bound to" name="org" value=${org} onInput=${setOrg} options=${orgOptions}
      hint="A bound key can act only in that org." error=${error} />
    <${Field} label="Expires after (days, optional)" name="expires_in_days" type="number" min="1" max="3650"
      value=${days} onInput=${setDays} error=${error} />
    <${ErrorBox} error=${error} title="The key was not created" />
    <div><button type="submit" disabled=${busy}>${busy ? "Creating…" : "Create key"}</button></div>
  </form>`;
}

function ScopeBox({ s, scopes, toggle }) {
  return html`<label class="check">
    <input type="checkbox" name="scopes" value=${s.scope} checked=${scopes.includes(s.scope)}
      onChange=${(e) => toggle(s.scope, e.target.checked)} />
    <code>${s.scope}</code> <span class="muted">${s.description}</span>
  </label>`;
}

function KeyList({ keys }) {
  const { error, run } = useAction();
  const revoke = (key) => run(() => api.del(`/v1/api-keys/${key.id}`)).then(keys.reload);
  if (!keys.loading && !keys.error && keys.items.length === 0) {
    return html`<${Empty} title="You have no API keys yet.">Create one above to connect an agent or a script.<//>`;
  }
  return html`<div>
    <${ErrorBox} error=${error} title="The key was not revoked" />
    ${keys.items.length > 0 &&
    html`<table aria-label="Your API keys">
      <thead><tr><th scope="col">Name</th><th scope="col">Key</th><th scope="col">Scopes</th><th scope="col">Bound to</th>
        <th scope="col">Created</th><th scope="col">Last used</th><th scope="col">Status</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>
        ${keys.items.map(
          (k) => html`<tr key=${k.id}>
            <td>${k.name}</td>
            <td><code>atl_${k.prefix}_…</code></td>
            <td>${k.scopes.map((s) => html`<code key=${s} class="badge">${s}</code> `)}</td>
            <td>${k.org ? k.org.name || k.org.slug : html`<span class="muted">any</span>`}</td>
            <td>${when(k.created_at)}</td>
            <td>${k.last_used_at ? when(k.last_used_at) : html`<span class="muted">never</span>`}</td>
            <td>${keyStatus(k)}</td>
            <td>${!k.revoked_at &&
            html`<${ConfirmButton} label=${`Revoke ${k.name}`} ariaLabel=${`Revoke ${k.name} (atl_${k.prefix})`}
              confirmLabel=${`Yes, revoke ${k.name}`} onConfirm=${() => revoke(k)} />`}</td>
          </tr>`,
        )}
      </tbody>
    </table>`}
    <${MoreFooter} list=${keys} label="Load more keys" />
  </div>`;
}

function keyStatus(k) {
  if (k.revoked_at) return html`<span class="badge">revoked ${when(k.revoked_at)}</span>`;
  if (k.expires_at && new Date(k.expires_at) < new Date()) return html`<span class="badge">expired</span>`;
  return k.expires_at ? `active, expires ${when(k.expires_at)}` : "active";
}

/** Apps an MCP host connected by signing in through this portal (OAuth). */
function ConnectedApps({ apps }) {
  const { error, run } = useAction();
  const revoke = (app) => run(() => api.del(`/v1/oauth/connections/${app.id}`)).then(apps.reload);
  const unavailable = apps.error && apps.error.status === 404;
  let body;
  if (unavailable) {
    body = html`<${Empty} title="Connected apps are not available on this server.">
      Use an API key above to connect an agent.<//>`;
  } else if (!apps.loading && !apps.error && apps.items.length === 0) {
    body = html`<${Empty} title="No app is connected.">
      Point an MCP host at the endpoint above without a key: it opens this portal to sign in, and
      you choose the context it acts in. It then appears here.<//>`;
  } else {
    body = html`<div>
      <${ErrorBox} error=${error} title="The app was not disconnected" />
      ${apps.items.length > 0 &&
      html`<table aria-label="Connected apps">
        <thead><tr><th scope="col">App</th><th scope="col">Acts in</th><th scope="col">Scopes</th>
          <th scope="col">Connected</th><th scope="col">Last used</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
        <tbody>
          ${apps.items.map(
            (a) => html`<tr key=${a.id}>
              <td>${a.client_name || a.client_id}</td>
              <td>${actsIn(a.context)}</td>
              <td>${(a.scopes || []).map((s) => html`<code key=${s} class="badge">${s}</code> `)}</td>
              <td>${when(a.created_at)}</td>
              <td>${a.last_used_at ? when(a.last_used_at) : html`<span class="muted">never</span>`}</td>
              <td><${ConfirmButton} label=${`Disconnect ${a.client_name || a.client_id}`}
                ariaLabel=${`Disconnect ${a.client_name || a.client_id}, connected ${when(a.created_at)}`}
                confirmLabel="Yes, disconnect" onConfirm=${() => revoke(a)} /></td>
            </tr>`,
          )}
        </tbody>
      </table>`}
    </div>`;
  }
  return html`<section aria-labelledby="connected-apps">
    <h2 id="connected-apps">Connected apps</h2>
    ${body}
    ${!unavailable && html`<${MoreFooter} list=${apps} label="Load more apps" />`}
  </section>`;
}

function actsIn(context) {
  if (!context || context.kind !== "org") return "Personal";
  const org = context.org;
  return typeof org === "string" ? org : (org && (org.name || org.slug)) || "an org";
}
