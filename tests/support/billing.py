"""Test support for billing: platform admins, grants, signed requests, a fake peer component on
127.0.0.1, and test-only built-in actions (failing, metered, blocking)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict
from sqlalchemy import text
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from core.billing.components import ActionResult, ActionRun, action
from core.errors import ValidationFailed
from core.relay import Relay
from core.tenancy.models import Client
from core.uow import Database
from tests.conftest import Account, signup
from tests.support.processes import ROOT, worker_env
from tests.support.registry import install
from tests.support.serving import LocalServer
from tests.support.sql import system_sql

# --- test-only built-in actions ----------------------------------------------------------------


class Nothing(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Metered(BaseModel):
    model_config = ConfigDict(extra="forbid")
    credits: int
    client_name: str | None = None


class Done(BaseModel):
    ok: bool = True


@action("tests", "explode", price=2, input=Nothing, output=Done, summary="Always fails (an internal error).")
async def explode(run: ActionRun, data: Nothing) -> ActionResult:
    raise RuntimeError("boom: internal detail that must not leak")


@action("tests", "refuse", price=2, input=Nothing, output=Done, summary="Always fails with a domain error.")
async def refuse(run: ActionRun, data: Nothing) -> ActionResult:
    raise ValidationFailed("the action refused its input", code="refused_input")


async def _quote_metered(ctx: Any, uow: Any, data: Metered) -> int:
    return 3


@action(
    "tests",
    "metered",
    price=3,
    quote=_quote_metered,
    input=Metered,
    output=Done,
    summary="Charges `credits`.",
)
async def metered(run: ActionRun, data: Metered) -> ActionResult:
    if data.client_name:
        run.uow.session.add(
            Client(id=uuid.uuid4(), person_id=run.ctx.person_id, org_id=run.ctx.org_id, name=data.client_name)
        )
        await run.uow.session.flush()
    return ActionResult(output=Done(), usage={"units": data.credits}, credits=data.credits)


@action(
    "tests",
    "metered-overage",
    price=3,
    input=Metered,
    output=Done,
    overage="allow",
    summary="Charges `credits`, beyond the hold if need be.",
)
async def metered_overage(run: ActionRun, data: Metered) -> ActionResult:
    return ActionResult(output=Done(), usage={"units": data.credits}, credits=data.credits)


# The blocking action waits for the test to let it finish.
gates: dict[str, asyncio.Event] = {}
entered: dict[str, asyncio.Event] = {}


class Gate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gate: str
    client_name: str | None = None


@action("tests", "gated", price=4, input=Gate, output=Done, quick=False, summary="Waits for the test's gate.")
async def gated(run: ActionRun, data: Gate) -> ActionResult:
    if data.client_name:
        run.uow.session.add(
            Client(id=uuid.uuid4(), person_id=run.ctx.person_id, org_id=run.ctx.org_id, name=data.client_name)
        )
        await run.uow.session.flush()
    entered.setdefault(data.gate, asyncio.Event()).set()
    await gates.setdefault(data.gate, asyncio.Event()).wait()
    return ActionResult(output=Done(), usage={"waited": 1})


class Marked(BaseModel):
    model_config = ConfigDict(extra="forbid")
    marker: str
    gate: str | None = None
    refuse: bool = False


# A quick action that writes a client named after its marker, then (in a worker process whose
# ATLILITH_TEST_KILL_JOB is that marker) kills its own process before the delivery commits, or
# waits for the test's gate (to outlive a short delivery lease).
@action("tests", "write-then-die", price=2, input=Marked, output=Done, summary="Writes, then may die.")
async def write_then_die(run: ActionRun, data: Marked) -> ActionResult:
    run.uow.session.add(
        Client(id=uuid.uuid4(), person_id=run.ctx.person_id, org_id=run.ctx.org_id, name=data.marker)
    )
    await run.uow.session.flush()
    if os.environ.get("ATLILITH_TEST_KILL_JOB") == data.marker:
        os.kill(os.getpid(), signal.SIGKILL)
    if data.refuse:
        run.uow.emit("tests/probe.never", {"marker": data.marker})
        raise ValidationFailed("the action refused after writing", code="refused_after_write")
    if data.gate:
        entered.setdefault(data.gate, asyncio.Event()).set()
        await gates.setdefault(data.gate, asyncio.Event()).wait()
    return ActionResult(output=Done(), usage={"written": 1})


# --- jobs run inline, as the relay leaves them ------------------------------------------------------


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def job_facts(db: Database, job_id: str, marker: str) -> dict[str, Any]:
    """The job, its ledger entries, the action's writes, its events and its delivery."""
    async with db.system() as uow:
        job = (
            await uow.session.execute(
                text(
                    "SELECT status, attempts, hold_status, credits_captured FROM billing.jobs WHERE id = :j"
                ),
                {"j": uuid.UUID(job_id)},
            )
        ).one()
        kinds = (
            await uow.session.execute(
                text("SELECT kind FROM billing.ledger WHERE job_id = :j ORDER BY seq"),
                {"j": uuid.UUID(job_id)},
            )
        ).scalars()
        clients = (
            await uow.session.execute(
                text("SELECT count(*) FROM platform.clients WHERE name = :m"), {"m": marker}
            )
        ).scalar_one()
        events = (
            await uow.session.execute(
                text(
                    "SELECT name FROM platform.outbox WHERE data->>'job_id' = :j AND name <> 'jobs/job.queued'"
                    " ORDER BY seq"
                ),
                {"j": job_id},
            )
        ).scalars()
        delivery = (
            await uow.session.execute(
                text(
                    "SELECT d.status, d.attempts FROM platform.event_deliveries d"
                    " JOIN platform.outbox e ON e.id = d.event_id"
                    " WHERE e.name = 'jobs/job.queued' AND e.data->>'job_id' = :j AND d.handler = 'billing.execute_job'"
                ),
                {"j": job_id},
            )
        ).one_or_none()
    return {
        "job": tuple(job),
        "ledger": list(kinds),
        "clients": clients,
        "events": list(events),
        "delivery": tuple(delivery) if delivery else None,
    }


