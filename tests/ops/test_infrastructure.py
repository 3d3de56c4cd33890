"""Infrastructure as code, checked statically (no Docker engine here): the port registry and the
files generated from it, compose, the Caddyfile, the Dockerfile and the per-domain deployments."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from core import deployments, ports
from core.config import Settings
from core.uow import Database
from tests.conftest import SEED_PASSWORD

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "infrastructure" / "compose.yaml"
# Secrets the operator provides (docs/operations.md); never given a value in a committed file.
SECRETS = {
    "POSTGRES_PASSWORD",
    "ATLILITH_APP_DB_PASSWORD",
    "ATLILITH_JWT_SECRET",
    "ATLILITH_IDENTITY_SECRET",
    "INNGEST_EVENT_KEY",
    "INNGEST_SIGNING_KEY",
    "ATLILITH_ACME_EMAIL",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
}
_REF = re.compile(r"\$\{([A-Z0-9_]+)(?::?([-?])([^}]*))?\}")
_SECRETISH = re.compile(r"PASSWORD|SECRET|_KEY$|TOKEN")


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def known_vars() -> dict[str, str]:
    values = {**env_file(ports.ENV_FILE), **env_file(deployments.DEPLOYMENTS_ENV)}
    values.update({name: f"<{name.lower()}>" for name in SECRETS})
    return values


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error}; a missing required variable fails."""

    def sub(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in env and env[name] != "":
            return env[name]
        if op == "-":
            return arg or ""
        if op == "?":
            raise AssertionError(f"{name} is required: {arg}")
        if name in env:
            return ""
        raise AssertionError(f"${{{name}}} is neither generated nor a documented secret")

    return _REF.sub(sub, value.replace("$$", "\x00")).replace("\x00", "$")


def strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)] + [k for k in node if isinstance(k, str)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return []


# --- ports --------------------------------------------------------------------------------------


def test_generated_files_match_their_sources() -> None:
    from servers.ops_cli import generated_files

    for path, content in generated_files().items():
        assert path.read_text() == content, f"{path.name} is stale: run ./run generate"
    result = CliRunner().invoke(_cli(), ["generate", "--check"])
    assert result.exit_code == 0, result.output


def test_registry_rules_catch_overlaps_and_strays(tmp_path: Path) -> None:
    specs = ports.load()
    assert specs["api"].low == 3040 and specs["api"].high == 3059
    assert (specs["postgres"].low, specs["postgres"].high) == (25440, 25445)
    bad = tmp_path / "ports.yaml"
    bad.write_text(
        "a: {env: A, default: 100, range: [100, 110], container: 1}\n"
        "b: {env: B, default: 105, range: [105, 120], container: 2}\n"
    )
    with pytest.raises(ports.RegistryError, match="overlap"):
        ports.load(bad)
    bad.write_text("a: {env: A, default: 99, range: [100, 110], container: 1}\n")
    with pytest.raises(ports.RegistryError, match="outside"):
        ports.load(bad)


def test_app_ci_and_dev_ports_are_registered() -> None:
    api = ports.load()["api"]
    assert Settings.model_fields["port"].default == api.default == api.container
    ci = (ROOT / ".ci" / "run").read_text()
    ci_port = int(re.search(r"^port=(\d+)$", ci, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert ci_port in api.reserved and "ci" in api.reserved[ci_port].lower()


# --- compose ------------------------------------------------------------------------------------


def test_compose_services_are_healthy_pinned_and_complete() -> None:
    services = compose()["services"]
    assert {"postgres", "inngest", "app", "caddy", "minio"} <= set(services)
    assert services["minio"].get("profiles") == ["minio"]  # optional
    for name, svc in services.items():
        check = svc.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no health check"
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and re.search(r"\d", tag), f"{name}: pin {image}"
        assert svc.get("restart") == "unless-stopped", name
    app = services["app"]
    assert (
        app["build"]["dockerfile"] == "Dockerfile"
        and (COMPOSE.parent / app["build"]["context"] / "Dockerfile").is_file()
    )
    assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["caddy"]["depends_on"]["app"]["condition"] == "service_healthy"


def test_compose_ports_come_from_the_registry() -> None:
    specs = ports.load()
    env = known_vars()
    published: dict[str, list[int]] = {}
    for name, svc in compose()["services"].items():
        for mapping in svc.get("ports", []):
            parts = mapping.split(":")
            assert len(parts) == 3 and all(_REF.fullmatch(p) for p in parts), f"{name}: {mapping}"
            bind, host, container = (interpolate(p, env) for p in parts)
            owner = next(s for s in specs.values() if s.env == _REF.fullmatch(parts[1]).group(1))  # type: ignore[union-attr]
            assert int(host) in owner and int(container) == owner.container and bind == owner.bind
            assert owner.published
            published.setdefault(owner.name, []).append(int(host))
    # Only Caddy faces the internet; the Inngest dashboard (no sign-in) never does.
    for spec in specs.values():
        if spec.bind != "127.0.0.1":
            assert spec.name in {"http", "https"}
    assert set(published) == {s.name for s in specs.values() if s.published}
    # Every literal port-like number in the file is a registered port.
    for text in strings(compose()):
        for number in re.findall(r"(?<![\w.$-]):(\d{2,5})\b", interpolate(text, env)):
            assert ports.owner_of(int(number), specs), f"port {number} in compose is not registered"


def test_compose_holds_no_secret_and_every_variable_is_known() -> None:
    env = known_vars()
    data = compose()
    for text in strings(data):
        interpolate(text, env)  # raises on an unknown or unset required variable
        for cred in re.findall(r"://[^/@\s]*:([^@/\s]+)@", text):
            assert _REF.fullmatch(cred), f"a literal credential in {text!r}"
    envs = [data["x-app-env"]] + [svc.get("environment") or {} for svc in data["services"].values()]
    for block in envs:
        for key, value in block.items():
            if _SECRETISH.search(key):
                assert _REF.fullmatch(str(value)) and ":?" in str(value), f"{key} must be a required ${{VAR}}"
    secrets_used = {m.group(1) for t in strings(data) for m in _REF.finditer(t)} & SECRETS
    assert secrets_used == SECRETS - set(), "every documented secret is used"
    docs = (ROOT / "docs" / "operations.md").read_text()
    for name in SECRETS:
        assert f"`{name}`" in docs, f"docs/operations.md must document {name}"


def test_the_wiring_between_services_matches() -> None:
    from servers.inngest import SERVE_PATH

    env = known_vars()
    services = compose()["services"]
    app_env = {k: interpolate(str(v), env) for k, v in services["app"]["environment"].items()}
    api = ports.load()["api"]
    assert app_env["ATLILITH_PORT"] == str(api.container) and app_env["ATLILITH_HOST"] == "0.0.0.0"
    assert interpolate(services["caddy"]["environment"]["ATLILITH_UPSTREAM"], env) == f"app:{api.container}"
    inngest_cmd = [interpolate(str(a), env) for a in services["inngest"]["command"]]
    assert f"http://app:{api.container}{SERVE_PATH}" in inngest_cmd
    inngest_port = ports.load()["inngest"].container
    assert (
        app_env["INNGEST_BASE_URL"]
        == app_env["INNGEST_EVENT_API_BASE_URL"]
        == f"http://inngest:{inngest_port}"
    )
    # What the app enforces for hosts/origins is what the deployments need.
    stack = deployments.stack_env()
    assert app_env["ATLILITH_MCP_ALLOWED_HOSTS"] == stack["ATLILITH_MCP_ALLOWED_HOSTS"]
    s = Settings(mcp_allowed_hosts=app_env["ATLILITH_MCP_ALLOWED_HOSTS"], database_url="postgresql://x@y/z")
    assert "cocotte.maison" not in s.mcp_allowed_hosts and "atlilith.com" in s.mcp_allowed_hosts


# --- Caddyfile and Dockerfile ---------------------------------------------------------------------


def caddy_sites(text: str) -> dict[str, str]:
    """Site address line -> its block (top-level blocks only)."""
    sites: dict[str, str] = {}
    current: str | None = None
    body: list[str] = []
    depth = 0
    for line in text.splitlines():
        stripped = line.strip()
        if depth == 0 and stripped.endswith("{") and not stripped.startswith(("(", "{", "#")):
            current, body = stripped[:-1].strip(), []
        if current is not None:
            body.append(line)
        depth += line.count("{") - line.count("}")
        if depth == 0 and current is not None:
            sites[current] = "\n".join(body)
            current = None
    assert depth == 0, "unbalanced braces"
    return sites


def test_caddyfile_fronts_every_deployment() -> None:
    text = deployments.CADDYFILE.read_text()
    sites = caddy_sites(text)
    caddy_env = set(compose()["services"]["caddy"]["environment"])
    for placeholder in re.findall(r"\{\$([A-Z0-9_]+)\}", text):
        assert placeholder in caddy_env, f"Caddy's environment lacks {placeholder}"
    assert not re.search(r":\d{2,5}\b", re.sub(r"\{\$[A-Z0-9_]+\}", "", text)), (
        "literal port in the Caddyfile"
    )
    assert "path /mcp" in text and "/v1/*" in text and "path /api/inngest" in text
    for dep in deployments.load_all():
        block = next(b for addr, b in sites.items() if dep.domain in [a.strip() for a in addr.split(",")])
        for host in dep.hosts:
            assert host in block.splitlines()[0]
        assert "handle @inngest {\n\t\trespond 404" in block  # the Inngest door stays private
        assert ("handle @mcp" in block) == dep.template.mcp
        assert ("handle @api" in block) == dep.template.api
        if dep.template.site == "static":
            assert f"root * /srv/sites/{dep.domain}" in block
        if dep.template.site == "app":  # the brand's site and public pages come from the app
            assert "handle {\n\t\treverse_proxy {$ATLILITH_UPSTREAM}" in block
    for brand_domain in ("cocotte.maison", "sansonnet.maison", "transquinnftw.atlilith.com", "atlilith.com"):
        assert any(brand_domain in addr.split(", ") for addr in sites)


def test_dockerfile_is_pinned_non_root_and_healthy() -> None:
    text = (ROOT / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert froms and all(re.search(r":\d", f) and "latest" not in f for f in froms)
    assert re.search(r"^USER\s+(?!root)\S+", text, re.MULTILINE)
    assert "HEALTHCHECK" in text and "/health" in text
    exposed = [int(p) for p in re.findall(r"^EXPOSE\s+(\d+)", text, re.MULTILINE)]
    assert exposed == [ports.load()["api"].container]
    for key in re.findall(r"^\s*(?:ENV\s+)?([A-Z_]+)=", text, re.MULTILINE):
        assert not _SECRETISH.search(key), f"{key} must not be baked into the image"
    assert "postgresql-client-15" in text  # pg_dump for the compose PostgreSQL major
    for needed in ("skills", "deployments", "infrastructure/ports.yaml"):
        assert f"COPY {needed} /opt/atlilith/lib/python3.11/site-packages/{needed}" in text
    assert "15." in compose()["services"]["postgres"]["image"]


# --- deployments ----------------------------------------------------------------------------------


def test_every_deployment_renders_and_references_real_templates_and_seed_data() -> None:
    from core.seed import BRANDS, ORG_SLUG, PERSON_SLUG

    names = deployments.domains()
    assert {"atlilith.com", "transquinnftw.atlilith.com", "cocotte.maison", "sansonnet.maison"} <= set(names)
    brand_domains = {slug: domain for slug, _name, domain, _cfg in BRANDS}
    for dep in deployments.load_all():
        assert (deployments.TEMPLATES_DIR / f"{dep.template.name}.yaml").is_file()
        assert set(dep.features) <= set(deployments.FEATURE_CATALOGUE) and "tenancy" in dep.features
        if dep.person:
            assert dep.person == PERSON_SLUG
        if dep.org:
            assert dep.org == ORG_SLUG
        if dep.brand:
            assert brand_domains[dep.brand] == dep.domain
        for need in dep.template.needs:
            assert getattr(dep, need)
        assert deployments.caddy_site(dep).count("{") == deployments.caddy_site(dep).count("}")
        steps = deployments.plan(dep)
        assert [s.action for s in steps][:3] == ["generate", "features", "backup"]  # back up before changes
        assert any(s.action == "migrate" for s in steps)
    # Configuration, never code.
    for path in deployments.DEPLOYMENTS_DIR.rglob("*"):
        if path.is_file():
            assert path.suffix in {".yaml", ".md"}, f"{path} is not configuration"


def test_invalid_deployments_are_refused_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deployments, "DEPLOYMENTS_DIR", tmp_path)
    monkeypatch.setattr(deployments, "TEMPLATES_DIR", deployments.TEMPLATES_DIR)
    cases = {
        "a.example": ("domain: a.example\ntemplate: brand-site\norg: cocotte\n", "needs `brand`"),
        "b.example": ("domain: b.example\ntemplate: nope\n", "template 'nope' does not exist"),
        "c.example": ("domain: c.example\ntemplate: platform\nscript: rm -rf /\n", "unknown keys"),
        "d.example": ("domain: d.example\ntemplate: platform\nfeatures: [crypto]\n", "unknown features"),
        "e.example": ("domain: x.example\ntemplate: platform\n", "must equal the folder"),
    }
    for domain, (body, reason) in cases.items():
        (tmp_path / domain).mkdir()
        (tmp_path / domain / "deployment.yaml").write_text(body)
        with pytest.raises(deployments.DeploymentError, match=re.escape(reason)):
            deployments.load(domain)


async def test_deployments_find_their_tenants_in_a_seeded_database(db: Database) -> None:
    from dataclasses import replace

    from core.seed import seed

    await seed(db, SEED_PASSWORD)
    for dep in deployments.load_all():
        assert await deployments.check_in_database(db, dep) == [], dep.domain
    ghost = replace(deployments.load("sansonnet.maison"), brand="cocotte-maison")
    problems = await deployments.check_in_database(db, ghost)
    assert problems == [
        "brand 'cocotte-maison' does not list the domain 'sansonnet.maison' (PATCH its domains)"
    ]
    stranger = replace(deployments.load("transquinnftw.atlilith.com"), person="nobody-here")
    assert len(await deployments.check_in_database(db, stranger)) == 2  # no person, so no membership


def test_deploy_prints_a_dry_run_plan() -> None:
    result = CliRunner().invoke(_cli(), ["deploy", "cocotte.maison"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "template brand-site" in out and "org cocotte, brand cocotte-maison" in out
    assert "cocotte.maison {" in out and "dry run: nothing was changed" in out
    from core.features import feature_names

    # cocotte.maison names bookings: the plan flags it exactly when this build lacks it.
    assert ("does not ship: bookings" in out) == ("bookings" not in feature_names())
    listing = CliRunner().invoke(_cli(), ["deploy"])
    assert listing.exit_code == 0 and "sansonnet.maison" in listing.output
    unknown = CliRunner().invoke(_cli(), ["deploy", "nowhere.example"])
    assert unknown.exit_code == 2 and "no deployment for 'nowhere.example'" in unknown.output


def _cli() -> Any:
    from servers.cli import cli

    return cli


async def test_deploy_apply_backs_up_migrates_and_checks_in_that_order(
    db: Database,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import asyncio

    import typer

    from core import backup as ops
    from core.seed import seed
    from servers import ops_cli

    await seed(db, SEED_PASSWORD)
    monkeypatch.setattr(ops_cli, "_resolved", [settings.model_copy(update={"backup_dir": tmp_path})])
    dep = deployments.load("cocotte.maison")
    # A build without a feature the domain promises is refused before anything changes.
    with pytest.raises(typer.Exit):
        await asyncio.to_thread(ops_cli._apply, dep, deployments.plan(dep), ["bookings"])
    assert ops.list_backups(tmp_path) == []
    capsys.readouterr()
    await asyncio.to_thread(ops_cli._apply, dep, deployments.plan(dep), [])
    out = capsys.readouterr().out
    ran = [line.removeprefix("run   ") for line in out.splitlines() if line.startswith("run   ")]
    assert [r.split()[0] for r in ran] == ["check", "check", "back", "apply", "check"]
    assert "cocotte.maison: everything it references exists" in out
    assert "skip  build the image" in out and "skip  reload Caddy" in out
    assert len(ops.list_backups(tmp_path)) == 1
