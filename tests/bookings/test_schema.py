"""The bookings schema: models match the migration, and the constraint is the guarantee (raw SQL,
any role, no service layer)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from core.config import Settings
from core.db import Base, asyncpg_url
from core.features import load_models


def _schema_of(change: object) -> str | None:
    if isinstance(change, list):  # column-level changes come as a list of tuples
        return _schema_of(change[0])
    assert isinstance(change, tuple)
    for part in change[1:]:
        schema = getattr(part, "schema", None) or getattr(getattr(part, "table", None), "schema", None)
        if schema:
            return str(schema)
        if isinstance(part, str) and part in {"bookings", "platform"}:
            return part
    return None


async def test_bookings_models_match_the_migration(settings: Settings) -> None:
    """tests/test_setup.py compares the `platform` schema; this compares `bookings`."""
    load_models()
    engine = create_async_engine(asyncpg_url(settings.database_url or ""))

    def diff(conn: object) -> list[object]:
        ctx = MigrationContext.configure(
            conn,  # type: ignore[arg-type]
            opts={
                "include_schemas": True,
                "compare_type": True,
                "include_name": lambda name, type_, parent: type_ != "schema" or name == "bookings",
            },
        )
        # Other schemas are filtered out of the reflection, so their tables show up as "added":
        # keep only what concerns this schema.
        return [c for c in compare_metadata(ctx, Base.metadata) if _schema_of(c) == "bookings"]

    try:
        async with engine.connect() as conn:
            changes = await conn.run_sync(diff)
            tables = set(
                (
                    await conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'bookings'"))
                ).scalars()
            )
    finally:
        await engine.dispose()
    assert tables == {"services", "service_providers", "schedules", "bookings", "calendar_feeds"}
    assert changes == []


async def test_the_exclusion_constraint_refuses_overlaps_from_any_door(settings: Settings) -> None:
    """Raw INSERTs as a superuser (no service layer, no RLS): overlapping active bookings of one
    provider are refused across tenants; buffers count; inactive states don't block."""
    engine = create_async_engine(asyncpg_url(settings.database_url or ""))
    person, org_person = uuid.uuid4(), uuid.uuid4()
    service = uuid.uuid4()
    t0 = dt.datetime(2031, 3, 3, 9, tzinfo=dt.UTC)

    async def insert(conn, start, end, status="confirmed", before=0, after=0, owner=None):
        await conn.execute(
            text(
                "INSERT INTO bookings.bookings (id, service_id, provider_id, status, start_at, end_at,"
                " buffer_before_minutes, buffer_after_minutes, hold_expires_at, location_kind, person_id)"
                " VALUES (gen_random_uuid(), :s, :p, :st, :a, :b, :bb, :ba, :h, 'in_person', :owner)"
            ),
            {
                "s": service,
                "p": person,
                "st": status,
                "a": start,
                "b": end,
                "bb": before,
                "ba": after,
                "h": end if status == "held" else None,
                "owner": owner or person,
            },
        )

    try:
        async with engine.connect() as conn:
            await conn.execute(
                text(
                    "INSERT INTO platform.persons (id, slug, email, display_name) VALUES"
                    " (:a, :sa, :ea, 'A'), (:b, :sb, :eb, 'B')"
                ),
                {
                    "a": person,
                    "sa": f"x-{person.hex[:10]}",
                    "ea": f"{person}@example.com",
                    "b": org_person,
                    "sb": f"x-{org_person.hex[:10]}",
                    "eb": f"{org_person}@example.com",
                },
            )
            await conn.execute(
                text(
                    "INSERT INTO bookings.services (id, name, duration_minutes, person_id)"
                    " VALUES (:s, 'Cut', 60, :p)"
                ),
                {"s": service, "p": person},
            )
            await insert(conn, t0, t0 + dt.timedelta(hours=1), after=15)
            await conn.commit()
            # Back to back is fine without buffers; the 15 minute buffer after makes 10:00 overlap.
            for start, before, status in (
                (t0 + dt.timedelta(minutes=30), 0, "held"),
                (t0 + dt.timedelta(minutes=60), 0, "requested"),
                (t0 + dt.timedelta(minutes=75), 30, "confirmed"),
            ):
                with pytest.raises(IntegrityError, match="ex_bookings_no_overlap"):
                    await insert(conn, start, start + dt.timedelta(hours=1), status, before, owner=org_person)
                await conn.rollback()
            await insert(conn, t0 + dt.timedelta(minutes=75), t0 + dt.timedelta(minutes=135))
            await insert(conn, t0, t0 + dt.timedelta(hours=1), status="cancelled")
            await insert(conn, t0, t0 + dt.timedelta(hours=1), status="expired")
            await conn.commit()
            count = (
                await conn.execute(
                    text("SELECT count(*) FROM bookings.bookings WHERE provider_id = :p"), {"p": person}
                )
            ).scalar_one()
            assert count == 4
    finally:
        await engine.dispose()
