// Sign in and sign up: the one door for people (and, via ?next=, for OAuth clients' sign-in).

import * as api from "../api.js";
import { html, useState, ErrorBox, Field, PageHeader, useAction } from "../ui.js";

function nextQuery(query) {
  return query.next ? `?next=${encodeURIComponent(query.next)}` : "";
}

export function SignIn({ query, onSignedIn }) {
  const [login, setLogin] = useState("");
  const [password, setPassword] = useState("");
  const { busy, error, run } = useAction();
  const submit = async (e) => {
    e.preventDefault();
    if (await run(() => api.signIn(login.trim(), password))) onSignedIn();
  };
  return html`<section class="auth-card">
    <${PageHeader} title="Sign in to Atlilith" />
    <form onSubmit=${submit} novalidate>
      <${ErrorBox} error=${error} title="Sign-in refused" />
      <${Field} label="Email or handle" name="login" value=${login} onInput=${setLogin} required autocomplete="username" />
      <${Field} label="Password" name="password" type="password" value=${password} onInput=${setPassword} required autocomplete="current-password" />
      <button type="submit" disabled=${busy}>${busy ? "Signing in…" : "Sign in"}</button>
    </form>
    <p>New here? <a href=${"/signup" + nextQuery(query)}>Create an account</a></p>
  </section>`;
}

export function SignUp({ query, onSignedIn }) {
  const [form, setForm] = useState({ display_name: "", slug: "", email: "", password: "" });
  const set = (k) => (v) => setForm({ ...form, [k]: v });
  const { busy, error, run } = useAction();
  const submit = async (e) => {
    e.preventDefault();
    if (await run(() => api.signUp({ ...form, slug: form.slug.trim(), email: form.email.trim() }))) onSignedIn();
  };
  return html`<section class="auth-card">
    <${PageHeader} title="Create your Atlilith account" />
    <p class="muted">An account is yours alone; you can create or join orgs afterwards.</p>
    <form onSubmit=${submit} novalidate>
      <${ErrorBox} error=${error} title="Sign-up refused" />
      <${Field} label="Your name" name="display_name" value=${form.display_name} onInput=${set("display_name")} error=${error} required autocomplete="name" />
      <${Field} label="Handle" name="slug" value=${form.slug} onInput=${set("slug")} error=${error} required
        hint="3–40 lowercase letters, digits and hyphens; people add you to orgs by it." autocomplete="username" />
      <${Field} label="Email" name="email" type="email" value=${form.email} onInput=${set("email")} error=${error} required autocomplete="email" />
      <${Field} label="Password" name="password" type="password" value=${form.password} onInput=${set("password")} error=${error} required
        hint="At least 10 characters." autocomplete="new-password" />
      <button type="submit" disabled=${busy}>${busy ? "Creating your account…" : "Create account"}</button>
    </form>
    <p>Already have an account? <a href=${"/signin" + nextQuery(query)}>Sign in</a></p>
  </section>`;
}
