"""Per-domain deployments: `deployments/<domain>/deployment.yaml`, each configuration of a
template in `deployments/templates/` (which brand, which org, which features), never code.

One stack (compose) serves every domain; a deployment adds a site to the Caddyfile, the hosts
and origins the app must accept, and the tenant rows that must exist. This module renders them
(the Caddyfile and `infrastructure/deployments.env` are generated, never edited) and builds the
step list `atlilith deploy <domain>` prints or applies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from core.uow import Database

from core import __version__
from core.ports import ROOT

DEPLOYMENTS_DIR = ROOT / "deployments"
TEMPLATES_DIR = DEPLOYMENTS_DIR / "templates"
CADDYFILE = ROOT / "infrastructure" / "Caddyfile"
DEPLOYMENTS_ENV = ROOT / "infrastructure" / "deployments.env"

# The design's components (ARCHITECTURE.md). A deployment may name one that this build does not
# ship yet: it is reported, and served once the feature lands, with no change to the deployment.
FEATURE_CATALOGUE = ("tenancy", "messaging", "bookings", "analytics", "billing", "identity", "registry")
NEEDS = ("person", "org", "brand")
SITE_MODES = ("none", "static", "app")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_SLUG = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
_ENV_KEY = re.compile(r"^[A-Z][A-Z0-9_]*$")


class DeploymentError(ValueError):
    """A deployment or template is invalid; the message names the file and the field."""


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    needs: tuple[str, ...]
    features: tuple[str, ...]
    api: bool
    mcp: bool
    site: str
    seed: bool


@dataclass(frozen=True)
class Deployment:
    domain: str
    template: Template
    aliases: tuple[str, ...] = ()
    person: str | None = None
    org: str | None = None
    brand: str | None = None
    features: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    @property
    def hosts(self) -> tuple[str, ...]:
        return (self.domain, *self.aliases)

    def missing_features(self, built: list[str]) -> list[str]:
        """Features named here that this build does not ship (yet)."""
        return [f for f in self.features if f not in built]


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DeploymentError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise DeploymentError(f"{path}: expected a mapping")
    return data


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DeploymentError(f"{where}: expected a list of strings")
    return tuple(value)


def _features(value: Any, where: str) -> tuple[str, ...]:
    names = _strings(value, where)
    unknown = sorted(set(names) - set(FEATURE_CATALOGUE))
    if unknown:
        raise DeploymentError(f"{where}: unknown features {unknown}; known: {list(FEATURE_CATALOGUE)}")
    return names


def load_template(name: str) -> Template:
    path = TEMPLATES_DIR / f"{name}.yaml"
    if not _SLUG.fullmatch(name) or not path.is_file():
        known = sorted(p.stem for p in TEMPLATES_DIR.glob("*.yaml"))
        raise DeploymentError(f"template {name!r} does not exist; templates: {known}")
    raw = _read(path)
    if raw.get("name") != name:
        raise DeploymentError(f"{path}: `name` must be {name!r}")
    needs = _strings(raw.get("needs"), f"{path}: needs")
    if set(needs) - set(NEEDS):
        raise DeploymentError(f"{path}: needs may only name {list(NEEDS)}")
    routes = raw.get("routes") or {}
    site = str(routes.get("site", "none"))
    if site not in SITE_MODES:
        raise DeploymentError(f"{path}: routes.site must be one of {list(SITE_MODES)}")
    return Template(
        name=name,
        description=str(raw.get("description", "")),
        needs=needs,
        features=_features(raw.get("features"), f"{path}: features"),
        api=bool(routes.get("api", False)),
        mcp=bool(routes.get("mcp", False)),
        site=site,
        seed=bool(raw.get("seed", False)),
    )


ALLOWED_KEYS = {"domain", "template", "aliases", "person", "org", "brand", "features", "env"}


def load(domain: str) -> Deployment:
    folder = DEPLOYMENTS_DIR / domain
    path = folder / "deployment.yaml"
    if not _DOMAIN.fullmatch(domain) or not path.is_file():
        raise DeploymentError(f"no deployment for {domain!r}; deployments: {domains()}")
    raw = _read(path)
    extra = sorted(set(raw) - ALLOWED_KEYS)
    if extra:
        raise DeploymentError(f"{path}: unknown keys {extra} (a deployment is configuration only)")
    if raw.get("domain") != domain:
        raise DeploymentError(f"{path}: `domain` must equal the folder name {domain!r}")
    template = load_template(str(raw.get("template", "")))
    aliases = _strings(raw.get("aliases"), f"{path}: aliases")
    for host in aliases:
        if not _DOMAIN.fullmatch(host):
            raise DeploymentError(f"{path}: alias {host!r} is not a domain name")
    refs: dict[str, str | None] = {}
    for key in NEEDS:
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not _SLUG.fullmatch(value)):
            raise DeploymentError(f"{path}: {key} must be a slug")
        refs[key] = value
    for need in template.needs:
        if refs[need] is None:
            raise DeploymentError(f"{path}: template {template.name!r} needs `{need}`")
    if refs["brand"] is not None and refs["org"] is None:
        raise DeploymentError(f"{path}: a brand belongs to an org: set `org`")
    env_raw = raw.get("env") or {}
    if not isinstance(env_raw, dict) or not all(_ENV_KEY.fullmatch(str(k)) for k in env_raw):
        raise DeploymentError(f"{path}: env must map UPPER_CASE names to values")
    features = _features(raw.get("features"), f"{path}: features") or template.features
    return Deployment(
        domain=domain,
        template=template,
        aliases=aliases,
        person=refs["person"],
        org=refs["org"],
        brand=refs["brand"],
        features=tuple(dict.fromkeys((*template.features, *features))),
        env={str(k): str(v) for k, v in env_raw.items()},
    )


def domains() -> list[str]:
    return sorted(p.parent.name for p in DEPLOYMENTS_DIR.glob("*/deployment.yaml"))


def load_all() -> list[Deployment]:
    deployments = [load(d) for d in domains()]
    seen: dict[str, str] = {}
    for dep in deployments:
        for host in dep.hosts:
            if host in seen:
                raise DeploymentError(f"host {host!r} is claimed by {seen[host]} and {dep.domain}")
            seen[host] = dep.domain
    return deployments


# --- rendering --------------------------------------------------------------------------------

API_PATHS = "/v1/* /health /docs /openapi.json"
MCP_PATHS = "/mcp /mcp/* /.well-known/oauth-protected-resource /.well-known/oauth-protected-resource/*"


def caddy_site(dep: Deployment) -> str:
    t = dep.template
    lines = [f"# {dep.domain}: template {t.name}" + (f", org {dep.org}" if dep.org else "")]
    lines.append(f"{', '.join(dep.hosts)} {{")
    lines.append("\timport common")
    # The Inngest door is for the Inngest server on the private network only.
    lines.append("\thandle @inngest {\n\t\trespond 404\n\t}")
    if t.api:
        lines.append("\thandle @api {\n\t\treverse_proxy {$ATLILITH_UPSTREAM}\n\t}")
    if t.mcp:
        lines.append("\thandle @mcp {\n\t\treverse_proxy {$ATLILITH_UPSTREAM}\n\t}")
    if t.site == "app":
        # The app serves the brand's site at `/` (it reads the Host) and the public pages.
        lines.append("\thandle {\n\t\treverse_proxy {$ATLILITH_UPSTREAM}\n\t}")
    elif t.site == "static":
        lines.append(
            "\thandle {\n"
            f"\t\troot * /srv/sites/{dep.domain}\n"
            "\t\ttry_files {path} {path}/ /index.html\n"
            "\t\tfile_server\n"
            "\t}"
        )
    else:
        lines.append('\thandle {\n\t\trespond "Not found" 404\n\t}')
    lines.append("}")
    return "\n".join(lines)


def render_caddyfile(deployments: list[Deployment] | None = None) -> str:
    deployments = deployments if deployments is not None else load_all()
    head = f"""# Generated by `./run generate` from deployments/*/deployment.yaml: edit those, not this file.
