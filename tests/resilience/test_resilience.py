"""The resilience scenarios (benchmarks/resilience.py), bounded for the test suite: real server
processes on loopback, faults injected under write load, and every invariant checked."""

from __future__ import annotations

from pathlib import Path

from benchmarks import resilience
from core.config import Settings
from core.devserver import postmaster

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / ".atlilith" / "resilience-tests"


def admin_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    # The scenarios make their own databases on the session's server.
    return (
        make_url(settings.database_url or "").set(database="postgres").render_as_string(hide_password=False)
    )


async def test_kill_9_under_write_load_loses_nothing_acknowledged(settings: Settings) -> None:
    s = await resilience.kill9_under_load(admin_url(settings), DATA, seconds=1.5, writers=6)
    assert s.ok, resilience.render([s])
    assert s.acknowledged > 5 and s.found == s.acknowledged
    # The kill landed mid-load: some requests never got an answer, and retrying each with its
    # Idempotency-Key after the restart wrote it exactly once.
    assert s.unanswered > 0 and s.retried_ok == s.unanswered and s.duplicates == 0
    assert s.partial == 0 and s.events_committed == s.events_delivered >= s.acknowledged


async def test_postgres_restart_under_load_recovers_without_manual_action() -> None:
    s = await resilience.postgres_restart_under_load(DATA, seconds=1.2, outage=1.2, writers=3)
    assert s.ok, resilience.render([s])
    # While PostgreSQL was down, writes failed fast with a clear 503 (never a 500), /health said so.
    assert s.statuses["503"] > 0 and "500" not in s.statuses
    assert s.slowest_failure_ms < 5000
    assert any(n.startswith("/health: 503") for n in s.notes)
    assert s.found == s.acknowledged and s.events_committed == s.events_delivered
    assert postmaster(DATA / "resilience-pg" / "pg") is None  # nothing left running


async def test_inngest_down_or_slow_keeps_events_and_delivers_them_on_return(settings: Settings) -> None:
    s = await resilience.inngest_outage_under_load(admin_url(settings), DATA, seconds=1.2, writers=3)
    assert s.ok, resilience.render([s])
    # Writes never waited for Inngest; the outbox kept every event; each reached the API.
    assert s.statuses["201"] == s.attempted > 0
    assert s.events_committed == s.events_delivered > 0


def test_the_report_fits_one_page_and_flags_failures() -> None:
    good = resilience.Scenario("a", "fault a", 2, 1.0, attempted=3, acknowledged=3, found=3)
    bad = resilience.Scenario(
        "b", "fault b", 2, 1.0, attempted=3, acknowledged=3, found=2, events_committed=2
    )
    for s in (good, bad):
        s.check()
    assert good.ok and not bad.ok
    text = resilience.render([good, bad])
    assert "PASS" in text and "FAIL" in text
    assert "1 acknowledged writes are missing" in text and "2 committed events undelivered" in text
    assert len(text.splitlines()) < 60 and max(len(line) for line in text.splitlines()) <= 120


async def test_two_relay_processes_survive_a_freeze_a_kill_and_a_process_killing_handler(
    settings: Settings,
) -> None:
    """The scale-out proof: two `atlilith relay` processes on one database (lease 2 s)."""
    s = await resilience.two_relays(admin_url(settings), DATA, lease=2.0)
    assert s.ok, resilience.render([s])
    # Frozen holding claims, its work was delivered by the other within the lease (+ the
    # handler's 1 s and some slack), not when it woke.
    assert s.figures["takeover_seconds"] < 2.0 + 3.0
    # Killed mid-load and frozen-then-resumed: every event handled, none twice.
    assert s.events_committed == s.events_delivered == 108 and s.duplicates == 0 and s.figures["lost"] == 0
    # The handler that kills its process used up its 3 attempts (each a dead process) and was
    # dead-lettered with the reason.
    assert s.figures["dead_after_attempts"] == 3 and s.figures["process_deaths"] == 3
    assert any("process died while handling" in n for n in s.notes), s.notes
