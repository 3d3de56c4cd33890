// The portal shell: route table, sign-in gate, context (from the URL) and the nav with the
// context switcher. Pages are modules under ./pages/, each a Preact component.

import { html, render, useState, useEffect, useRef } from "./vendor/htm-preact-standalone.mjs";
import * as api from "./api.js";
import { ErrorBox, Loading } from "./ui.js";
import { SignIn, SignUp } from "./pages/signin.js";
import { Dashboard } from "./pages/dashboard.js";
import { NotMember, NotFound } from "./pages/notfound.js";
import { MembersPage, OrgInvitationsPage, OrgSettingsPage, NewOrgPage } from "./pages/org.js";
import { BrandsPage } from "./pages/brands.js";
import { MyInvitationsPage } from "./pages/invitations.js";
import { AgentsPage } from "./pages/agents.js";
import { ComponentsPage } from "./pages/components.js";
import { CreditsPage, JobPage } from "./pages/credits.js";
import { Consent } from "./pages/consent.js";
import { CalendarPage, BookingPage } from "./pages/calendar.js";
import { ServicesPage, HoursPage } from "./pages/services.js";
import { ClientsPage, ClientPage } from "./pages/clients.js";
import { AnalyticsPage } from "./pages/analytics.js";
import { InboxPage, ThreadPage } from "./pages/inbox.js"; // inbox

// Pages inside a context. `path` is what follows /me or /o/{org} ("" = the context's home).
// `contexts`: where the page exists ("me" personal, "org"); `nav`: its label in the nav (or
// omit it to keep the page out of the nav). Props every page gets: see PAGE PROPS below.
export const routes = [
  { path: "", page: Dashboard, title: "Dashboard", nav: "Dashboard", contexts: ["me", "org"] },
  // — inbox (inbox) —
  { path: "inbox", page: InboxPage, title: "Inbox", nav: "Inbox", contexts: ["me", "org"] },
  { path: "inbox/:id", page: ThreadPage, title: "Thread", contexts: ["me", "org"] },
  // — calendar, services, working hours (calendar) —
  { path: "calendar", page: CalendarPage, title: "Calendar", nav: "Calendar", contexts: ["me", "org"] },
  { path: "calendar/bookings/:id", page: BookingPage, title: "Booking", contexts: ["me", "org"] },
  { path: "services", page: ServicesPage, title: "Services", nav: "Services", contexts: ["me", "org"] },
  { path: "hours", page: HoursPage, title: "Working hours", nav: "Hours", contexts: ["me", "org"] },
  // — clients, analytics (clients-analytics) —
  { path: "clients", page: ClientsPage, title: "Clients", nav: "Clients", contexts: ["me", "org"] },
  { path: "clients/:id", page: ClientPage, title: "Client", contexts: ["me", "org"] },
  { path: "analytics", page: AnalyticsPage, title: "Analytics", nav: "Analytics", contexts: ["me", "org"] },
  // — agents, components, credits (portal-agents) —
  { path: "agents", page: AgentsPage, title: "Agents", nav: "Agents", contexts: ["me", "org"] },
  { path: "components", page: ComponentsPage, title: "Components", nav: "Components", contexts: ["me", "org"] },
  { path: "credits", page: CreditsPage, title: "Credits and jobs", nav: "Credits", contexts: ["me", "org"] },
  { path: "jobs/:id", page: JobPage, title: "Job", contexts: ["me", "org"] },
  // — org pages (portal-shell) —
  { path: "members", page: MembersPage, title: "Members", nav: "Members", contexts: ["org"] },
  { path: "invitations", page: OrgInvitationsPage, title: "Invitations", nav: "Invitations", contexts: ["org"] },
  { path: "brands", page: BrandsPage, title: "Brands", nav: "Brands", contexts: ["me", "org"] },
  { path: "settings", page: OrgSettingsPage, title: "Settings", nav: "Settings", contexts: ["org"] },
  { path: "orgs/new", page: NewOrgPage, title: "Create an org", contexts: ["me"] },
];

// Pages outside any context: `auth: false` are reachable signed out.
export const topRoutes = [
  { path: "/signin", page: SignIn, title: "Sign in", auth: false, signedOutOnly: true },
  { path: "/signup", page: SignUp, title: "Sign up", auth: false, signedOutOnly: true },
  // — person-level pages (portal-shell) —
  { path: "/invitations", page: MyInvitationsPage, title: "My invitations" },
  // — oauth pages (oauth) —
  { path: "/oauth/consent", page: Consent, title: "Connect an app" },
];

/** Parse a pathname into {kind: "me"|"org"|"top", org, rest}. */
export function parseLocation(pathname) {
  const parts = pathname.replace(/\/+$/, "").split("/").filter(Boolean);
  if (parts[0] === "me") return { kind: "me", org: null, rest: parts.slice(1).join("/") };
  if (parts[0] === "o" && parts[1]) return { kind: "org", org: decodeURIComponent(parts[1]), rest: parts.slice(2).join("/") };
  return { kind: "top", org: null, rest: "/" + parts.join("/") };
}

