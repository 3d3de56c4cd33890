"""Every toolset has a skill, valid per the Agent Skills spec, naming only tools that exist;
`atlilith skills export` writes a Claude Code plugin marketplace."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from core.uow import Database
from servers import skills as skill_files
from servers.cli import cli
from servers.mcp import toolsets
from tools.base import ToolRuntime

# A backticked identifier shaped like a tool name: `word_word[_word...]`.
TOOL_REF = re.compile(r"`([a-z][a-z0-9]*(?:_[a-z0-9]+)+)`")


def test_every_toolset_has_a_valid_skill(db: Database) -> None:
    found = skill_files.skills()
    names = {ts.name for ts in toolsets(ToolRuntime(db))}
    assert names <= set(found), f"toolsets without skills/<name>/SKILL.md: {sorted(names - set(found))}"
    for name, skill in found.items():
        assert skill_files.problems(skill) == [], (name, skill_files.problems(skill))


def test_skills_mention_only_tools_that_exist(db: Database) -> None:
    tools = {t.name for ts in toolsets(ToolRuntime(db)) for t in ts.tools}
    # Identifiers that look like tool names but are fields, codes or values the skills explain.
    mentioned: dict[str, set[str]] = {}
    for name, skill in skill_files.skills().items():
        refs = {r for r in TOOL_REF.findall(skill.body) if r.split("_", 1)[0] in _prefixes(tools)}
        mentioned[name] = refs
        unknown = sorted(refs - tools)
        assert unknown == [], f"skill {name} mentions tools that do not exist: {unknown}"
    assert sum(len(v) for v in mentioned.values()) >= 20  # the check really looked at tool names


def _prefixes(tools: set[str]) -> set[str]:
    return {t.split("_", 1)[0] for t in tools}


def test_the_validator_catches_bad_skills(tmp_path: Path) -> None:
    def make(folder: str, text: str, extra: dict[str, str] | None = None) -> skill_files.Skill:
        d = tmp_path / folder
        d.mkdir(parents=True)
        (d / "SKILL.md").write_text(text)
        for rel, content in (extra or {}).items():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_text(content)
        return skill_files.read_skill(d / "SKILL.md")

    good = make(
        "good-one",
        "---\nname: good-one\ndescription: Does x. Use when y.\n---\nSee [ref](ref.md).\n",
        {"ref.md": "r"},
    )
    assert skill_files.problems(good) == []
    cases = {
        "Bad--Name": "---\nname: Bad--Name\ndescription: d\n---\nbody\n",
        "other": "---\nname: not-other\ndescription: d\n---\nbody\n",
        "nodesc": "---\nname: nodesc\ndescription: ''\n---\nbody\n",
        "long": "---\nname: long\ndescription: " + "d" * 1025 + "\n---\nbody\n",
        "huge": "---\nname: huge\ndescription: d\n---\n" + "line\n" * 600,
        "deep": "---\nname: deep\ndescription: d\n---\n[x](a/b/c.md)\n",
        "missing": "---\nname: missing\ndescription: d\n---\n[x](nope.md)\n",
        "escape": "---\nname: escape\ndescription: d\n---\n[x](../other/SKILL.md)\n",
    }
    for folder, text in cases.items():
        assert skill_files.problems(make(folder, text)) != [], folder


def test_skills_export_writes_a_plugin_marketplace(tmp_path: Path) -> None:
    out = tmp_path / "market"
    result = CliRunner().invoke(cli, ["skills", "export", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / ".claude-plugin" / "marketplace.json").read_text())
    assert manifest["name"] == "atlilith" and manifest["owner"]["name"]
    plugins = {p["name"]: p for p in manifest["plugins"]}
    assert set(skill_files.skills()) <= set(plugins)
    for name, plugin in plugins.items():
        assert plugin["source"].startswith("./")
        root = out / plugin["source"]
        meta = json.loads((root / ".claude-plugin" / "plugin.json").read_text())
        assert meta["name"] == name and meta["description"] == plugin["description"]
        text = (root / "skills" / name / "SKILL.md").read_text()
        assert text == skill_files.skills()[name].text
    again = CliRunner().invoke(cli, ["skills", "export", str(out)])  # re-export overwrites cleanly
    assert again.exit_code == 0, again.output