SETTLED_ONCE = {
    "job": ("succeeded", 1, "captured", 2),
    "ledger": ["hold", "capture"],
    "clients": 1,
    "events": ["jobs/job.started", "jobs/job.succeeded"],
}
# A job whose action failed in its savepoint, in its one delivery: its writes and events rolled
# back, the job failed and its hold released.
FAILED_IN_ITS_DELIVERY = {
    "job": ("failed", 1, "released", 0),
    "ledger": ["hold", "release"],
    "clients": 0,
    "events": ["jobs/job.started", "jobs/job.failed"],
    "delivery": ("done", 1),
}
# A job whose delivery was claimed once and whose run committed nothing: held, still queued.
STILL_QUEUED = {
    "job": ("queued", 0, "open", 0),
    "ledger": ["hold"],
    "clients": 0,
    "events": [],
    "delivery": ("pending", 1),
}
WRITE_THEN_DIE = "tests/write-then-die"


async def queue_jobs(
    client: httpx.AsyncClient,
    count: int = 1,
    action: str = WRITE_THEN_DIE,
    *,
    gate: str | None = None,
    alone: bool = True,
) -> tuple[list[str], list[str], str]:
    """`count` queued jobs of a new person with credits: their markers, their ids, the person.
    `write-then-die` jobs carry their marker (and `gate`); others get an email as input.
    `alone`: what else was pending is delivered first, so the next deliveries are these jobs'."""
    admin, a = await make_admin(client), await signup(client)
    await grant(client, admin, 40, person=a.slug)
    component = action.split("/")[0]
    if component != "tests":  # the test-only actions need no installation
        await install(client, a, component)
    if alone:
        await Relay(app_db(client)).drain()
    markers, ids = [], []
    for i in range(count):
        marker = uuid.uuid4().hex
        body = {"marker": marker} | ({"gate": gate} if gate else {})
        job = await client.post(
            f"/v1/run/{action}",
            json={"input": body if action == WRITE_THEN_DIE else {"email": f"b{i}@example.com"}},
            headers=a.h(),
        )
        assert job.status_code == 202, job.text
        markers.append(marker)
        ids.append(job.json()["job_id"])
    return markers, ids, a.id


