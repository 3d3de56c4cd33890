"""A victim with data in every feature, and markers that must never reach anyone else.

Each feature adds a module `tests/support/worlds/<feature>.py` with:
  async def build(client, victim) -> None   create the victim's data; fill victim.refs/markers/ids
  async def snapshot(client, victim) -> dict  what the victim sees of it (must not change)
  BODIES: {(METHOD, "/v1/path/{param}"): lambda victim: json body, or None to skip the route}
  ARGS: {"mcp_argument_name": lambda victim: value}   values for MCP tool arguments
The generic tests in tests/servers/test_isolation.py then attack every route and every tool.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
import uuid
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import httpx

from tests.conftest import Account, make_org, signup, slug


@dataclass
class Victim:
    person: Account
    org: str
    org_id: str
    # path parameter / tool argument name -> the victim's values for it (every one is tried)
    refs: dict[str, list[str]] = field(default_factory=dict)
    # strings that must never appear in anything another tenant receives
    markers: set[str] = field(default_factory=set)
    # ids of the victim's rows (raw-SQL wall-2 checks look for them in every table)
    ids: set[uuid.UUID] = field(default_factory=set)
    secret: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def add(self, ref: str, value: str, *, marker: bool = True) -> str:
        self.refs.setdefault(ref, []).append(value)
        if marker:
            self.markers.add(value)
        with contextlib.suppress(ValueError):
            self.ids.add(uuid.UUID(value))
        return value


async def created(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], headers: dict[str, str]
) -> dict[str, Any]:
    """POST `body` to `path` as the victim; asserted 201, the created object."""
    r = await client.post(path, json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def worlds() -> list[ModuleType]:
    import tests.support.worlds as pkg

    return [
        importlib.import_module(f"{pkg.__name__}.{m.name}")
        for m in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name)
    ]


async def build_victim(client: httpx.AsyncClient) -> Victim:
    a = await signup(client, "victim")
    org = await make_org(client, a, "vorg")
    org_id = (await client.get(f"/v1/orgs/{org}", headers=a.h())).json()["id"]
    # Person ids and slugs are handles (anyone may add a person to an org by slug); emails,
    # the data and its ids are what must never cross.
    v = Victim(person=a, org=org, org_id=org_id, markers={a.email, org_id})
    v.refs["slug"] = [org]
    v.refs["person"] = [a.slug]
    v.ids |= {uuid.UUID(a.id), uuid.UUID(org_id)}
    for world in worlds():
        await world.build(client, v)
    v.markers.add(v.secret)
    return v


def bodies() -> dict[tuple[str, str], Any]:
    merged: dict[tuple[str, str], Any] = {}
    for world in worlds():
        merged.update(getattr(world, "BODIES", {}))
    return merged


def tool_args() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for world in worlds():
        merged.update(getattr(world, "ARGS", {}))
    return merged


def leaked(v: Victim, text: str) -> set[str]:
    return {m for m in v.markers if m in text}


async def snapshot(client: httpx.AsyncClient, v: Victim) -> dict[str, object]:
    """What the victim can see of their own data, to prove attacks changed nothing."""
    state: dict[str, object] = {}
    for world in worlds():
        state[world.__name__] = await world.snapshot(client, v)
    return state


def new_slug() -> str:
    return slug("x")
