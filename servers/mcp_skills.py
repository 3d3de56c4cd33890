"""Skills over MCP, per the Skills extension (SEP-2640, extension `io.modelcontextprotocol/skills`,
https://modelcontextprotocol.io/seps/2640-skills-extension).

Each file of `skills/<name>/` is a resource at `skill://<name>/<file>`; the skill itself is
`skill://<name>/SKILL.md`, named and described by its own frontmatter. `skills/list` answers
each skill's entry (verbatim frontmatter, every file with its sha256 digest and size) and
`skills/get` one entry by URI. A skill belongs to the component (toolset) of the same name, and
a caller sees only the skills of the toolsets it may use (`AtlilithServer.usable_toolsets`):
the others answer exactly like a URI nothing is served at, so nothing leaks. Skills of no
component (`atlilith-cli`, for a shell without MCP) are not served here.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.extension import Extension, MethodBinding, ResourceBinding
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp.server.mcpserver.resources import BinaryResource, TextResource
from mcp.server.mcpserver.resources import Resource as SkillFileResource
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INVALID_PARAMS,
    CacheableResult,
    PaginatedRequestParams,
    PaginatedResult,
    RequestParams,
    Resource,
    ResultType,
)
from pydantic import BaseModel

from servers import skills as skill_files

__all__ = [
    "EXTENSION",
    "GetSkillRequestParams",
    "GetSkillResult",
    "ListSkillsResult",
    "ServedSkill",
    "SkillEntry",
    "SkillsExtension",
    "served_skills",
    "skill_uri",
]

EXTENSION = "io.modelcontextprotocol/skills"
SCHEME = "skill://"

UsableToolsets = Callable[[], Awaitable[set[str]]]


def skill_uri(name: str, file: str = "SKILL.md") -> str:
    return f"{SCHEME}{name}/{file}"


class SkillFile(BaseModel):
    uri: str
    digest: str
    size: int


class SkillEntry(BaseModel):
    """A `Skill` of the extension: what a host builds its registry and approvals from."""

    uri: str
    frontmatter: dict[str, Any]
    resources: list[SkillFile]


class ListSkillsResult(PaginatedResult, CacheableResult):
    # The SDK's cache defaults (ttl 0, private) are right: the list differs per caller and
    # changes with every install.
    skills: list[SkillEntry]
    result_type: ResultType = "complete"


class GetSkillRequestParams(RequestParams):
    uri: str


class GetSkillResult(CacheableResult):
    skill: SkillEntry
    result_type: ResultType = "complete"


@dataclass(frozen=True)
class ServedSkill:
    name: str
    toolset: str
    entry: SkillEntry
    resources: tuple[SkillFileResource, ...]

    @property
    def uri(self) -> str:
        return self.entry.uri


def served_skills(toolsets: Iterable[str], root: Path = skill_files.SKILLS_DIR) -> dict[str, ServedSkill]:
    """The skills of `toolsets` found under `root`, by the URI of their SKILL.md. Read once:
    the bytes served are the bytes digested."""
    found = skill_files.skills(root)
    served: dict[str, ServedSkill] = {}
    for toolset in sorted(set(toolsets) & set(found)):
        skill = found[toolset]
        folder = skill.path.parent
        files: list[SkillFile] = []
        resources: list[SkillFileResource] = []
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = path.relative_to(folder).as_posix()
            raw = path.read_bytes()
            uri = skill_uri(skill.name, rel)
            files.append(
                SkillFile(uri=uri, digest=f"sha256:{hashlib.sha256(raw).hexdigest()}", size=len(raw))
            )
            if rel == "SKILL.md":
                resources.append(
                    TextResource(
                        uri=uri,
                        name=skill.name,
                        title=f"Skill: {skill.name}",
                        description=str(skill.meta["description"]),
                        mime_type="text/markdown",
                        text=raw.decode("utf-8"),
                    )
                )
            else:
                resources.append(_supporting_file(uri, rel, raw))
        entry = SkillEntry(uri=skill_uri(skill.name), frontmatter=dict(skill.meta), resources=files)
        served[entry.uri] = ServedSkill(skill.name, toolset, entry, tuple(resources))
    return served


def _supporting_file(uri: str, rel: str, raw: bytes) -> SkillFileResource:
    mime = mimetypes.guess_type(rel)[0]
    try:
        return TextResource(uri=uri, name=rel, mime_type=mime or "text/plain", text=raw.decode("utf-8"))
    except UnicodeDecodeError:
        return BinaryResource(uri=uri, name=rel, mime_type=mime or "application/octet-stream", data=raw)


class SkillsExtension(Extension):
    """Declares the extension, contributes every skill file as a resource and serves
    `skills/list` and `skills/get`. `usable` says which toolsets the current caller may use;
    the server's resource listing and reads ask `listed_resources` / `check_readable`."""

    identifier = EXTENSION

    def __init__(self, skills: dict[str, ServedSkill], usable: UsableToolsets) -> None:
        self._skills = skills
        self._usable = usable
        self._owner = {str(r.uri): s for s in skills.values() for r in s.resources}

    def resources(self) -> Sequence[ResourceBinding]:
        return [ResourceBinding(r) for s in self._skills.values() for r in s.resources]

    def methods(self) -> Sequence[MethodBinding]:
        return [
            MethodBinding("skills/list", PaginatedRequestParams, self._list),
            MethodBinding("skills/get", GetSkillRequestParams, self._get),
        ]

    async def visible(self) -> list[ServedSkill]:
        usable = await self._usable()
        return [s for s in self._skills.values() if s.toolset in usable]

    async def listed_resources(self, resources: list[Resource]) -> list[Resource]:
        """`resources/list` as this caller sees it: the SKILL.md of each skill it may use (a
        skill's other files stay readable by URI, as the extension's manifest lists them)."""
        shown = {s.uri for s in await self.visible()}
        return [r for r in resources if str(r.uri) not in self._owner or str(r.uri) in shown]

    async def check_readable(self, uri: str) -> None:
        """Refuse a read of a skill file the caller may not use, in the very words an unknown
        URI gets (`resources/read` answers -32602 either way)."""
        owner = self._owner.get(uri)
        if owner is not None and owner.uri not in {s.uri for s in await self.visible()}:
            raise ResourceNotFoundError(f"Unknown resource: {uri}")

    async def _list(
        self, ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams | None
    ) -> ListSkillsResult:
        return ListSkillsResult(skills=[s.entry for s in await self.visible()])

    async def _get(
        self, ctx: ServerRequestContext[Any, Any], params: GetSkillRequestParams
    ) -> GetSkillResult:
        for skill in await self.visible():
            if skill.uri == params.uri:
                return GetSkillResult(skill=skill.entry)
        raise MCPError(
            code=INVALID_PARAMS, message=f"No skill is served at {params.uri}", data={"uri": params.uri}
        )
