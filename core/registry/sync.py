"""Built-ins: the start-up sync that makes the registry equal to what the running code serves."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select

from core import __version__
from core.observability import get_logger
from core.registry.models import Component as ComponentRow
from core.registry.presenters import search_text, tools_hash
from core.registry.queries import record_version
from core.registry.schemas import (
    ComponentSpec,
    SyncReport,
)
from core.uow import UnitOfWork
from core.utilities import utcnow

log = get_logger("atlilith.registry")


# Any constant: serialises concurrent syncs (two processes starting at once).
_SYNC_LOCK = 0x7265_6769_7374_7279


_VERSION = re.compile(r"v?(\d+(?:\.\d+)*)(.*)")


def version_key(version: str | None) -> tuple[tuple[int, ...], int, str]:
    """Orders the package versions that wrote registry entries: 0.10.0 after 0.9.1, 1.0 equal
    to 1.0.0, a pre-release (0.2.0rc1) before its release, a local label (+abc) ignored. None
    or an unreadable version (entries from before versions were recorded) sorts first."""
    match = _VERSION.fullmatch((version or "").strip().split("+", 1)[0])
    if match is None:
        return ((), 0, "")
    release = tuple(int(part) for part in match.group(1).split("."))
    while len(release) > 1 and release[-1] == 0:
        release = release[:-1]
    pre = match.group(2).lstrip(".-_")
    return (release, 0 if pre else 1, pre)


async def sync_builtins(
    uow: UnitOfWork, specs: list[ComponentSpec], *, writer: str = __version__
) -> SyncReport:
    """Make the built-in entries equal to `specs` (what this process serves, at package
    version `writer`). Idempotent and safe when several processes start at once: a
    transaction-scoped advisory lock serialises them, and an unchanged entry is not written at
    all. Safe across versions during a rolling deploy: each entry records the version that wrote
    it, and an entry a newer version wrote is left as it is (never downgraded, never retired),
    so the registry converges on the newest code. A built-in no longer served is retired
    (hidden), not deleted, so its installations survive a rollback of the code."""
    await uow.session.execute(select(func.pg_advisory_xact_lock(_SYNC_LOCK)))
    existing = {
        c.slug: c
        for c in (
            await uow.session.execute(select(ComponentRow).where(ComponentRow.kind == "builtin"))
        ).scalars()
    }
    mine = version_key(writer)
    report = SyncReport()
    now = utcnow()
    for spec in sorted(specs, key=lambda s: s.slug):
        values, digest = _entry(spec, writer)
        row = existing.pop(spec.slug, None)
        if row is None:
            row = ComponentRow(id=uuid.uuid4(), slug=spec.slug, kind="builtin", **values)
            uow.session.add(row)
            await uow.session.flush()
            report.created.append(spec.slug)
        elif version_key(row.written_by) > mine:
            report.kept_newer.append(spec.slug)
            continue
        elif any(getattr(row, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(row, k, v)
            row.updated_at = now
            report.changed.append(spec.slug)
        else:
            report.unchanged.append(spec.slug)
            continue
        await record_version(uow, row.id, spec.version, digest)
    _retire_unserved(existing.values(), report, writer=writer, now=now)
    await uow.session.flush()
    if report.created or report.changed or report.retired:
        log.info("registry_synced", created=report.created, changed=report.changed, retired=report.retired)
    if report.kept_newer:
        log.info("registry_newer_kept", writer=writer, kept=report.kept_newer)
    return report


def _entry(spec: ComponentSpec, writer: str) -> tuple[dict[str, Any], str]:
    """The columns of a built-in's row as `spec` describes it, and its tools hash."""
    actions = [a.model_dump() for a in spec.actions]
    tools = [t.model_dump(exclude={"definition"}) for t in spec.tools]
    digest = tools_hash([t.definition or t.model_dump(exclude={"definition"}) for t in spec.tools])
    values: dict[str, Any] = {
        "name": spec.name,
        "version": spec.version,
        "availability": spec.availability,
        "description": spec.description,
        "toolset": spec.toolset,
        "actions": actions,
        "tools": tools,
        "scopes": sorted(spec.scopes),
        "skill_name": spec.skill_name,
        "skill_text": spec.skill_text,
        "tools_hash": digest,
        "search_text": search_text(actions, tools),
        "retired_at": None,
        "written_by": writer,
    }
    return values, digest


def _retire_unserved(
    rows: Iterable[ComponentRow], report: SyncReport, *, writer: str, now: dt.datetime
) -> None:
    """Hide the built-ins this process no longer serves, unless a newer version wrote them."""
    mine = version_key(writer)
    for row in rows:
        if row.retired_at is not None:
            continue
        if version_key(row.written_by) > mine:
            report.kept_newer.append(row.slug)  # a newer version serves it; this one predates it
            continue
        row.retired_at = now
        row.written_by = writer
        report.retired.append(row.slug)
