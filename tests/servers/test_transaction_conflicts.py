"""A transaction PostgreSQL aborts because of concurrent work (deadlock_detected 40P01,
serialization_failure 40001) is a retryable 503 `transaction_conflict` with a hint, at every
door, whether it fails inside the operation or at its commit: never a 500, SQL or a stack trace,
and nothing of it saved. The conflicts are real server errors: a real deadlock between two
requests, and statements that fail with those SQLSTATEs, run in the request's transaction
after a real write (an event stored by the real ingest operation, which must not survive)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import pytest
import structlog
from sqlalchemy import text

from core import analytics
from core.context import TenantContext
from core.errors import Unavailable
from core.uow import Database, UnitOfWork
from tests.conftest import signup
from tests.core.analytics.support import sql
from tests.support.mcp import mcp_client, tool_error
from tests.support.registry import install

Step = Callable[[UnitOfWork], Awaitable[None]]
INGEST = analytics.ingest


def _event(name: str = "conflicted") -> dict[str, Any]:
    at = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(microsecond=0)
    return {"id": str(uuid.uuid4()), "name": name, "timestamp": at.isoformat()}


async def _stored(db: Database, tenant: str) -> set[str]:
    rows = await sql(
        db,
        "SELECT id::text FROM analytics.events WHERE tenant_id = CAST(:t AS uuid) AND name LIKE 'conflicted%'",
        t=tenant,
    )
    return {r[0] for r in rows}


def _after_ingest(monkeypatch: pytest.MonkeyPatch, *steps: Step) -> None:
    """The real ingest operation, then one step per call (the first call the first step, ...) in
    the same transaction; calls after the last step ingest alone (a retry)."""
    pending = list(steps)

    async def ingest(ctx: TenantContext, uow: UnitOfWork, *args: Any, **kwargs: Any) -> Any:
        out = await INGEST(ctx, uow, *args, **kwargs)
        if pending:
            await pending.pop(0)(uow)
        return out

    monkeypatch.setattr(analytics, "ingest", ingest)


def _raises(sqlstate: str) -> Step:
    async def step(uow: UnitOfWork) -> None:
        await uow.session.execute(
            text(f"DO $$ BEGIN RAISE EXCEPTION 'SELECT secret FROM t' USING ERRCODE = '{sqlstate}'; END $$")
        )

    return step


async def _fails_at_commit(uow: UnitOfWork) -> None:
    """A serialization failure reported by COMMIT, as SERIALIZABLE reports one: a deferred
    constraint trigger (temporary objects, gone with the rolled-back transaction) that raises it."""
    for statement in (
        "CREATE FUNCTION pg_temp.refuse() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'could not serialize access' USING ERRCODE = '40001'; END $$",
        "CREATE TEMP TABLE refused_at_commit (x integer)",
        "CREATE CONSTRAINT TRIGGER refuse AFTER INSERT ON pg_temp.refused_at_commit"
        " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse()",
        "INSERT INTO pg_temp.refused_at_commit VALUES (1)",
    ):
        await uow.session.execute(text(statement))


def _assert_conflict_problem(
    r: httpx.Response, hint: str = "retry the request; nothing was saved", *, traced: bool = True
) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.headers["retry-after"] == "1"
    body = r.json()
    assert body["code"] == "transaction_conflict" and body["status"] == 503
    assert body["hint"] == hint
    assert body["type"].endswith("/transaction_conflict")
    assert bool(body["trace_id"]) is traced  # the app's middleware sets it; a bare app has none
    for leak in ("SELECT", "secret", "SQL", "DO $$", "pg_advisory", "Traceback", "asyncpg", "40P01", "40001"):
        assert leak not in r.text, leak


def _assert_logged_as_warning(logs: list[MutableMapping[str, Any]], sqlstate: str) -> None:
    conflicts = [e for e in logs if e.get("event") == "transaction_conflict"]
    assert conflicts and all(e["log_level"] == "warning" and e["sqlstate"] == sqlstate for e in conflicts)
    assert not [e for e in conflicts if e.get("exc_info")]
    assert not [e for e in logs if e.get("log_level") == "error" or e.get("event") == "unhandled_error"]


async def test_a_real_deadlock_between_two_requests_is_a_503_for_the_loser_and_saves_nothing_of_it(
    client: httpx.AsyncClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await signup(client)
    keys = [uuid.uuid4().int % 2**62, uuid.uuid4().int % 2**62]
    both_hold_one = asyncio.Barrier(2)

    def opposite(first: int, second: int) -> Step:
        async def step(uow: UnitOfWork) -> None:
            lock = text("SELECT pg_advisory_xact_lock(:k)")
            await uow.session.execute(lock, {"k": first})
            async with asyncio.timeout(10):  # the other request failed before its first lock
                await both_hold_one.wait()
            await uow.session.execute(lock, {"k": second})  # one of the two waits forms the cycle

        return step

    _after_ingest(monkeypatch, opposite(*keys), opposite(*reversed(keys)))
    # Names of their own: on a shared rollup stripe (pids equal modulo 8) the same name would
    # make the second ingest wait for the first's counts row, which is held at the barrier.
    events = [_event("conflicted_one"), _event("conflicted_two")]
    with structlog.testing.capture_logs() as logs:
        results = await asyncio.gather(
            *(client.post("/v1/analytics/events", json=e, headers=a.h()) for e in events)
        )
    by_status = {r.status_code: (r, e) for r, e in zip(results, events, strict=True)}
    assert sorted(by_status) == [200, 503], [r.text for r in results]
    lost, lost_event = by_status[503]
    _assert_conflict_problem(lost)
    _assert_logged_as_warning(logs, "40P01")
    # The winner's event only: the loser's write was rolled back with its transaction.
    assert await _stored(db, a.id) == {by_status[200][1]["id"]}
    # And the retry the hint asks for succeeds.
    again = await client.post("/v1/analytics/events", json=lost_event, headers=a.h())
    assert again.status_code == 200 and again.json()["accepted"] == 1, again.text
    assert await _stored(db, a.id) == {e["id"] for e in events}


@pytest.mark.parametrize("sqlstate", ["40001", "40P01"])
async def test_a_conflict_inside_the_operation_is_a_503_over_rest(
    client: httpx.AsyncClient, db: Database, monkeypatch: pytest.MonkeyPatch, sqlstate: str
) -> None:
    a = await signup(client)
    _after_ingest(monkeypatch, _raises(sqlstate))
    with structlog.testing.capture_logs() as logs:
        r = await client.post("/v1/analytics/events", json=_event(), headers=a.h())
    _assert_conflict_problem(r)
    _assert_logged_as_warning(logs, sqlstate)
    assert await _stored(db, a.id) == set()


async def test_a_serialization_failure_at_commit_is_a_503_and_saves_nothing(
    client: httpx.AsyncClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await signup(client)
    _after_ingest(monkeypatch, _fails_at_commit)
    with structlog.testing.capture_logs() as logs:
        r = await client.post("/v1/analytics/events", json=_event(), headers=a.h())
    _assert_conflict_problem(r)
    _assert_logged_as_warning(logs, "40001")
    assert await _stored(db, a.id) == set()
    # The pooled connection is clean afterwards: the temporary objects went with the rollback.
    ok = await client.post("/v1/analytics/events", json=_event(), headers=a.h())
    assert ok.status_code == 200, ok.text


async def test_the_hint_says_what_was_saved_when_an_earlier_transaction_committed(
    client: httpx.AsyncClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await signup(client)

    async def released_then_conflict(uow: UnitOfWork) -> None:
        async with uow.released():  # commits what was done so far (the event)
            pass
        await _raises("40P01")(uow)

    _after_ingest(monkeypatch, released_then_conflict)
    event = _event()
    r = await client.post("/v1/analytics/events", json=event, headers=a.h())
    _assert_conflict_problem(
        r, hint="retry the request; what it did before its last step was saved, the last step was undone"
    )
    assert await _stored(db, a.id) == {event["id"]}


async def test_a_conflict_over_mcp_is_a_tool_error_with_the_same_code(
    app: Any, client: httpx.AsyncClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await signup(client)
    await install(client, a, "analytics")
    _after_ingest(monkeypatch, _raises("40P01"))
    event = _event()
    async with mcp_client(app, a.token) as c:
        with structlog.testing.capture_logs() as logs:
            result = await c.call_tool(
                "analytics_track",
                {"name": event["name"], "event_id": event["id"], "timestamp": event["timestamp"]},
            )
        body = tool_error(result)
        assert body["code"] == "transaction_conflict", body
        assert body["hint"] == "retry the request; nothing was saved" and body["retry_after"] == 1
        assert "secret" not in json.dumps(body) and "SQL" not in json.dumps(body)
        _assert_logged_as_warning(logs, "40P01")
        assert await _stored(db, a.id) == set()
        # Retried the same way, it is recorded.
        again = await c.call_tool(
            "analytics_track",
            {"name": event["name"], "event_id": event["id"], "timestamp": event["timestamp"]},
        )
        assert not again.is_error, again.content
    assert len(await _stored(db, a.id)) == 1


async def test_a_conflict_or_a_lost_database_outside_any_unit_of_work_is_a_503_and_other_errors_stay_500s(
    db: Database,
) -> None:
    """The REST door's net (`servers.problems`): a statement run on a connection of its own,
    outside a unit of work, fails with a conflict; any other database error is still a bug."""
    from fastapi import FastAPI

    from servers.problems import install_problem_handlers

    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/raise/{sqlstate}")
    async def raising(sqlstate: str) -> None:
        async with db.engine.connect() as conn:
            await conn.execute(
                text(
                    f"DO $$ BEGIN RAISE EXCEPTION 'SELECT secret FROM t' USING ERRCODE = '{sqlstate}'; END $$"
                )
            )

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        r = await c.get("/raise/40P01")
        _assert_conflict_problem(r, traced=False)
        bug = await c.get("/raise/22012")  # division_by_zero: ours to fix, not the caller's to retry
        assert bug.status_code == 500 and "transaction_conflict" not in bug.text
        gone = await c.get("/raise/57P01")  # admin_shutdown: the database went away, retry later
        assert gone.status_code == 503, gone.text
        assert gone.json()["code"] == "database_unavailable" and "SELECT" not in gone.text


@pytest.mark.parametrize("where", ["in its body", "at its commit"])
async def test_a_unit_of_work_raises_a_conflict_as_unavailable(db: Database, where: str) -> None:
    """Every door's unit of work, whichever step the server refuses: the body's statement, or the
    COMMIT (where SERIALIZABLE reports a failure); rolled back either way (its event, which the
    commit writes to the outbox first, is not there)."""
    step = _raises("40001") if where == "in its body" else _fails_at_commit
    with pytest.raises(Unavailable) as caught:
        async with db.system() as uow:
            event_id = uow.emit("tests/conflict.happened", {})
            await step(uow)
    assert caught.value.code == "transaction_conflict" and caught.value.status == 503
    assert caught.value.hint == "retry the request; nothing was saved"
    assert await sql(db, "SELECT count(*) FROM platform.outbox WHERE id = :id", id=event_id) == [(0,)]
