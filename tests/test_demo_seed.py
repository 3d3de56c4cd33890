"""The demo data `./run dev` adds: skipped with `--no-demo`, marked as demo, idempotent."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from core.config import Settings
from core.demo import seed_demo_data
from core.messaging.conversation import client_link
from core.messaging.drafts import approve_draft, list_drafts
from core.messaging.schemas import DraftApproveIn
from core.migrate import create_database, drop_database, migrate
from core.opener import open_context
from core.pagination import PageRequest
from core.relay import Relay
from core.seed import seed
from core.tenancy.schemas import LoginIn
from core.tenancy.sessions import Device, login
from core.uow import Database

ROOT = Path(__file__).resolve().parent.parent
SEED_PASSWORD = "demo-seed-password"

COUNTS = """
SELECT
  (SELECT count(*) FROM messaging.threads WHERE 'demo' = ANY(labels)) AS threads,
  (SELECT count(*) FROM messaging.drafts d JOIN messaging.threads t ON t.id = d.thread_id
    WHERE 'demo' = ANY(t.labels) AND d.status = 'pending' AND d.created_by_kind = 'agent') AS drafts,
  (SELECT count(*) FROM bookings.services WHERE name LIKE '%(demo)') AS services,
  (SELECT count(*) FROM bookings.bookings WHERE notes = 'demo') AS bookings,
  (SELECT count(*) FROM analytics.events WHERE source = 'demo') AS events,
  (SELECT count(DISTINCT COALESCE(org_id, person_id)) FROM analytics.events WHERE source = 'demo') AS contexts,
  (SELECT count(*) FROM billing.jobs j JOIN platform.orgs o ON o.id = j.org_id WHERE o.slug = 'cocotte') AS org_jobs
"""


async def _counts(db: Database) -> dict[str, int]:
    async with db.system() as uow:
        return dict((await uow.session.execute(text(COUNTS))).mappings().one())


@pytest.fixture
async def fresh(settings: Settings) -> AsyncIterator[Settings]:
    """A database of its own: other tests seed the shared one's cocotte with demo data."""
    name = f"atl_demo_{secrets.token_hex(3)}"
    await create_database(settings.database_url or "", name)
    url = make_url(settings.database_url or "").set(database=name).render_as_string(hide_password=False)
    s = settings.model_copy(update={"database_url": url})
    await migrate(s)
    try:
        yield s
    finally:
        await drop_database(settings.database_url or "", name)


def _cli(s: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": s.database_url or "",
        "ATLILITH_SEED_PASSWORD": SEED_PASSWORD,
        "ATLILITH_PASSWORD_HASH_PROFILE": "cheapest",
        "ATLILITH_LOG_LEVEL": "warning",
    }
    cli = Path(sys.executable).parent / "atlilith"
    run = subprocess.run([str(cli), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    return run


async def test_seed_no_demo_adds_none_and_the_demo_seed_is_idempotent(fresh: Settings) -> None:
    assert "Demo data" not in _cli(fresh, "seed", "--no-demo").stderr
    db = Database(fresh)
    try:
        await _demo_then_again(db)
        # `./run dev` on every start: the CLI finds every part in place and adds nothing.
        assert "Demo data" not in _cli(fresh, "seed").stderr
        assert (await _counts(db))["threads"] == 6
    finally:
        await db.dispose()


async def _demo_then_again(db: Database) -> None:
    assert set((await _counts(db)).values()) == {0}
    await seed(db, SEED_PASSWORD)
    first = await seed_demo_data(db)
    assert first.contexts == ["transquinnftw", "cocotte"]
    after_first = await _counts(db)
    # Both contexts: three threads each with one pending agent draft, a service, bookings, events.
    assert after_first["threads"] == 6 and after_first["drafts"] == 2
    assert after_first["services"] == 2 and after_first["bookings"] == first.bookings >= 8
    assert after_first["events"] == first.events > 500 and after_first["contexts"] == 2

    # Jobs cost credits: the seeded person and org start with some (ATLILITH_SEED_CREDITS), so
    # the first start runs a few identity jobs in each context, and never again.
    assert first.jobs == 6 and after_first["org_jobs"] == 3
    again = await seed_demo_data(db)
    assert (again.threads, again.drafts, again.services, again.bookings, again.events, again.jobs) == (0,) * 6
    assert await _counts(db) == after_first
    await Relay(db).drain()  # the dev server's relay runs them
    async with db.system() as uow:
        org_id = (
            await uow.session.execute(text("SELECT id FROM platform.orgs WHERE slug = 'cocotte'"))
        ).scalar_one()
        statuses = (
            await uow.session.execute(
                text("SELECT status FROM billing.jobs WHERE org_id = :o"), {"o": org_id}
            )
        ).scalars()
        assert set(statuses) == {"succeeded"}
    assert (await seed_demo_data(db)).jobs == 0
    assert (await _counts(db)) == after_first
    await _the_agents_draft_is_approved_and_sent(db)


async def _the_agents_draft_is_approved_and_sent(db: Database) -> None:
    """What a newcomer does first in the portal: approve the agent's pending draft. A fresh
    `./run dev` configures no channel peer, so the demo's threads must be deliverable without one."""
    signed_in = await login(db, LoginIn(login="transquinnftw", password=SEED_PASSWORD), Device())
    async with db.uow() as uow:
        ctx = await open_context(uow, signed_in.access_token, "cocotte")
        pending = (await list_drafts(ctx, uow, PageRequest())).items
        assert len(pending) == 1
        sent = await approve_draft(ctx, uow, pending[0].id, DraftApproveIn())
        assert sent.message.direction == "out" and sent.message.body == pending[0].body
        link = await client_link(ctx, uow, pending[0].thread_id)
        assert link.url


@pytest.mark.parametrize("days", [1, 2, 7])
def test_the_demo_picks_bookings_that_never_overlap_whatever_slots_are_left(days: int) -> None:
    """The slots are starts free before any demo booking, every quarter of an hour for a
    60-minute service: picked as they came, two could overlap (the seed then failed with a
    conflict at some hours of the day). Picked apart, none does, for any draw."""
    import datetime as dt
    import itertools
    import random

    from core.bookings.schemas import SlotOut
    from core.demo import _apart, _spread

    start = dt.datetime(2026, 12, 8, 9, tzinfo=dt.UTC)
    slots = [
        SlotOut(start=s, end=s + dt.timedelta(minutes=60), providers=["p"])
        for d in range(days)
        for q in range(33)  # 09:00 to 17:00, every 15 minutes
        if (s := start + dt.timedelta(days=d, minutes=15 * q))
    ]
    gap = dt.timedelta(minutes=15)
    for draw in range(200):
        picked = _spread(_apart(slots, gap), 8, random.Random(draw))
        assert picked == sorted(picked, key=lambda s: s.start)
        assert all(b.start >= a.end + gap for a, b in itertools.pairwise(picked)), draw
        assert len(picked) == min(8, 7 * days)  # 7 apart a day (09:00, 10:15, ... 16:30)
