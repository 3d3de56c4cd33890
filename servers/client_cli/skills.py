"""add / search: install a registry component and write its skill where the agent finds it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from servers.client_cli.api import Api, connect, problem_body
from servers.client_cli.errors import EXIT_FAILED, EXIT_PROBLEM, CliError
from servers.client_cli.options import CursorOpt, JsonOpt, LimitOpt, OrgOpt, ServerOpt, parse_object
from servers.client_cli.output import Output, handled, show_page

# Agent Skills spec: the folder name; checked before it becomes a path (the server is not trusted
# to choose where we write).
SKILL_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
SKILLS_MANIFEST = ".atlilith.json"


@handled
def add(
    slug: Annotated[str, typer.Argument(help="The component to install, e.g. `bookings`.")],
    directory: Annotated[
        Path, typer.Option("--dir", help="Where agent skills live; the skill goes to DIR/<name>/SKILL.md.")
    ] = Path(".claude/skills"),
    config_json: Annotated[
        str | None, typer.Option("--config", help="Installation config: a JSON object, @file or -.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a locally modified SKILL.md.")] = False,
    org: OrgOpt = None,
    server: ServerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Install a component for the current context and write its skill for your agent."""
    out = Output(json_output)
    component_config = parse_object(config_json, "--config") if config_json is not None else None
    body: dict[str, Any] = {"component": slug}
    if component_config is not None:
        body["config"] = component_config
    with connect(server, org) as api:
        r = api.request("POST", "/v1/installations", json_body=body)
        created = r.status_code == 201
        installation = r.json()
        config_updated = False
        if not created and component_config is not None and installation.get("config") != component_config:
            # Already installed: the POST leaves config alone, so --config means "set it".
            installation = api.request(
                "PATCH", f"/v1/installations/{slug}", json_body={"config": component_config}
            ).json()
            config_updated = True
        skill_text = _fetch_skill(api, slug)
    written = None
    if skill_text is not None:
        written = write_skill(directory, slug, installation, skill_text, force)
    if out.json:
        out.document(
            {
                "installation": installation,
                "created": created,
                "config_updated": config_updated,
                "skill": written,
            }
        )
    else:
        where = _where(api.org)  # --org, or the context saved at login
        verb = "Installed" if created else "Already installed:"
        out.say(f"{verb} [bold]{slug}[/] {installation.get('version', '')} for the {where}.")
        if config_updated:
            out.say("Config updated.")
        if written is None:
            out.say("This component has no skill; nothing written.")
        else:
            out.say(_skill_message(written))
    if written is not None and written["action"] == "kept":
        raise typer.Exit(EXIT_FAILED)


def _fetch_skill(api: Api, slug: str) -> str | None:
    """The component's SKILL.md, or None when it has none."""
    skill_response = api.request("GET", f"/v1/registry/{slug}/skill", allow=frozenset({404}))
    if skill_response.status_code == 404:
        problem = problem_body(skill_response)
        if problem.get("code") != "skill_not_found":
            raise api.problem(skill_response)
        return None
    return skill_response.text


def _where(org: str | None) -> str:
    if not org:
        return "current context"
    return "personal context" if org == "personal" else f"org {org}"


def _skill_message(written: dict[str, Any]) -> str:
    path = written["path"]
    return {
        "created": f"Wrote its skill to {path}.",
        "updated": f"Updated its skill at {path}.",
        "overwritten": f"Overwrote your local changes to {path} (--force).",
        "unchanged": f"Its skill at {path} is already up to date.",
        "kept": f"[yellow]Not overwritten:[/] {path} was modified locally; use --force to replace it.",
    }[str(written["action"])]


def _skill_name(text: str, fallback: str) -> str:
    name: Any = None
    if text.startswith("---"):
        parts = text.split("---", 2)
        if len(parts) == 3:
            with contextlib.suppress(yaml.YAMLError):
                front = yaml.safe_load(parts[1])
                if isinstance(front, dict):
                    name = front.get("name")
    chosen: str = name if isinstance(name, str) else fallback
    if not SKILL_NAME.match(chosen) or len(chosen) > 64:
        raise CliError(
            f"the server sent a skill named {chosen!r}, which is not a valid skill folder name",
            EXIT_PROBLEM,
            code="skill_name_invalid",
        )
    return chosen


def write_skill(
    directory: Path, slug: str, installation: dict[str, Any], text: str, force: bool
) -> dict[str, Any]:
    """Write DIR/<name>/SKILL.md. DIR/.atlilith.json remembers the hash of what we wrote, so an
    update replaces our own old copy but never a file the user edited (unless --force)."""
    name = _skill_name(text, slug)
    target = directory / name / "SKILL.md"
    manifest_path = directory / SKILLS_MANIFEST
    manifest: dict[str, Any] = {"skills": {}}
    with contextlib.suppress(FileNotFoundError, ValueError):
        loaded = json.loads(manifest_path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict) and isinstance(loaded.get("skills"), dict):
            manifest = loaded
    new_hash = hashlib.sha256(text.encode()).hexdigest()
    recorded = (manifest["skills"].get(name) or {}).get("sha256")
    action = "created"
    if target.exists():
        current_hash = hashlib.sha256(target.read_bytes()).hexdigest()
        if current_hash == new_hash:
            action = "unchanged"
        elif current_hash == recorded:
            action = "updated"
        elif force:
            action = "overwritten"
        else:
            action = "kept"
    result = {"name": name, "path": str(target), "action": action, "sha256": new_hash}
    if action == "kept":
        return result
    if action != "unchanged":
        target.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(target, text)
    manifest["skills"][name] = {
        "component": slug,
        "version": installation.get("version"),
        "sha256": new_hash,
    }
    _atomic_write(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return result


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise


@handled
def search(
    query: Annotated[str | None, typer.Argument(help="Words to look for; omit to list everything.")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="`builtin` or `peer`.")] = None,
    limit: LimitOpt = 20,
    cursor: CursorOpt = None,
    org: OrgOpt = None,
    server: ServerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Search the registry: components, what they offer, and whether your context has them."""
    out = Output(json_output)
    with connect(server, org) as api:
        page = api.get_json("/v1/registry", {"q": query, "kind": kind, "limit": limit, "cursor": cursor})
    table = Table()
    for col in ("slug", "name", "kind", "version", "installed", "summary"):
        table.add_column(col, overflow="fold" if col == "summary" else "ellipsis")
    show_page(
        out, page, table, _component_row, empty="No component matches." if query else "The registry is empty."
    )


def _component_row(c: dict[str, Any]) -> list[str]:
    summary = (c.get("description") or "").strip().splitlines()
    return [
        c["slug"],
        c.get("name") or "",
        c.get("kind") or "",
        c.get("version") or "",
        "yes" if c.get("installed") else "no",
        _short(summary[0] if summary else "", 80),
    ]


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