# TLS for every site is automatic (ACME); Caddy proxies to the app on the private network.
{{
\tadmin localhost:{{$ATLILITH_CADDY_ADMIN_PORT_CONTAINER}}
\temail {{$ATLILITH_ACME_EMAIL}}
\thttp_port {{$ATLILITH_HTTP_PORT_CONTAINER}}
\thttps_port {{$ATLILITH_HTTPS_PORT_CONTAINER}}
}}

(common) {{
\t@inngest path /api/inngest /api/inngest/*
\t@api path {API_PATHS}
\t@mcp path {MCP_PATHS}
\tencode zstd gzip
\tlog
\theader {{
\t\tStrict-Transport-Security "max-age=31536000; includeSubDomains"
\t\tX-Content-Type-Options nosniff
\t\tReferrer-Policy strict-origin-when-cross-origin
\t\t-Server
\t}}
}}
"""
    return head + "\n" + "\n\n".join(caddy_site(d) for d in deployments) + "\n"


def stack_env(deployments: list[Deployment] | None = None) -> dict[str, str]:
    """What the one app must accept for every deployed domain (non-secret)."""
    deployments = deployments if deployments is not None else load_all()
    platform = next((d for d in deployments if d.template.name == "platform"), None)
    mcp_hosts = [h for d in deployments if d.template.mcp for h in d.hosts]
    origins = [f"https://{h}" for d in deployments if d.template.site == "static" for h in d.hosts]
    env = {
        "ATLILITH_PUBLIC_URL": f"https://{platform.domain}" if platform else "",
        "ATLILITH_MCP_ALLOWED_HOSTS": ",".join(mcp_hosts),
        "ATLILITH_MCP_ALLOWED_ORIGINS": ",".join(f"https://{h}" for h in mcp_hosts),
        "ATLILITH_CORS_ORIGINS": ",".join(origins),
    }
    for dep in deployments:
        env.update(dep.env)
    return env


def render_stack_env(deployments: list[Deployment] | None = None) -> str:
    env = stack_env(deployments)
    lines = [
        "# Generated by `./run generate` from deployments/*/deployment.yaml: edit those, not this file.",
        "# Non-secret settings the one app needs to serve every deployed domain.",
    ]
    lines += [f"{k}={v}" for k, v in env.items()]
    return "\n".join(lines) + "\n"


# --- the plan `atlilith deploy <domain>` prints or applies --------------------------------------


@dataclass(frozen=True)
class Step:
    title: str
    command: str  # what the operator runs on the production host
    action: str | None = None  # what `deploy --apply` does here itself (None: printed only)


def compose_command(*args: str) -> str:
    return (
        "docker compose -f infrastructure/compose.yaml --env-file infrastructure/ports.env"
        " --env-file infrastructure/deployments.env --env-file /etc/atlilith/secrets.env " + " ".join(args)
    )


def plan(dep: Deployment) -> list[Step]:
    in_app = compose_command("exec", "app", "atlilith")
    steps = [
        Step(
            "check the generated files match deployments/ and ports.yaml",
            "./run generate --check",
            "generate",
        ),
        Step(
            "check this build ships every feature the deployment names",
            "./run deploy " + dep.domain,
            "features",
        ),
        Step("back up the database before anything changes", f"{in_app} backup", "backup"),
        Step("build the image", f"docker build -t atlilith:{__version__} .", None),
        Step(
            "start or update the stack (waits for every health check)",
            compose_command("up", "-d", "--wait"),
            None,
        ),
        Step("apply migrations (idempotent)", f"{in_app} migrate", "migrate"),
    ]
    if dep.template.seed:
        steps.append(Step("create the bootstrap data (idempotent)", f"{in_app} seed", "seed"))
    refs = ", ".join(
        f"{k} {v}" for k, v in (("person", dep.person), ("org", dep.org), ("brand", dep.brand)) if v
    )
    if refs:
        steps.append(
            Step(
                f"check that {refs} exist for {dep.domain}", f"{in_app} deploy {dep.domain} --check", "check"
            )
        )
    steps += [
        Step(
            "reload Caddy with the rendered sites",
            compose_command("exec", "caddy", "caddy", "reload", "--config", "/etc/caddy/Caddyfile"),
            None,
        ),
        Step("smoke test through TLS", f"curl -fsS https://{dep.domain}/health", None),
    ]
    return steps


# --- what must exist in the database --------------------------------------------------------------

_CHECKS = {
    "person": "SELECT 1 FROM platform.persons WHERE slug = :person AND status = 'active'",
    "org": "SELECT 1 FROM platform.orgs WHERE slug = :org",
    "membership": (
        "SELECT 1 FROM platform.org_members m JOIN platform.orgs o ON o.id = m.org_id"
        " JOIN platform.persons p ON p.id = m.person_id WHERE o.slug = :org AND p.slug = :person"
    ),
    "brand": (
        "SELECT 1 FROM platform.brands b JOIN platform.orgs o ON o.id = b.org_id"
        " WHERE b.slug = :brand AND o.slug = :org"
    ),
    "domain": (
        "SELECT 1 FROM platform.brand_domains d JOIN platform.brands b ON b.id = d.brand_id"
        " WHERE d.domain = :domain AND b.slug = :brand"
    ),
}


async def check_in_database(db: Database, dep: Deployment) -> list[str]:
    """What the deployment references but the database lacks (empty list: all there)."""
    from sqlalchemy import text

    params = {"person": dep.person, "org": dep.org, "brand": dep.brand, "domain": dep.domain}
    wanted = [k for k in ("person", "org", "brand") if params[k]]
    if dep.person and dep.org:
        wanted.append("membership")
    if dep.brand:
        wanted.append("domain")
    problems: list[str] = []
    async with db.system() as uow:
        for key in wanted:
            found = (await uow.session.execute(text(_CHECKS[key]), params)).first()
            if found is None:
                problems.append(_MISSING[key].format(**params))
    return problems


_MISSING = {
    "person": "person {person!r} does not exist (sign up, or `atlilith seed` for the design's data)",
    "org": "org {org!r} does not exist (create it as its owner: POST /v1/orgs)",
    "membership": "person {person!r} is not a member of org {org!r}",
    "brand": "org {org!r} has no brand {brand!r} (POST /v1/brands in that org)",
    "domain": "brand {brand!r} does not list the domain {domain!r} (PATCH its domains)",
}
