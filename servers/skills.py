"""Skills on disk (`skills/<name>/SKILL.md`): read, validate per the Agent Skills spec, export."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SKILLS_DIR = Path(__file__).resolve().parent.parent / "skills"
NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
MAX_BODY_LINES = 500
# [text](target) links; absolute URLs and anchors are not files.
LINK_RE = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


@dataclass(frozen=True)
class Skill:
    name: str
    description: str
    meta: dict[str, Any]
    body: str
    text: str
    path: Path


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    if not text.startswith("---\n"):
        raise ValueError("SKILL.md must start with a YAML front matter block (---)")
    end = text.find("\n---", 4)
    if end == -1:
        raise ValueError("the front matter block is not closed (---)")
    meta = yaml.safe_load(text[4:end]) or {}
    if not isinstance(meta, dict):
        raise ValueError("the front matter must be a mapping")
    body = text[end + 4 :].lstrip("\n")
    return meta, body


def read_skill(path: Path) -> Skill:
    text = path.read_text(encoding="utf-8")
    meta, body = split_front_matter(text)
    return Skill(
        name=str(meta.get("name", "")),
        description=" ".join(str(meta.get("description", "")).split()),
        meta=meta,
        body=body,
        text=text,
        path=path,
    )


def skills(root: Path = SKILLS_DIR) -> dict[str, Skill]:
    if not root.is_dir():
        return {}
    return {p.parent.name: read_skill(p) for p in sorted(root.glob("*/SKILL.md"))}


def problems(skill: Skill) -> list[str]:
    """What makes a skill invalid per the Agent Skills spec (empty list = valid)."""
    found: list[str] = []
    folder = skill.path.parent.name
    if not 1 <= len(skill.name) <= 64 or not NAME_RE.match(skill.name):
        found.append(f"name {skill.name!r}: 1-64 lowercase letters, digits and single hyphens")
    if skill.name != folder:
        found.append(f"name {skill.name!r} differs from its folder {folder!r}")
    if not 1 <= len(skill.description) <= 1024:
        found.append(f"description has {len(skill.description)} characters (1-1024)")
    lines = skill.body.count("\n") + 1
    if lines >= MAX_BODY_LINES:
        found.append(f"body has {lines} lines (under {MAX_BODY_LINES})")
    for target in LINK_RE.findall(skill.body):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        rel = target.split("#", 1)[0]
        if rel.startswith("/") or ".." in Path(rel).parts:
            found.append(f"link {target!r} must be relative, inside the skill folder")
        elif len(Path(rel).parts) > 2:
            found.append(f"link {target!r} is more than one level deep")
        elif not (skill.path.parent / rel).exists():
            found.append(f"link {target!r} points at a missing file")
    return found


def export_marketplace(out: Path, version: str, root: Path = SKILLS_DIR) -> list[str]:
    """Write a Claude Code plugin marketplace: `out/.claude-plugin/marketplace.json` listing one
    plugin per skill, each at `out/plugins/<name>/` with `.claude-plugin/plugin.json` and
    `skills/<name>/SKILL.md` (plus the files the skill links to). Returns the plugin names."""
    import json
    import shutil

    found = skills(root)
    bad = {name: problems(s) for name, s in found.items() if problems(s)}
    if bad:
        raise ValueError(f"invalid skills: {bad}")
    plugins: list[dict[str, Any]] = []
    for name, skill in found.items():
        plugin_dir = out / "plugins" / name
        target = plugin_dir / "skills" / name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(skill.path.parent, target)
        meta = {"name": name, "description": skill.description, "version": version}
        (plugin_dir / ".claude-plugin").mkdir(parents=True, exist_ok=True)
        (plugin_dir / ".claude-plugin" / "plugin.json").write_text(json.dumps(meta, indent=2) + "\n")
        plugins.append({**meta, "source": f"./plugins/{name}", "category": "atlilith"})
    manifest = {
        "name": "atlilith",
        "owner": {"name": "Atlilith"},
        "metadata": {"description": "Skills for agents working with Atlilith components", "version": version},
        "plugins": plugins,
    }
    (out / ".claude-plugin").mkdir(parents=True, exist_ok=True)
    (out / ".claude-plugin" / "marketplace.json").write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    )
    return [p["name"] for p in plugins]