/** The URL of a page in a context: base("cocotte", "members") -> /o/cocotte/members. */
export function contextUrl(org, rest = "") {
  const base = org ? `/o/${encodeURIComponent(org)}` : "/me";
  return rest ? `${base}/${rest}` : base;
}

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  window.dispatchEvent(new Event("atlilith:navigate"));
}

// Plain <a href="/..."> links route inside the app (no reload).
document.addEventListener("click", (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest && e.target.closest("a[href]");
  if (!a || a.target || a.hasAttribute("download") || a.getAttribute("href").startsWith("#")) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith("/v1/") || url.pathname.startsWith("/docs")) return;
  e.preventDefault();
  navigate(url.pathname + url.search + url.hash);
});

function safeNext(next) {
  return next && next.startsWith("/") && !next.startsWith("//") ? next : "/me";
}

function useLocation() {
  const [loc, setLoc] = useState(location.pathname + location.search);
  useEffect(() => {
    const update = () => setLoc(location.pathname + location.search);
    window.addEventListener("popstate", update);
    window.addEventListener("atlilith:navigate", update);
    return () => {
      window.removeEventListener("popstate", update);
      window.removeEventListener("atlilith:navigate", update);
    };
  }, []);
  return loc;
}

function ContextSwitcher({ auth, me, here }) {
  const memberships = (me && me.memberships) || [];
  const current = here.kind === "org" ? here.org : null;
  return html`<div class="switcher">
    <span class="person">${auth.person.display_name}</span>
    <nav aria-label="Contexts" class="contexts">
      <a href="/me" aria-current=${here.kind === "me" ? "page" : undefined}>Personal</a>
      ${memberships.map(
        (m) => html`<a key=${m.org.slug} href=${contextUrl(m.org.slug)}
          aria-current=${current === m.org.slug ? "page" : undefined}>${m.org.name}</a>`,
      )}
      <a href="/me/orgs/new" class="new-org">+ New org</a>
    </nav>
  </div>`;
}

function Redirect({ to }) {
  useEffect(() => navigate(to, { replace: true }), [to]);
  return null;
}

function Nav({ auth, me, here, onSignOut }) {
  const kind = here.kind === "org" ? "org" : "me";
  const items = routes.filter((r) => r.nav && r.contexts.includes(kind));
  const active = here.kind === "top" ? null : here.rest;
  return html`<header class="topbar">
    <a class="brand" href="/me">Atlilith</a>
    <${ContextSwitcher} auth=${auth} me=${me} here=${here} />
    <button type="button" class="secondary signout" onClick=${onSignOut}>Sign out</button>
    <nav aria-label="Pages" class="pages">
      ${items.map(
        (r) => html`<a key=${r.path} href=${contextUrl(here.kind === "org" ? here.org : null, r.path)}
          aria-current=${active === r.path ? "page" : undefined}>${r.nav}</a>`,
      )}
      <a href="/invitations" aria-current=${here.rest === "/invitations" ? "page" : undefined}>My invitations</a>
    </nav>
  </header>`;
}

// An `:id` is a UUID: anything else in its place (a mistyped link) is "Page not found", not a
// detail page reporting the API's refusal of the id.
const UUID = "([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})";

function matchRoute(table, path) {
  for (const r of table) {
    const names = [];
    const re = new RegExp("^" + r.path.replace(/:([a-z_]+)/g, (_, n) => (names.push(n), n === "id" ? UUID : "([^/]+)")) + "$");
    const m = path.match(re);
    if (m) return { route: r, params: Object.fromEntries(names.map((n, i) => [n, decodeURIComponent(m[i + 1])])) };
  }
  return null;
}

