"""The demo data `./run dev` adds: skipped with `--no-demo`, marked as demo, idempotent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from core.config import Settings
from core.demo import seed_demo_data
from core.seed import seed
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
  (SELECT count(DISTINCT COALESCE(org_id, person_id)) FROM analytics.events WHERE source = 'demo') AS contexts
"""


async def _counts(db: Database) -> dict[str, int]:
    async with db.system() as uow:
        return dict((await uow.session.execute(text(COUNTS))).mappings().one())


async def test_seed_no_demo_adds_none_and_the_demo_seed_is_idempotent(
    db: Database, settings: Settings
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "ATLILITH_SEED_PASSWORD": SEED_PASSWORD,
        "ATLILITH_PASSWORD_HASH_PROFILE": "cheapest",
        "ATLILITH_LOG_LEVEL": "warning",
    }
    cli = Path(sys.executable).parent / "atlilith"
    run = subprocess.run(
        [str(cli), "seed", "--no-demo"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert "Demo data" not in run.stderr
    assert set((await _counts(db)).values()) == {0}

    await seed(db, SEED_PASSWORD)
    first = await seed_demo_data(db)
    assert first.contexts == ["transquinnftw", "cocotte"]
    after_first = await _counts(db)
    # Both contexts: three threads each with one pending agent draft, a service, bookings, events.
    assert after_first["threads"] == 6 and after_first["drafts"] == 2
    assert after_first["services"] == 2 and after_first["bookings"] == first.bookings >= 8
    assert after_first["events"] == first.events > 500 and after_first["contexts"] == 2

    again = await seed_demo_data(db)
    assert (again.threads, again.drafts, again.services, again.bookings, again.events) == (0, 0, 0, 0, 0)
    assert await _counts(db) == after_first
