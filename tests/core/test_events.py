"""The event spine: outbox written with the change, relayed after commit, at least once."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import literal, select, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from core.config import Settings
from core.events import ScheduledRun, schedule
from core.outbox import EVENT_CTE
from core.relay import NOT_CHAINED, Relay, _Claim
from core.uow import Database, UnitOfWork
from tests.conftest import running
from tests.support import handlers
from tests.support.processes import worker_env
from tests.support.relay import drain_until
from tests.support.serving import LocalServer
from tests.support.sql import system_sql

ROOT = Path(__file__).resolve().parents[2]
schedule_runs: list[dt.datetime] = []


@schedule("*/5 * * * *", name="tests.every_five_minutes")
async def five_minutely(run: ScheduledRun, uow: UnitOfWork) -> None:
    schedule_runs.append(run.fire_at)


async def emit(db: Database, name: str, **data: Any) -> uuid.UUID:
    async with db.system() as uow:
        event_id = uow.emit(name, data)
    return event_id


async def delivery(db: Database, event_id: uuid.UUID, handler: str) -> Any:
    return (
        await system_sql(
            db,
            "SELECT status, attempts, last_error FROM platform.event_deliveries WHERE event_id = :e AND handler = :h",
            {"e": event_id, "h": handler},
        )
    ).one_or_none()


async def dead_lettered(db: Database, relay: Relay, event_id: uuid.UUID, handler: str) -> Any:
    """The delivery once the relay, draining again and again, has dead-lettered it."""

    async def dead() -> bool:
        row = await delivery(db, event_id, handler)
        return row is not None and row.status == "dead"

    await drain_until(relay, dead)
    return await delivery(db, event_id, handler)


async def outbox_row(db: Database, event_id: uuid.UUID) -> Any:
    return (
        await system_sql(
            db, "SELECT status, attempts, data FROM platform.outbox WHERE id = :e", {"e": event_id}
        )
    ).one_or_none()


async def test_outbox_row_exists_only_when_the_transaction_commits(db: Database) -> None:
    committed = await emit(db, "test/probe.commit", n=1)
    rolled_back: uuid.UUID | None = None
    with pytest.raises(RuntimeError):
        async with db.system() as uow:
            rolled_back = uow.emit("test/probe.rollback", {"n": 2})
            raise RuntimeError("abort")
    row = await outbox_row(db, committed)
    assert row is not None and row.status == "pending"
    assert row.data["trace_id"] and row.data["n"] == 1
    assert rolled_back is not None and await outbox_row(db, rolled_back) is None

    relay = Relay(db)
    await relay.drain()
    assert str(committed) in handlers.calls["record"]
    assert str(rolled_back) not in handlers.calls["record"]
    assert (await delivery(db, committed, "tests.record")).status == "done"


async def test_one_event_and_several_are_written_alike(db: Database) -> None:
    """A unit of work's one event goes through a prebuilt INSERT, several through the same
    INSERT executed many (`UnitOfWork.flush_events`): the rows carry the same fields either
    way, in the order they were emitted."""
    person = uuid.uuid4()
    async with db.system() as uow:
        alone = uow.emit("test/probe.alone", {"n": 1}, person_id=person, traceparent=TRACEPARENT)
    async with db.system() as uow:
        first = uow.emit("test/probe.first", {"n": 2}, person_id=person, traceparent=TRACEPARENT)
        second = uow.emit("test/probe.second", {"n": 3})
    rows = {
        r.id: r
        for r in await system_sql(
            db,
            "SELECT id, name, data, person_id, org_id, trace_id, traceparent, status FROM platform.outbox"
            " WHERE id IN (:a, :b, :c)",
            {"a": alone, "b": first, "c": second},
        )
    }
    trace = TRACEPARENT.split("-")[1]
    for event_id, name, n in ((alone, "test/probe.alone", 1), (first, "test/probe.first", 2)):
        row = rows[event_id]
        assert (row.name, row.data["n"], row.person_id, row.org_id) == (name, n, person, None)
        assert (row.trace_id, row.traceparent, row.status) == (trace, TRACEPARENT, "pending")
        assert row.data["tenant_id"] == str(person) and row.data["trace_id"] == trace
    other = rows[second]
    assert (other.name, other.data["n"], other.person_id) == ("test/probe.second", 3, None)
    order = await system_sql(
        db, "SELECT id FROM platform.outbox WHERE id IN (:b, :c) ORDER BY seq", {"b": first, "c": second}
    )
    assert [r.id for r in order] == [first, second]


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_an_event_taken_into_a_statement_is_written_alike(db: Database) -> None:
    """A write may carry its unit of work's one event (`take_event` + `EVENT_CTE`, as a send
    does): the row is the one the commit would have written, written once; with two events
    queued nothing is taken, and the commit writes both."""
    person = uuid.uuid4()
    async with db.system() as uow:
        taken = uow.emit("test/probe.taken", {"n": 2}, person_id=person, traceparent=TRACEPARENT)
        event = uow.take_event()
        assert event is not None and uow.take_event() is None
        await uow.session.execute(select(literal(1)).add_cte(EVENT_CTE), event)
    async with db.system() as uow:
        first = uow.emit("test/probe.first", {"n": 3})
        second = uow.emit("test/probe.second", {"n": 4})
        assert uow.take_event() is None
    rows = (
        await system_sql(
            db,
            "SELECT id, name, data, person_id, trace_id, traceparent, status FROM platform.outbox"
            " WHERE id IN (:a, :b, :c) ORDER BY seq",
            {"a": taken, "b": first, "c": second},
        )
    ).all()
    assert [r.id for r in rows] == [taken, first, second]
    row, trace = rows[0], TRACEPARENT.split("-")[1]
    assert (row.name, row.data["n"], row.person_id, row.status) == ("test/probe.taken", 2, person, "pending")
    assert (row.trace_id, row.traceparent, row.data["tenant_id"]) == (trace, TRACEPARENT, str(person))
    assert (rows[1].name, rows[1].data["n"], rows[2].data["n"]) == ("test/probe.first", 3, 4)


async def test_delivered_at_least_once_but_effects_once_per_handler(db: Database) -> None:
    event_id = await emit(db, "test/probe.once")
    relay = Relay(db)
    await relay.drain()
    await relay.drain()
    assert handlers.calls["record"].count(str(event_id)) == 1


async def test_failing_handler_is_retried_with_backoff_then_succeeds(db: Database) -> None:
    event_id = await emit(db, "test/probe.flaky")
    handlers.failures_left[str(event_id)] = 2
    relay = Relay(db)

    async def done() -> bool:
        row = await delivery(db, event_id, "tests.flaky")
        return row is not None and row.status == "done"

    await drain_until(relay, done)
    assert handlers.calls["flaky"].count(str(event_id)) == 3
    row = await delivery(db, event_id, "tests.flaky")
    assert row.attempts == 3 and row.last_error is None
    # The two failed attempts' writes rolled back; the one that succeeded committed its own.
    echoes = await system_sql(
        db,
        "SELECT count(*) FROM platform.outbox WHERE name = 'test/echo.flaky' AND data->>'of' = :e",
        {"e": str(event_id)},
    )
    assert echoes.scalar_one() == 1


async def test_poison_handler_is_dead_lettered_without_blocking_others(db: Database) -> None:
    poison = await emit(db, "test/probe.poison")
    after = await emit(db, "test/probe.after")
    relay = Relay(db)
    row = await dead_lettered(db, relay, poison, "tests.poison")
    assert row.attempts == db.settings.handler_max_attempts
    assert "always fails" in row.last_error
    # The same event's other handler, and later events, went through.
    assert (await delivery(db, poison, "tests.record")).status == "done"
    assert (await delivery(db, after, "tests.record")).status == "done"
    await relay.drain()
    assert handlers.calls["poison"].count(str(poison)) == db.settings.handler_max_attempts


async def test_a_failed_statement_leaves_no_sql_or_data_in_last_error(db: Database) -> None:
    """`last_error` is shown to operators (the admin API's dead letters): a database error is
    kept by its class and SQLSTATE, never the statement or the values PostgreSQL quotes."""
    event_id = await emit(db, "test/probe.bad_sql", secret="a client's private words")
    # Until dead-lettered: a retry left due would be delivered by a later test's relay.
    row = await dead_lettered(db, Relay(db), event_id, "tests.bad_sql")
    assert "InvalidTextRepresentationError (SQLSTATE 22P02)" in row.last_error
    assert "private words" not in row.last_error
    assert "SELECT" not in row.last_error and "CAST" not in row.last_error


async def _run_worker(settings: Settings, mode: str, marker: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tests.support.crash_worker", mode, marker],
        cwd=ROOT,
        # The claim the dying worker leaves behind runs out quickly, for the test to see.
        env=worker_env(settings, ATLILITH_HANDLER_LEASE_SECONDS="1"),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _event_by_marker(db: Database, marker: str) -> uuid.UUID:
    event_id: uuid.UUID = (
        await system_sql(db, "SELECT id FROM platform.outbox WHERE data->>'marker' = :m", {"m": marker})
    ).scalar_one()
    return event_id


async def test_process_killed_after_commit_delivers_after_restart(db: Database) -> None:
    marker = uuid.uuid4().hex
    proc = await _run_worker(db.settings, "commit-then-die", marker)
    assert proc.returncode == -9 and "committed" in proc.stdout, proc.stderr
    event_id = await _event_by_marker(db, marker)
    assert (await outbox_row(db, event_id)).status == "pending"
    await Relay(db).drain()  # the "restarted" process
    assert (await delivery(db, event_id, "tests.crash")).status == "done"
    assert str(event_id) in handlers.calls["crash"]


async def test_process_killed_mid_delivery_redelivers_after_restart(db: Database) -> None:
    marker = uuid.uuid4().hex
    proc = await _run_worker(db.settings, "die-mid-delivery", marker)
    assert proc.returncode == -9 and "survived" not in proc.stdout, proc.stderr
    event_id = await _event_by_marker(db, marker)
    # Fanned out, but the delivery died with the process: still pending, its attempt counted
    # and its lease held until it runs out, then another process delivers it.
    assert (await outbox_row(db, event_id)).status == "dispatched"
    row = await delivery(db, event_id, "tests.crash")
    assert row.status == "pending" and row.attempts == 1

    async def done() -> bool:
        status: str = (await delivery(db, event_id, "tests.crash")).status
        return status == "done"

    await drain_until(Relay(db), done)
    row = await delivery(db, event_id, "tests.crash")
    assert row.attempts == 2 and row.last_error is None


async def test_scheduled_handler_runs_once_per_fire_time_across_processes(db: Database) -> None:
    now = dt.datetime(2031, 1, 1, 12, 0, 30, tzinfo=dt.UTC)
    relays = [Relay(db), Relay(db)]
    fired = await asyncio.gather(*(r.tick_schedules(now) for r in relays))
    assert sum(name == "tests.every_five_minutes" for names in fired for name in names) == 1
    assert schedule_runs.count(dt.datetime(2031, 1, 1, 12, 0, tzinfo=dt.UTC)) == 1
    # Nothing new until the next fire time; then exactly once again.
    assert not [
        n
        for r in relays
        for n in await r.tick_schedules(now + dt.timedelta(minutes=1))
        if n == "tests.every_five_minutes"
    ]
    later = [await r.tick_schedules(now + dt.timedelta(minutes=5)) for r in relays]
    assert sum("tests.every_five_minutes" in names for names in later) == 1


async def test_notify_wakes_the_running_relay(db: Database) -> None:
    # A poll interval far longer than the wait below: a delivery in time is the NOTIFY's doing.
    quiet = Database(db.settings.model_copy(update={"relay_poll_seconds": 120.0}))
    relay = Relay(quiet)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(relay.run(stop, on_ready=ready.set))
    try:
        # Ready once its first pass is done and it LISTENs (the relay bounds that wait itself).
        await asyncio.wait_for(ready.wait(), timeout=30)
        event_id = await emit(db, "test/probe.wake")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while True:
            row = await delivery(db, event_id, "tests.record")
            if row is not None and row.status == "done":
                break
            if loop.time() > deadline:
                raise AssertionError("relay was not woken by NOTIFY")
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task
        await quiet.dispose()


# --- Inngest -----------------------------------------------------------------------------------


class FakeEventApi(LocalServer):
    """Stands in for Inngest's event API on 127.0.0.1: records what the relay sends."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail = False

        async def ingest(request: Request) -> JSONResponse:
            if self.fail:
                return JSONResponse({"error": "down"}, status_code=500)
            batch = json.loads(await request.body())
            self.received.extend(batch)
            self.keys.append(request.path_params["key"])
            return JSONResponse({"ids": [e.get("id") for e in batch], "status": 200})

        self.keys: list[str] = []
        self.app = Starlette(routes=[Route("/e/{key}", ingest, methods=["POST"])])
        self.listen(self.app)


async def test_relay_publishes_to_inngest_event_api_with_stable_ids(db: Database) -> None:
    from servers.inngest import InngestSink, make_client

    async with FakeEventApi() as fake:
        settings = db.settings.model_copy(
            update={
                "inngest_event_api_base_url": f"http://127.0.0.1:{fake.port}",
                "inngest_event_key": "k-test",
                "inngest_dev": True,
            }
        )
        sink = InngestSink(make_client(settings))
        # Only our event should be pending for the sink: settle everything else first.
        await Relay(db).drain()
        event_id = await emit(db, "test/probe.inngest", n=7)
        relay = Relay(db, sink)

        fake.fail = True
        assert await relay.pump() == 0
        row = await outbox_row(db, event_id)
        assert row.status == "pending" and row.attempts == 1  # kept, to be retried

        fake.fail = False
        await system_sql(
            db, "UPDATE platform.outbox SET next_attempt_at = now() WHERE id = :e", {"e": event_id}
        )
        await relay.pump()
        sent = [e for e in fake.received if e["name"] == "test/probe.inngest"]
        assert len(sent) == 1 and sent[0]["id"] == str(event_id)
        assert sent[0]["data"]["n"] == 7 and sent[0]["data"]["trace_id"]
        assert fake.keys[-1] == "k-test"
        assert (await outbox_row(db, event_id)).status == "published"

        # A resend (e.g. after a crash before marking) carries the same id, so Inngest dedupes.
        await system_sql(db, "UPDATE platform.outbox SET status = 'pending' WHERE id = :e", {"e": event_id})
        await relay.pump()
        resent = [e for e in fake.received if e["name"] == "test/probe.inngest"]
        assert [e["id"] for e in resent] == [str(event_id), str(event_id)]


async def test_inngest_endpoint_runs_handlers_as_the_executor_drives_it(db: Database) -> None:
    import hashlib

    import httpx

    from servers.app import create_app

    settings = db.settings.model_copy(update={"inngest_dev": True, "inngest_event_key": "k-test"})
    app = create_app(settings, db=db, run_relay=False)
    event_id = str(uuid.uuid4())
    event = {
        "id": event_id,
        "name": "test/probe.inngest",
        "data": {"n": 1, "tenant_id": None},
        "ts": 1_700_000_000_000,
    }

    def body(steps: dict[str, Any]) -> dict[str, Any]:
        return {
            "ctx": {
                "run_id": "run-1",
                "attempt": 0,
                "max_attempts": 3,
                "disable_immediate_execution": False,
                "stack": {"stack": list(steps)},
            },
            "event": event,
            "events": [event],
            "steps": steps,
            "use_api": False,
        }

    async with (
        running(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c,
    ):
        intro = await c.get("/api/inngest")
        assert intro.status_code == 200
        assert intro.json()["function_count"] >= len({"tests.record"})

        url = "/api/inngest?fnId=atlilith-tests-record&stepId=step"
        first = await c.post(url, json=body({}))
        assert first.status_code == 206, first.text
        ops = first.json()
        assert ops[0]["op"] == "StepRun" and ops[0]["data"] is True
        assert handlers.calls["record"].count(str(uuid.UUID(event_id))) == 1

        step_hash = hashlib.sha1(b"handle").hexdigest()
        assert ops[0]["id"] == step_hash
        done = await c.post(url, json=body({step_hash: {"data": True}}))
        assert done.status_code == 200 and done.json() is True

        # The executor retrying the whole run (a new run id) finds the delivery done.
        again = await c.post(url, json=body({}))
        assert again.status_code == 206 and again.json()[0]["data"] is False
        assert handlers.calls["record"].count(str(uuid.UUID(event_id))) == 1


async def test_handler_log_lines_carry_the_events_trace_id(db: Database) -> None:
    import structlog

    async with db.system(trace_id="feedfacefeedfacefeedfacefeedface") as uow:
        event_id = uow.emit("test/probe.poison", {})
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        await Relay(db).drain()
    mine = [e for e in logs if e.get("event_id") == str(event_id)]
    assert mine and all(e["trace_id"] == "feedfacefeedfacefeedfacefeedface" for e in mine)
    assert any(e.get("event") == "handler_failed" and e.get("handler") == "tests.poison" for e in mine)


async def settled_relay(db: Database) -> Relay:
    """A relay, once what other tests left is settled, retries included: a failing handler's
    next attempt falls due a backoff (tens of milliseconds here) after the drain that failed it."""
    relay = Relay(db)
    for _ in range(100):
        if await relay.drain() == 0:
            await asyncio.sleep(0.1)
            if await relay.drain() == 0:
                break
    return relay


async def test_a_run_whose_lease_was_taken_over_commits_nothing(db: Database) -> None:
    relay = await settled_relay(db)
    event_id = await emit(db, "test/probe.lease")
    await relay.pump()
    claim = await relay._claim()
    assert claim is not None and claim.event.id == event_id and claim.attempt == 1
    key = {"e": event_id, "h": claim.handler}
    # The attempt and the lease were committed before the handler ran.
    row = await delivery(db, event_id, claim.handler)
    assert (row.status, row.attempts) == ("pending", 1)
    # Another process took the delivery (our lease ran out while we were frozen).
    await system_sql(
        db,
        "UPDATE platform.event_deliveries SET claimed_by = 'elsewhere:1', claim_token = gen_random_uuid()"
        " WHERE event_id = :e AND handler = :h",
        key,
    )
    await relay._handle(claim)
    after = (
        await system_sql(
            db,
            "SELECT status, attempts, claimed_by FROM platform.event_deliveries WHERE event_id = :e AND handler = :h",
            key,
        )
    ).one()
    assert (after.status, after.attempts, after.claimed_by) == ("pending", 1, "elsewhere:1")
    # The other process never finishes; its lease runs out and a relay delivers it once more.
    await system_sql(
        db,
        "UPDATE platform.event_deliveries SET next_attempt_at = now() WHERE event_id = :e AND handler = :h",
        key,
    )
    await relay.drain()
    row = await delivery(db, event_id, claim.handler)
    assert (row.status, row.attempts, row.last_error) == ("done", 2, None)


async def test_a_frozen_relays_claims_run_side_by_side_as_their_leases_run_out(db: Database) -> None:
    """A relay froze holding four claims, whose leases run out moments apart. A live relay
    that polls far less often wakes when the first runs out and runs all four side by side,
    each as its lease runs out -- not the first alone and the others one after another in that
    worker's chain, after it (the two-relay drill once took 6 to 8 s over a 2 s lease so)."""
    await settled_relay(db)
    ids = [await emit(db, "test/probe.side_by_side", seconds=2.0) for _ in range(4)]
    await Relay(db).pump()
    # The frozen relay's claims (attempt 1 counted), running out 0.5, 0.7, 0.9 and 1.1 s from now.
    await system_sql(
        db,
        "UPDATE platform.event_deliveries d SET attempts = 1, claimed_by = 'frozen:1',"
        " claim_token = gen_random_uuid(), lease_until = due.at, next_attempt_at = due.at"
        " FROM (SELECT e, now() + make_interval(secs => 0.3 + 0.2 * n) AS at"
        "   FROM unnest(CAST(:ids AS uuid[])) WITH ORDINALITY AS k (e, n)) due"
        " WHERE d.handler = 'tests.side_by_side' AND d.event_id = due.e",
        {"ids": ids},
    )
    quiet = Database(db.settings.model_copy(update={"relay_poll_seconds": 120.0}))
    stop = asyncio.Event()
    task = asyncio.create_task(Relay(quiet).run(stop))

    async def all_done() -> bool:
        rows = [await delivery(db, i, "tests.side_by_side") for i in ids]
        return all(r.status == "done" for r in rows)

    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while not await all_done():
            assert loop.time() < deadline, "the frozen relay's claims were not taken over"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
        await quiet.dispose()
    # Each was taken over once (its second attempt), and every run started before any ended.
    for i in ids:
        assert (await delivery(db, i, "tests.side_by_side")).attempts == 2
    spans = [handlers.runs[str(i)] for i in ids]
    assert max(start for start, _ in spans) < min(end for _, end in spans), spans


async def test_a_worker_claims_its_next_delivery_with_the_outcome_and_never_after_a_lost_lease(
    db: Database,
) -> None:
    relay = await settled_relay(db)
    emitted = {await emit(db, "test/probe.chain"), await emit(db, "test/probe.chain")}
    await relay.pump()
    claim = await relay._claim()
    assert claim is not None and claim.event.id in emitted
    following = await relay._handle(claim, claim_next=True)
    # The next claim committed with the first outcome: attempt counted, leased to this process.
    assert isinstance(following, _Claim) and following.event.id in emitted and following.attempt == 1
    assert (following.event.id, following.handler) != (claim.event.id, claim.handler)
    held = (
        await system_sql(
            db,
            "SELECT status, attempts, claim_token FROM platform.event_deliveries WHERE event_id = :e AND handler = :h",
            {"e": following.event.id, "h": following.handler},
        )
    ).one()
    assert (held.status, held.attempts, held.claim_token) == ("pending", 1, following.token)
    assert (await delivery(db, claim.event.id, claim.handler)).status == "done"
    # Its lease is taken over before it runs: its outcome rolls back, and the claim it would
    # have made with it too -- a third event stays unclaimed for whoever comes next.
    third = await emit(db, "test/probe.chain")
    await relay.pump()
    await system_sql(
        db,
        "UPDATE platform.event_deliveries SET claim_token = gen_random_uuid() WHERE event_id = :e AND handler = :h",
        {"e": following.event.id, "h": following.handler},
    )
    assert await relay._handle(following, claim_next=True) is NOT_CHAINED
    assert (await delivery(db, third, following.handler)).attempts == 0


async def test_pooled_connections_carry_the_backstops(db: Database) -> None:
    async with db.system() as uow:
        idle = (await uow.session.execute(text("SHOW idle_in_transaction_session_timeout"))).scalar_one()
    async with db.uow() as uow:
        keepalive = (await uow.session.execute(text("SHOW tcp_keepalives_idle"))).scalar_one()
    assert db.settings.db_idle_in_transaction_timeout_seconds == 120 and idle == "2min"
    # The suite reaches PostgreSQL over TCP (127.0.0.1), where the keepalives apply.
    assert keepalive == str(db.settings.db_tcp_keepalives_idle_seconds) == "30"


async def test_a_handler_failing_on_a_transient_conflict_is_retried_and_logged_without_a_stack_trace(
    db: Database,
) -> None:
    import structlog

    async with db.system() as uow:
        event_id = uow.emit("test/probe.conflict", {})
    with structlog.testing.capture_logs() as logs:
        await Relay(db).drain()
    failed = [e for e in logs if e.get("event") == "handler_failed" and e.get("event_id") == str(event_id)]
    assert failed and all(e["transient"] == "40P01" and "exc_info" not in e for e in failed), failed
    delivery = await system_sql(
        db,
        "SELECT status, attempts FROM platform.event_deliveries WHERE event_id = :e AND handler = 'tests.conflict'",
        {"e": event_id},
    )
    status, attempts = delivery.one()
    # Retried after its backoff, as any failure: a retry is due, or it ran again already (the
    # tests' backoff is tens of milliseconds, the drain may end before it or after it).
    assert attempts == len(failed) and (status == "pending" or attempts > 1), (status, attempts)
    # Any other failure keeps its stack trace.
    async with db.system() as uow:
        poisoned = uow.emit("test/probe.poison", {})
    with structlog.testing.capture_logs() as logs:
        await Relay(db).drain()
    bug = [e for e in logs if e.get("event") == "handler_failed" and e.get("event_id") == str(poisoned)]
    assert bug and "transient" not in bug[0] and bug[0]["exc_info"] is not None