async def die_mid_job(db: Database, marker: str) -> None:
    """Deliver what is pending in a worker process that kills itself inside the `write-then-die`
    job marked `marker`, before the delivery commits. The claims it leaves run out after a
    second, for the test to see them taken over."""
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tests.support.job_crash_worker", marker],
        cwd=ROOT,
        env=worker_env(db.settings, ATLILITH_HANDLER_LEASE_SECONDS="1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -9 and "survived" not in proc.stdout, proc.stderr


# --- people and credits -----------------------------------------------------------------------------


def app_db(client: httpx.AsyncClient) -> Database:
    db: Database = client._transport.app.state.db  # type: ignore[attr-defined]
    return db


async def make_admin(client: httpx.AsyncClient) -> Account:
    admin = await signup(client, "admin")
    async with app_db(client).system() as uow:
        await uow.session.execute(
            text("UPDATE platform.persons SET is_platform_admin = true WHERE id = :p"),
            {"p": uuid.UUID(admin.id)},
        )
    return admin


async def every_page(client: httpx.AsyncClient, path: str, who: Account) -> list[dict[str, Any]]:
    """Every item of a keyset-paged list, page by page."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "100"} | ({"cursor": cursor} if cursor else {})
        r = await client.get(path, params=params, headers=who.h())
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return items


async def all_peers(client: httpx.AsyncClient, admin: Account) -> list[dict[str, Any]]:
    """Every registered peer: a worker's database holds the peers of every module that ran on
    it, and one page (by slug) may end before the one a test looks for."""
    return await every_page(client, "/v1/admin/peers", admin)


async def all_actions(client: httpx.AsyncClient, who: Account) -> list[dict[str, Any]]:
    """Every action `who` can run in their personal context: the actions of every enabled peer
    installed there (by component slug), with the built-in ones."""
    return await every_page(client, "/v1/actions", who)


async def grant(
    client: httpx.AsyncClient,
    admin: Account,
    credits: int,
    *,
    person: str | None = None,
    org: str | None = None,
    expires_at: str | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"credits": credits}
    if person:
        body["person"] = person
    if org:
        body["org"] = org
    if expires_at:
        body["expires_at"] = expires_at
    headers = admin.h()
    if key:
        headers["Idempotency-Key"] = key
    r = await client.post("/v1/admin/credits/grants", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def signed(
    secret: str | list[str],
    body: dict[str, Any] | bytes,
    *,
    timestamp: int | None = None,
    message_id: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A request as a Standard Webhooks sender makes it (the library itself, not our code), signed
    with each key given."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    when = dt.datetime.fromtimestamp(timestamp if timestamp is not None else time.time(), dt.UTC)
    msg_id = message_id or f"msg_{uuid.uuid4().hex}"
    keys = [secret] if isinstance(secret, str) else secret
    return raw, {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": " ".join(Webhook(k).sign(msg_id, when, raw.decode()) for k in keys),
    }


def signed_by(secret: str, raw: bytes, headers: dict[str, str]) -> bool:
    """Whether a request we sent verifies with `secret`, as the receiving peer would check it."""
    try:
        Webhook(secret).verify(raw, headers, json_parse=False)
    except Exception:
        return False
    return True


async def ledger_state(db: Database, tenant_id: str | uuid.UUID) -> dict[str, int]:
    """The account's totals next to what its ledger and its jobs imply (system mode, raw SQL)."""
    row = (
        await system_sql(
            db,
            (
                "SELECT a.balance, a.held,"
                " (SELECT coalesce(sum(balance_delta), 0) FROM billing.ledger l WHERE l.account_id = a.id) AS sum_balance,"
                " (SELECT coalesce(sum(held_delta), 0) FROM billing.ledger l WHERE l.account_id = a.id) AS sum_held,"
                " (SELECT coalesce(sum(credits_held), 0) FROM billing.jobs j"
                "   WHERE j.tenant_id = a.tenant_id AND j.hold_status = 'open') AS open_holds,"
                " (SELECT count(*) FROM billing.ledger l WHERE l.account_id = a.id) AS entries,"
                " (SELECT l.balance_after FROM billing.ledger l WHERE l.account_id = a.id ORDER BY seq DESC LIMIT 1)"
                "   AS last_balance"
                " FROM billing.accounts a WHERE a.tenant_id = :t"
            ),
            {"t": uuid.UUID(str(tenant_id))},
        )
    ).one()
    return dict(row._mapping)


def assert_consistent(state: dict[str, int]) -> None:
    assert state["balance"] == state["sum_balance"] == (state["last_balance"] or 0), state
    assert state["held"] == state["sum_held"] == state["open_holds"], state
    assert state["balance"] >= 0 and state["balance"] - state["held"] >= 0, state


# --- a fake peer component ---------------------------------------------------------------------------


class FakePeer(LocalServer):
    """A peer component on 127.0.0.1 implementing the contract: POST /run/{action} (records the
    job; answers per `mode`), GET /health."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.received_raw: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.mode = "accept"  # accept | error | slow | reject
        self.slow_seconds = 2.0
        self.got = asyncio.Event()

        async def run(request: Request) -> JSONResponse:
            raw = await request.body()
            self.received_raw.append(raw)
            self.received.append(json.loads(raw))
            self.headers.append({k.lower(): v for k, v in request.headers.items()})
            self.got.set()
            if self.mode == "error":
                return JSONResponse({"error": "down"}, status_code=503)
            if self.mode == "reject":
                return JSONResponse({"error": "bad input"}, status_code=422)
            if self.mode == "slow":
                await asyncio.sleep(self.slow_seconds)
            return JSONResponse({"accepted": True}, status_code=202)

        async def health(request: Request) -> JSONResponse:
            return JSONResponse({"status": "ok"})

        self.app = Starlette(
            routes=[Route("/run/{action}", run, methods=["POST"]), Route("/health", health, methods=["GET"])]
        )
        self.listen(self.app)


async def register_peer(
    client: httpx.AsyncClient,
    admin: Account,
    base_url: str,
    *,
    installed_by: Account | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Register a peer component as a platform admin; `installed_by` installs it in that
    person's personal context, where their runs act."""
    body = {
        "slug": f"peer-{uuid.uuid4().hex[:8]}",
        "name": "Drafts",
        "base_url": base_url,
        "actions": [
            {"name": "draft-reply", "price": 5, "summary": "Draft a reply"},
            {"name": "long-read", "price": 2, "overage": "allow"},
        ],
        **extra,
    }
    r = await client.post("/v1/admin/peers", json=body, headers=admin.h())
    assert r.status_code == 201, r.text
    assert r.json()["secret"].startswith("whsec_")
    if installed_by is not None:
        await install(client, installed_by, r.json()["slug"])
    return dict(r.json())