function App() {
  const loc = useLocation();
  const [me, setMe] = useState(null);
  const [ctxState, setCtxState] = useState({ key: null, error: null, busy: false });
  const [fatal, setFatal] = useState(null);

  const url = new URL(loc, location.origin);
  const here = parseLocation(url.pathname);
  const [auth, setAuth] = useState(undefined); // undefined: not known yet; null: signed out
  const who = auth ? auth.person.id : "";
  const wantedKey = here.kind === "org" ? `${who}:o:${here.org}` : here.kind === "me" ? `${who}:me` : null;

  useEffect(() => api.onAuthChange((a) => setAuth(a ? api.currentAuth() : null)), []);
  // Removed from the org while a page of it is open: say so at once, as a fresh visit would.
  useEffect(
    () =>
      api.onContextLost((error) => {
        setCtxState((s) => ({ key: s.key, error, busy: false }));
        // The org's token is refused everywhere now: act personally, then reread the orgs.
        api.switchTo(null).then(refreshMe, refreshMe);
      }),
    [],
  );
  // After an in-app navigation, keyboard and screen-reader users start at the new page.
  const first = useRef(true);
  useEffect(() => {
    if (first.current) first.current = false;
    else document.getElementById("main")?.focus();
  }, [loc]);
  useEffect(() => {
    api.restore().catch((err) => {
      setFatal(err);
      setAuth(null);
    });
  }, []);

  const refreshMe = async () => {
    try {
      setMe(await api.get("/v1/me"));
    } catch (err) {
      if (err.status === 401) setAuth(null);
    }
  };
  useEffect(() => {
    if (auth) refreshMe();
    else setMe(null);
  }, [auth && auth.person.id]);

  // The URL is the authority on the context: bring the access token in line with it.
  useEffect(() => {
    if (!auth || wantedKey === null || ctxState.key === wantedKey) return;
    const wanted = here.kind === "org" ? here.org : null;
    if (api.contextSlug() === wanted) {
      setCtxState({ key: wantedKey, error: null, busy: false });
      return;
    }
    setCtxState({ key: null, error: null, busy: true });
    api.switchTo(wanted).then(
      () => setCtxState({ key: wantedKey, error: null, busy: false }),
      (error) => {
        setCtxState({ key: wantedKey, error, busy: false });
        refreshMe(); // the switcher should stop offering an org we have left
      },
    );
  }, [wantedKey]);

  if (fatal && auth === null) return html`<main class="page"><${ErrorBox} error=${fatal} /></main>`;
  if (auth === undefined) return html`<main class="page"><${Loading} label="Signing you in…" /></main>`;

  const top = here.kind === "top" ? matchRoute(topRoutes, here.rest === "/" ? "/" : here.rest) : null;
  if (here.kind === "top" && here.rest === "/") return html`<${Redirect} to=${auth ? "/me" : "/signin"} />`;
  // A page nobody serves is "Page not found" for anyone: signing in would not make it one.
  const needsAuth = here.kind === "top" ? Boolean(top) && top.route.auth !== false : true;
  if (needsAuth && !auth) {
    return html`<${Redirect} to=${`/signin?next=${encodeURIComponent(url.pathname + url.search)}`} />`;
  }
  const query = Object.fromEntries(url.searchParams);
  const onSignedIn = () => navigate(safeNext(query.next), { replace: true });
  const onSignOut = async () => {
    await api.signOut();
    navigate("/signin", { replace: true });
  };

  let body;
  if (here.kind === "top") {
    if (!top) body = html`<${NotFound} />`;
    else {
      // Signed in already: the sign-in and sign-up pages go where they would have led.
      if (top.route.auth === false && auth && top.route.signedOutOnly) {
        return html`<${Redirect} to=${safeNext(query.next)} />`;
      }
      body = html`<${top.route.page} auth=${auth} me=${me} params=${top.params} query=${query}
        navigate=${navigate} refreshMe=${refreshMe} onSignedIn=${onSignedIn} />`;
    }
  } else {
    const kind = here.kind;
    const found = matchRoute(routes.filter((r) => r.contexts.includes(kind)), here.rest);
    if (ctxState.error && ctxState.key === wantedKey) {
      body = html`<${NotMember} org=${here.org} error=${ctxState.error} />`;
    } else if (ctxState.key !== wantedKey) {
      body = html`<${Loading} label="Switching context…" />`;
    } else if (!found) {
      body = html`<${NotFound} />`;
    } else {
      const c = api.currentAuth().context;
      const ctx = {
        kind,
        org: here.kind === "org" ? here.org : null,
        orgName: c.org ? c.org.name : null,
        role: c.role,
        base: contextUrl(here.kind === "org" ? here.org : null),
        url: (rest) => contextUrl(here.kind === "org" ? here.org : null, rest),
      };
      // PAGE PROPS: {auth, me, ctx, params, query, navigate, refreshMe}
      body = html`<${found.route.page} key=${loc} auth=${auth} me=${me} ctx=${ctx} params=${found.params}
        query=${query} navigate=${navigate} refreshMe=${refreshMe} />`;
    }
  }
  const lost = here.kind === "org" && ctxState.error && ctxState.key === wantedKey;
  if (!auth) return html`<main class="page narrow" id="main">${body}</main>`;
  return html`<a class="skip-link" href="#main">Skip to content</a>
    <${Nav} auth=${auth} me=${me} here=${lost ? { kind: "top", org: null, rest: null } : here} onSignOut=${onSignOut} />
    <main class="page" id="main" tabindex="-1">${body}</main>`;
}

const root = document.getElementById("app");
root.textContent = ""; // the static "Loading…" placeholder; Preact would keep it beside the app
render(html`<${App} />`, root);
