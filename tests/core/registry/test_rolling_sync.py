"""The start-up sync during a rolling deploy: two package versions start against one database;
the older never downgrades, retires or resurrects what the newer wrote, and restarts of one
version stay idempotent.

The syncs run with versions far ahead of the real one, so each test runs in one transaction
and rolls it back: the session's registry stays what the running code wrote."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core import __version__
from core import registry as service
from core.registry.models import Component, ComponentVersion
from core.registry.schemas import ComponentSpec, SyncReport, ToolData
from core.uow import Database, UnitOfWork
from servers.registry_sync import builtin_specs

OLD, NEW, NEWER = "90.4.0", "90.10.0", "91.0.0rc1"


class _Rollback(Exception):
    """Raised at the end of a test: its unit of work rolls back."""


def probe(version: str, description: str) -> ComponentSpec:
    return ComponentSpec(
        slug="zz-rolling-probe",
        name="Rolling probe",
        version=version,
        description=description,
        tools=[ToolData(name="probe_tool", description=description, definition={"name": description})],
    )


async def sync(uow: UnitOfWork, db: Database, writer: str, *extra: ComponentSpec) -> SyncReport:
    return await service.sync_builtins(uow, [*builtin_specs(db), *extra], writer=writer)


async def row(uow: UnitOfWork, slug: str = "zz-rolling-probe") -> Component:
    found = (await uow.session.execute(select(Component).where(Component.slug == slug))).scalar_one()
    await uow.session.refresh(found)
    return found


def test_versions_order_as_releases_do() -> None:
    key = service.version_key
    assert key("0.10.0") > key("0.9.1") > key("0.9") == key("0.9.0.0")
    assert key("1.0.0rc1") < key("1.0.0") < key("1.0.1.dev0")
    assert key("v2.1") == key("2.1.0+build.7") and key(None) < key("0.0.1") and key("garbage") == key(None)
    assert key(OLD) < key(NEW) < key(NEWER) and key(__version__) < key(OLD)


async def test_an_older_version_never_downgrades_what_a_newer_one_wrote(db: Database) -> None:
    names = {s.slug for s in builtin_specs(db)}
    with pytest.raises(_Rollback):
        async with db.system() as uow:
            first = await sync(uow, db, NEW, probe("2.0.0", "new"))
            assert first.created == ["zz-rolling-probe"] and set(first.changed) == names
            new = await row(uow)
            # The session maps one object per row: keep what it said now, not the object.
            new_id, new_hash, new_updated = new.id, new.tools_hash, new.updated_at
            assert (new.version, new.written_by, new.description) == ("2.0.0", NEW, "new")

            # The old version restarts mid-deploy, serving its own (older) entry: nothing moves.
            old = await sync(uow, db, OLD, probe("1.0.0", "old"))
            assert old.changed == old.created == old.retired == []
            assert set(old.kept_newer) == names | {"zz-rolling-probe"}
            kept = await row(uow)
            assert (kept.version, kept.written_by, kept.description, kept.tools_hash) == (
                "2.0.0",
                NEW,
                "new",
                new_hash,
            )
            # ...and one that does not serve the newer component at all does not retire it.
            unaware = await sync(uow, db, OLD)
            assert unaware.retired == [] and "zz-rolling-probe" in unaware.kept_newer
            assert (await row(uow)).retired_at is None
            history = (
                await uow.session.execute(
                    select(ComponentVersion.version).where(ComponentVersion.component_id == new_id)
                )
            ).scalars()
            assert list(history) == ["2.0.0"]  # the old version recorded nothing

            # Restarts of the new version are idempotent: nothing written.
            again = await sync(uow, db, NEW, probe("2.0.0", "new"))
            assert again.created == again.changed == again.retired == again.kept_newer == []
            assert set(again.unchanged) == names | {"zz-rolling-probe"}
            assert (await row(uow)).updated_at == new_updated

            # A newer version drops the component: retired, and the old one cannot bring it back.
            dropped = await sync(uow, db, NEWER)
            assert dropped.retired == ["zz-rolling-probe"]
            back = await sync(uow, db, NEW, probe("2.0.0", "new"))
            assert "zz-rolling-probe" in back.kept_newer and back.changed == []
            retired = await row(uow)
            assert retired.retired_at is not None and retired.written_by == NEWER
            raise _Rollback


async def test_a_newer_version_takes_over_entries_an_older_one_wrote(db: Database) -> None:
    with pytest.raises(_Rollback):
        async with db.system() as uow:
            await sync(uow, db, OLD, probe("1.0.0", "old"))
            upgraded = await sync(uow, db, NEW, probe("2.0.0", "new"))
            assert "zz-rolling-probe" in upgraded.changed and upgraded.kept_newer == []
            now = await row(uow)
            assert (now.version, now.written_by, now.description) == ("2.0.0", NEW, "new")
            # The same version with other content (a dev edit without a version bump) still writes.
            edited = await sync(uow, db, NEW, probe("2.0.0", "edited"))
            assert edited.changed == ["zz-rolling-probe"]
            assert (await row(uow)).description == "edited"
            raise _Rollback
