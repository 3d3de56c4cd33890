"""The constraint is the guarantee: raw SQL as a superuser (no service layer, no RLS) still can't
double-book a provider. (Models vs migration: tests/test_setup.py compares every schema.)"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from core.config import Settings
from core.db import asyncpg_url


async def test_the_exclusion_constraint_refuses_overlaps_from_any_door(settings: Settings) -> None:
    """Raw INSERTs as a superuser (no service layer, no RLS): overlapping active bookings of one
    provider are refused across tenants; buffers count; inactive states don't block."""
    engine = create_async_engine(asyncpg_url(settings.database_url or ""))
    person, org_person = uuid.uuid4(), uuid.uuid4()
    service = uuid.uuid4()
    t0 = dt.datetime(2031, 3, 3, 9, tzinfo=dt.UTC)

    async def insert(
        conn: AsyncConnection,
        start: dt.datetime,
        end: dt.datetime,
        status: str = "confirmed",
        before: int = 0,
        after: int = 0,
        owner: uuid.UUID | None = None,
    ) -> None:
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
