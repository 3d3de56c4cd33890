"""Tool lists that change: the one event every door's change emits, and who it concerns.

Whatever changes the tools a caller may see — an install, an uninstall or a new config in a
context; a person joining, leaving or changing role in an org; an org deleted; a person
suspended, reactivated, promoted or demoted — calls `tools_changed` from the core operation
itself, so REST, MCP, the CLI and the admin door are covered alike. The event names the
affected persons and orgs (ids only). A handler (`core.registry.handlers`) broadcasts it to
every process with `pg_notify` on `CHANNEL`; each MCP server process then tells the sessions
whose caller `affected` picks that their tool list changed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from sqlalchemy import select

from core.tenancy.models import OrgMember
from core.uow import UnitOfWork

__all__ = [
    "CHANNEL",
    "TOOLS_CHANGED",
    "Caller",
    "ToolsChange",
    "affected",
    "context_tools_changed",
    "tools_changed",
]

TOOLS_CHANGED = "registry/tools.changed"
CHANNEL = "atlilith_tools_changed"
# PostgreSQL refuses a NOTIFY payload of 8000 bytes or more; leave room for the envelope.
_MAX_PAYLOAD = 7900


def tools_changed(
    uow: UnitOfWork,
    reason: str,
    *,
    persons: Iterable[uuid.UUID] = (),
    orgs: Iterable[uuid.UUID] = (),
) -> uuid.UUID:
    """Record, in the caller's transaction, that the tool lists of `persons` (whatever context
    they act in) and of everyone who can act in `orgs` may have changed. `reason` is the
    operation, for logs (`installation.created`, `org_member.removed`, ...)."""
    return uow.emit(
        TOOLS_CHANGED,
        {
            "reason": reason,
            "person_ids": sorted({str(p) for p in persons}),
            "org_ids": sorted({str(o) for o in orgs}),
        },
    )


def context_tools_changed(
    uow: UnitOfWork, reason: str, person_id: uuid.UUID, org_id: uuid.UUID | None
) -> uuid.UUID:
    """A change to what one context installed: the person's own context concerns that person;
    an org's concerns everyone who can act in the org."""
    if org_id is None:
        return tools_changed(uow, reason, persons=[person_id])
    return tools_changed(uow, reason, orgs=[org_id])


@dataclass(frozen=True)
class ToolsChange:
    """One change as every process hears it. `everyone`: the ids did not fit in a notice,
    so every session is told (a needless refetch is harmless; a missed change is not)."""

    event_id: str
    persons: frozenset[uuid.UUID]
    orgs: frozenset[uuid.UUID]
    everyone: bool = False

    @classmethod
    def from_event_data(cls, event_id: uuid.UUID, data: dict[str, object]) -> ToolsChange:
        return cls(str(event_id), _ids(data.get("person_ids")), _ids(data.get("org_ids")))

    def to_notice(self) -> str:
        payload = json.dumps(
            {"e": self.event_id, "p": sorted(map(str, self.persons)), "o": sorted(map(str, self.orgs))},
            separators=(",", ":"),
        )
        if len(payload.encode()) > _MAX_PAYLOAD:
            payload = json.dumps({"e": self.event_id, "all": True}, separators=(",", ":"))
        return payload

    @classmethod
    def from_notice(cls, payload: str) -> ToolsChange | None:
        """None for a payload that is not ours (anyone may NOTIFY a channel)."""
        try:
            raw = json.loads(payload)
            if not isinstance(raw, dict):
                return None
            return cls(str(raw.get("e", "")), _ids(raw.get("p")), _ids(raw.get("o")), raw.get("all") is True)
        except (ValueError, TypeError):
            return None


def _ids(values: object) -> frozenset[uuid.UUID]:
    if not isinstance(values, list):
        return frozenset()
    found: set[uuid.UUID] = set()
    for value in values:
        try:
            found.add(uuid.UUID(str(value)))
        except ValueError:
            continue
    return frozenset(found)


@dataclass(frozen=True)
class Caller:
    """Who a live MCP session acts for: the person, and the org its API key is bound to (None:
    the person's own context and every org they belong to, as `listed_toolsets` lists them)."""

    person_id: uuid.UUID
    bound_org: uuid.UUID | None = None


async def affected(uow: UnitOfWork, change: ToolsChange, callers: Collection[Caller]) -> set[Caller]:
    """The callers whose tool list `change` may alter: the persons it names, those bound to an
    org it names, and members (now) of an org it names. One query at most; `uow` in system mode
    (memberships of other tenants are read)."""
    if change.everyone:
        return set(callers)
    found = {
        c
        for c in callers
        if c.person_id in change.persons or (c.bound_org is not None and c.bound_org in change.orgs)
    }
    rest = {c for c in callers if c not in found and c.bound_org is None}
    if change.orgs and rest:
        members = set(
            (
                await uow.session.execute(
                    select(OrgMember.person_id).where(
                        OrgMember.org_id.in_(change.orgs),
                        OrgMember.person_id.in_({c.person_id for c in rest}),
                    )
                )
            ).scalars()
        )
        found |= {c for c in rest if c.person_id in members}
    return found
