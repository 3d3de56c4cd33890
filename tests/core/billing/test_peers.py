"""Peer components: a fake peer on 127.0.0.1 receives the job (signed, with the trace id and a
callback URL) and reports back; timeouts, unreachable peers and bad signatures end in `failed`
with a reason and a released hold; duplicate and late callbacks are harmless."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import structlog

from core import billing, webhooks
from core.relay import Relay
from core.uow import Database
from servers.app import create_app
from tests.conftest import Account, signup
from tests.support.billing import (
    FakePeer,
    all_actions,
    all_peers,
    assert_consistent,
    grant,
    ledger_state,
    make_admin,
    register_peer,
    signed,
    signed_by,
)
from tests.support.rls import raw_as
from tests.support.serving import free_port, serving
from tests.support.sql import system_sql


async def assert_nothing_charged(client: httpx.AsyncClient, db: Database, who: Account) -> None:
    """`who` has all 20 starting credits available again, and their ledger agrees."""
    assert (await client.get("/v1/credits", headers=who.h())).json()["available"] == 20
    assert_consistent(await ledger_state(db, who.id))


async def dispatch(client: httpx.AsyncClient, db: Database, peer: dict[str, Any], by: Account) -> str:
    """`by` runs the peer's draft-reply; the relay hands the job to the peer. The job's id."""
    r = await client.post(f"/v1/run/{peer['slug']}/draft-reply", json={"input": {}}, headers=by.h())
    assert r.status_code == 202, r.text
    await Relay(db).drain()
    return str(r.json()["job_id"])


@pytest.fixture
async def setup(client: httpx.AsyncClient, db: Database) -> Any:
    admin, a = await make_admin(client), await signup(client)
    await grant(client, admin, 20, person=a.slug)
    return admin, a


@pytest.fixture
async def fake() -> AsyncIterator[FakePeer]:
    async with FakePeer() as peer:
        yield peer


@pytest.fixture
async def peer(client: httpx.AsyncClient, setup: Any, fake: FakePeer) -> dict[str, Any]:
    """A peer served by `fake`, registered by the admin and installed by `a`."""
    admin, a = setup
    return await register_peer(client, admin, fake.base_url, installed_by=a)


@pytest.fixture
async def job_id(client: httpx.AsyncClient, db: Database, setup: Any, peer: dict[str, Any]) -> str:
    """A run of `peer`'s draft-reply by `a`, handed to the peer and waiting for its callback."""
    _, a = setup
    return await dispatch(client, db, peer, a)


async def job_of(client: httpx.AsyncClient, a: Account, job_id: str) -> dict[str, Any]:
    return dict((await client.get(f"/v1/jobs/{job_id}", headers=a.h())).json())


async def test_round_trip_success_with_trace_id_end_to_end(
    client: httpx.AsyncClient, db: Database, setup: Any, fake: FakePeer, peer: dict[str, Any]
) -> None:
    admin, a = setup
    health = await client.get(f"/v1/admin/peers/{peer['slug']}/health", headers=admin.h())
    assert health.json()["healthy"] is True and health.json()["status"] == 200
    listed = await all_actions(client, a)
    assert {"component": peer["slug"], "action": "draft-reply", "price": 5}.items() <= next(
        x for x in listed if x["component"] == peer["slug"] and x["action"] == "draft-reply"
    ).items()

    trace = uuid.uuid4().hex
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        run = await client.post(
            f"/v1/run/{peer['slug']}/draft-reply",
            json={"input": {"message": "Bonjour"}},
            headers={**a.h(), "traceparent": f"00-{trace}-{'1' * 16}-01"},
        )
        assert run.status_code == 202, run.text
        job_id = run.json()["job_id"]
        # The job continues the caller's trace: its id is the request's trace id.
        assert run.json()["trace_id"] == trace == uuid.UUID(job_id).hex
        assert run.headers["x-trace-id"] == trace and run.headers["location"] == f"/v1/jobs/{job_id}"
        await Relay(db).drain()
        assert len(fake.received) == 1
        sent, headers = fake.received[0], fake.headers[0]
        assert sent["job_id"] == job_id and sent["trace_id"] == trace and sent["action"] == "draft-reply"
        assert sent["input"] == {"message": "Bonjour"} and sent["tenant_id"] == a.id
        assert sent["callback_url"].endswith(f"/v1/jobs/{job_id}/callback")
        assert headers["traceparent"].split("-")[1] == trace and headers["idempotency-key"] == job_id
        raw = fake.received_raw[0]
        # Signed per Standard Webhooks; the message id is the job id, stable over retries.
        assert signed_by(peer["secret"], raw, headers) and headers["webhook-id"] == job_id
        assert (await job_of(client, a, job_id))["status"] == "running"

        result = {
            "status": "succeeded",
            "output": {"draft": "Merci !"},
            "usage": {"credits": 4, "metrics": {"tokens": 812, "seconds": 1.5, "temperature": 1.0}},
        }
        body, sig = signed(peer["secret"], result)
        done = await client.post(f"/v1/jobs/{job_id}/callback", content=body, headers=sig)
        assert done.status_code == 200 and done.json() == {
            "job_id": job_id,
            "status": "succeeded",
            "applied": True,
        }
    # By job id alone: the relay drain may also deliver an earlier test's leftover peer job.
    lines = [e for e in logs if e.get("job_id") == job_id]
    assert {e["event"] for e in lines} >= {
        "job_queued",
        "job_started",
        "peer_call",
        "peer_accepted",
        "job_succeeded",
    }
    assert all(e["trace_id"] == trace for e in lines), [(e["event"], e["trace_id"]) for e in lines]

    finished = await job_of(client, a, job_id)
    assert finished["output"] == {"draft": "Merci !"}
    # As the peer wrote them: a count stays an integer, a measure a float.
    usage = finished["usage"]
    assert usage == {"tokens": 812, "seconds": 1.5, "temperature": 1.0}
    assert [type(usage[k]) for k in ("tokens", "seconds", "temperature")] == [int, float, float]
    assert finished["credits_captured"] == 4 and finished["hold_status"] == "captured"
    # Duplicate and late callbacks: 200, applied false, nothing moves.
    again = await client.post(f"/v1/jobs/{job_id}/callback", content=body, headers=sig)
    assert again.status_code == 200 and again.json()["applied"] is False
    fail_late_body, fail_late = signed(peer["secret"], {"status": "failed", "error": {"code": "oops"}})
    late = await client.post(f"/v1/jobs/{job_id}/callback", content=fail_late_body, headers=fail_late)
    assert late.json() == {"job_id": job_id, "status": "succeeded", "applied": False}
    balance = (await client.get("/v1/credits", headers=a.h())).json()
    assert (balance["balance"], balance["held"]) == (16, 0)
    assert_consistent(await ledger_state(db, a.id))


async def test_peer_failure_callback_releases(
    client: httpx.AsyncClient, db: Database, setup: Any, peer: dict[str, Any], job_id: str
) -> None:
    _, a = setup
    body, sig = signed(
        peer["secret"],
        {"status": "failed", "error": {"code": "model_overloaded", "message": "try later"}},
    )
    r = await client.post(f"/v1/jobs/{job_id}/callback", content=body, headers=sig)
    assert r.json()["applied"] is True
    failed = await job_of(client, a, job_id)
    assert failed["status"] == "failed" and failed["error"] == {
        "code": "model_overloaded",
        "message": "try later",
    }
    await assert_nothing_charged(client, db, a)


async def test_unreachable_peer_fails_with_a_reason(
    client: httpx.AsyncClient, db: Database, setup: Any
) -> None:
    admin, a = setup
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    peer = await register_peer(client, admin, nowhere, installed_by=a)
    job_id = await dispatch(client, db, peer, a)
    failed = await job_of(client, a, job_id)
    assert failed["status"] == "failed" and failed["error"]["code"] == "peer_unreachable"
    assert failed["hold_status"] == "released"
    await assert_nothing_charged(client, db, a)
    health = (await client.get(f"/v1/admin/peers/{peer['slug']}/health", headers=admin.h())).json()
    assert health["healthy"] is False and health["status"] is None


async def test_peer_errors_are_retried_a_bounded_number_of_times(
    client: httpx.AsyncClient, db: Database, setup: Any
) -> None:
    admin, a = setup
    async with FakePeer() as fake:
        fake.mode = "error"
        peer = await register_peer(client, admin, fake.base_url, installed_by=a)
        job_id = await dispatch(client, db, peer, a)
        assert len(fake.received) == db.settings.peer_max_attempts
        failed = await job_of(client, a, job_id)
        assert failed["error"]["code"] == "peer_error" and "503" in failed["error"]["message"]

        fake.mode = "reject"
        fake.received.clear()
        job2 = await dispatch(client, db, peer, a)
        assert len(fake.received) == 1  # a 4xx is the peer's final word
        assert (await job_of(client, a, job2))["error"]["code"] == "peer_rejected"
    await assert_nothing_charged(client, db, a)


async def test_peer_request_timeout(client: httpx.AsyncClient, db: Database, setup: Any) -> None:
    admin, a = setup
    quick = Database(
        db.settings.model_copy(update={"peer_request_timeout_seconds": 0.3, "peer_max_attempts": 2})
    )
    try:
        async with FakePeer() as fake:
            fake.mode, fake.slow_seconds = "slow", 1.5
            peer = await register_peer(client, admin, fake.base_url, installed_by=a)
            job_id = await dispatch(client, quick, peer, a)
            failed = await job_of(client, a, job_id)
            assert failed["status"] == "failed" and failed["error"]["code"] == "peer_timeout"
            assert len(fake.received) == 2
    finally:
        await quick.dispose()
    await assert_nothing_charged(client, db, a)


async def test_no_callback_before_the_deadline_fails_as_timeout(
    client: httpx.AsyncClient, db: Database, setup: Any
) -> None:
    admin, a = setup
    async with FakePeer() as fake:
        peer = await register_peer(client, admin, fake.base_url, installed_by=a, timeout_seconds=30)
        job_id = await dispatch(client, db, peer, a)
        running_job = await job_of(client, a, job_id)
        deadline = dt.datetime.fromisoformat(running_job["deadline_at"])
        started = dt.datetime.fromisoformat(running_job["started_at"])
        assert abs((deadline - started).total_seconds() - 30) < 1
        # The sweep reaches every tenant's jobs, and modules that ran before on this worker may
        # have left jobs whose deadline comes sooner: what must hold is that this job is not due.
        async with db.system() as uow:
            await billing.sweep(uow, now=deadline - dt.timedelta(seconds=1))
        assert (await job_of(client, a, job_id))["status"] == "running"
        async with db.system() as uow:
            await billing.sweep(uow, now=deadline + dt.timedelta(seconds=1))
        failed = await job_of(client, a, job_id)
        assert failed["status"] == "failed" and failed["error"]["code"] == "timeout"
        # The peer's late success changes nothing and charges nothing.
        body, sig = signed(
            peer["secret"], {"status": "succeeded", "output": {"late": True}, "usage": {"credits": 5}}
        )
        late = await client.post(f"/v1/jobs/{job_id}/callback", content=body, headers=sig)
        assert late.status_code == 200 and late.json()["applied"] is False
    assert (await job_of(client, a, job_id))["output"] is None
    await assert_nothing_charged(client, db, a)


async def test_bad_signatures_are_refused_and_end_the_job_as_failed(
    client: httpx.AsyncClient, db: Database, setup: Any, peer: dict[str, Any], job_id: str
) -> None:
    _, a = setup
    result = {"status": "succeeded", "output": {"x": 1}, "usage": {"credits": 5}}
    forged_body, forged = signed(webhooks.new_secret(), result)
    r = await client.post(f"/v1/jobs/{job_id}/callback", content=forged_body, headers=forged)
    assert r.status_code == 401 and r.json()["code"] == "signature_invalid" and r.json()["hint"]
    unsigned = await client.post(f"/v1/jobs/{job_id}/callback", json=result)
    assert unsigned.status_code == 401 and unsigned.json()["code"] == "signature_missing"
    body, good = signed(peer["secret"], result, timestamp=int(dt.datetime.now(dt.UTC).timestamp()) - 3600)
    stale = await client.post(f"/v1/jobs/{job_id}/callback", content=body, headers=good)
    assert stale.status_code == 401 and stale.json()["code"] == "signature_stale"
    # A forged callback cannot end the job: it is still waiting for its peer.
    assert (await job_of(client, a, job_id))["status"] == "running"
    other = await client.post(f"/v1/jobs/{uuid.uuid4()}/callback", content=forged_body, headers=forged)
    assert other.status_code == 404 and other.json()["code"] == "job_not_found"

    running_job = await job_of(client, a, job_id)
    async with db.system() as uow:
        await billing.sweep(
            uow, now=dt.datetime.fromisoformat(running_job["deadline_at"]) + dt.timedelta(seconds=1)
        )
    failed = await job_of(client, a, job_id)
    assert failed["status"] == "failed" and failed["error"]["code"] == "signature_invalid"
    assert failed["hold_status"] == "released" and failed["credits_captured"] == 0
    await assert_nothing_charged(client, db, a)


async def test_malformed_callback_bodies_are_422(
    client: httpx.AsyncClient, db: Database, setup: Any, peer: dict[str, Any], job_id: str
) -> None:
    _, a = setup
    for bad in (
        b"not json",
        b'{"status": "maybe"}',
        b'{"status": "succeeded", "usage": {"credits": -1}}',
        b'{"status": "succeeded", "usage": {"metrics": {"tokens": true}}}',
        b'{"status": "succeeded", "usage": {"metrics": {"tokens": "812"}}}',
        b'{"status": "succeeded", "usage": {"metrics": {"tokens": 99999999999999999999}}}',
        b'{"status": "succeeded", "output": {"a": NaN}}',
        b'{"status": "succeeded", "output": ' + b'{"a":' * 200 + b"1" + b"}" * 200 + b"}",
    ):
        body, sig = signed(peer["secret"], bad)
        r = await client.post(f"/v1/jobs/{job_id}/callback", content=body, headers=sig)
        assert r.status_code == 422, r.text
        # The callback's own shape, not an action's input.
        assert "callback" in r.json()["hint"] and "input" not in r.json()["hint"], r.text
    assert (await job_of(client, a, job_id))["status"] == "running"
    # A peer's own output may nest deeper than a settings document (32 levels), within reason.
    deep = b'{"status": "succeeded", "output": ' + b'{"a":' * 60 + b"1" + b"}" * 60 + b"}"
    body, sig = signed(peer["secret"], deep)
    r = await client.post(f"/v1/jobs/{job_id}/callback", content=body, headers=sig)
    assert r.status_code == 200, r.text
    assert (await job_of(client, a, job_id))["status"] == "succeeded"  # and it reads back


async def test_peer_admin_rotation_and_validation(
    client: httpx.AsyncClient, db: Database, setup: Any, fake: FakePeer, peer: dict[str, Any]
) -> None:
    admin, a = setup
    dup = await client.post(
        "/v1/admin/peers",
        json={
            "slug": peer["slug"],
            "name": "x",
            "base_url": fake.base_url,
            "actions": [{"name": "act", "price": 1}],
        },
        headers=admin.h(),
    )
    # Registering a peer registers a component: the registry owns the slug.
    assert dup.status_code == 409 and dup.json()["code"] == "component_exists"
    builtin = await client.post(
        "/v1/admin/peers",
        json={
            "slug": "identity",
            "name": "x",
            "base_url": fake.base_url,
            "actions": [{"name": "act", "price": 1}],
        },
        headers=admin.h(),
    )
    assert builtin.status_code == 409, builtin.text
    bad_url = await client.post(
        "/v1/admin/peers",
        json={
            "slug": "peer-bad",
            "name": "x",
            "base_url": "ftp://x",
            "actions": [{"name": "act", "price": 1}],
        },
        headers=admin.h(),
    )
    assert bad_url.status_code == 422
    job_id = await dispatch(client, db, peer, a)
    rotated = await client.patch(
        f"/v1/admin/peers/{peer['slug']}", json={"rotate_secret": True}, headers=admin.h()
    )
    assert rotated.status_code == 200 and rotated.json()["secret"] not in (None, peer["secret"])
    new_key = rotated.json()["secret"]
    assert new_key.startswith("whsec_") and len(rotated.json()["keys"]) == 2
    assert rotated.json()["keys"][0]["retires_at"] is None and rotated.json()["keys"][1]["retires_at"]
    # During the overlap the old key still verifies, and our calls carry both signatures.
    body, old = signed(peer["secret"], {"status": "failed"})
    overlap = await client.post(f"/v1/jobs/{job_id}/callback", content=body, headers=old)
    assert overlap.status_code == 200, overlap.text
    second = await dispatch(client, db, peer, a)
    raw, sent = fake.received_raw[-1], fake.headers[-1]
    assert signed_by(new_key, raw, sent) and signed_by(peer["secret"], raw, sent)
    assert len(sent["webhook-signature"].split(" ")) == 2
    # Retired explicitly: the old key stops at once, the new one works.
    retired = await client.patch(
        f"/v1/admin/peers/{peer['slug']}", json={"retire_old_secrets": True}, headers=admin.h()
    )
    assert retired.status_code == 200 and retired.json()["secret"] is None
    assert len(retired.json()["keys"]) == 1
    body, old = signed(peer["secret"], {"status": "succeeded"})
    refused = await client.post(f"/v1/jobs/{second}/callback", content=body, headers=old)
    assert refused.status_code == 401 and refused.json()["code"] == "signature_invalid"
    body, new = signed(new_key, {"status": "succeeded"})
    assert (await client.post(f"/v1/jobs/{second}/callback", content=body, headers=new)).json()[
        "applied"
    ] is True
    # A rotation with no grace ends the old key at once; our calls then carry one signature.
    now = await client.patch(
        f"/v1/admin/peers/{peer['slug']}",
        json={"rotate_secret": True, "secret_grace_seconds": 0},
        headers=admin.h(),
    )
    newest = now.json()["secret"]
    assert [k["retires_at"] for k in now.json()["keys"]] == [None]
    third = await dispatch(client, db, peer, a)
    raw, sent = fake.received_raw[-1], fake.headers[-1]
    assert signed_by(newest, raw, sent) and not signed_by(new_key, raw, sent)
    body, old = signed(new_key, {"status": "succeeded"})
    late = await client.post(f"/v1/jobs/{third}/callback", content=body, headers=old)
    assert late.status_code == 401 and late.json()["code"] == "signature_invalid"
    kept = (
        await system_sql(
            db,
            "SELECT count(*) FROM billing.peer_secrets s JOIN billing.peers p ON p.id = s.peer_id WHERE p.slug = :s",
            {"s": peer["slug"]},
        )
    ).scalar_one()
    # Keys past their end are deleted at the next rotation; the one just ended waits for it.
    assert kept == 2
    off = await client.patch(f"/v1/admin/peers/{peer['slug']}", json={"enabled": False}, headers=admin.h())
    assert off.json()["enabled"] is False and off.json()["secret"] is None
    gone = await client.post(f"/v1/run/{peer['slug']}/draft-reply", json={"input": {}}, headers=a.h())
    assert gone.status_code == 404 and gone.json()["code"] == "unknown_action"
    listed = await all_peers(client, admin)
    assert peer["slug"] in {p["slug"] for p in listed} and "secret" not in listed[0]


async def test_peer_secrets_are_unreadable_outside_system_mode(
    client: httpx.AsyncClient, db: Database, setup: Any
) -> None:
    admin, a = setup
    await register_peer(client, admin, "http://127.0.0.1:9")
    assert (await raw_as(db, "user", a.id, None, "SELECT count(*) FROM billing.peer_secrets"))[0][0] == 0
    assert (await raw_as(db, "user", a.id, None, "SELECT count(*) FROM billing.peers"))[0][0] > 0


def test_standard_webhooks_signatures() -> None:
    key, other = webhooks.new_secret(), webhooks.new_secret()
    body = '{"a":1,"name":"été"}'.encode()
    headers = webhooks.signed_headers([key], body, message_id="msg_1")
    assert headers["webhook-id"] == "msg_1" and headers["webhook-signature"].startswith("v1,")
    assert webhooks.verify([key], body, headers, 300) is None
    # Any active key verifies (rotation); a message signed with both verifies with either.
    assert webhooks.verify([other, key], body, headers, 300) is None
    both = webhooks.signed_headers([other, key], body)
    assert (
        webhooks.verify([key], body, both, 300) is None and webhooks.verify([other], body, both, 300) is None
    )
    assert webhooks.verify([other], body, headers, 300) == "signature_invalid"
    assert webhooks.verify([], body, headers, 300) == "signature_invalid"
    # Tampered body, id or timestamp: the signature covers all three.
    assert webhooks.verify([key], body + b" ", headers, 300) == "signature_invalid"
    assert webhooks.verify([key], body, {**headers, "webhook-id": "msg_2"}, 300) == "signature_invalid"
    moved = str(int(headers["webhook-timestamp"]) - 1)
    assert webhooks.verify([key], body, {**headers, "webhook-timestamp": moved}, 300) == "signature_invalid"
    # Expired (a replay of an old message) and from the future.
    old_body, old = signed(key, body, timestamp=int(time.time()) - 400)
    assert webhooks.verify([key], old_body, old, 300) == "signature_stale"
    _, soon = signed(key, body, timestamp=int(time.time()) + 400)
    assert webhooks.verify([key], body, soon, 300) == "signature_stale"
    _, recent = signed(key, body, timestamp=int(time.time()) - 100)
    assert webhooks.verify([key], body, recent, 60) == "signature_stale"
    assert webhooks.verify([key], body, recent, 300) is None
    # Missing, malformed, the retired formats and a body that is not UTF-8: refused, never raised.
    assert webhooks.verify([key], body, {}, 300) == "signature_missing"
    assert webhooks.verify([key], body, {**headers, "webhook-id": ""}, 300) == "signature_missing"
    assert webhooks.verify([key], body, {**headers, "webhook-timestamp": "soon"}, 300) == "signature_invalid"
    for bad in ("sha256=abc", "t=1,v1=abc", "v1,not base64!", "v1", "v2,abc"):
        assert webhooks.verify([key], body, {**headers, "webhook-signature": bad}, 300) == "signature_invalid"
    assert webhooks.verify([key], b"\xff\xfe", headers, 300) == "signature_invalid"
    assert webhooks.secret_list(f" {key}, {other}\n") == [key, other] and webhooks.secret_list(None) == []


async def test_the_relay_runs_peer_jobs_in_a_live_app(db: Database) -> None:
    """The whole loop with the app's own relay (woken by NOTIFY), over real HTTP both ways."""
    async with FakePeer() as fake:
        port = free_port()
        settings = db.settings.model_copy(update={"port": port, "relay_poll_seconds": 0.2})
        live_db = Database(settings)
        app = create_app(settings, db=live_db, run_relay=True)
        try:
            async with serving(app, port) as base, httpx.AsyncClient(base_url=base) as http:
                a = await signup(http)
                # a is their own platform admin here
                await system_sql(
                    live_db,
                    "UPDATE platform.persons SET is_platform_admin = true WHERE id = :p",
                    {"p": uuid.UUID(a.id)},
                )
                await grant(http, a, 10, person=a.slug)
                peer = await register_peer(http, a, fake.base_url, installed_by=a)
                run = (
                    await http.post(f"/v1/run/{peer['slug']}/draft-reply", json={"input": {}}, headers=a.h())
                ).json()
                await asyncio.wait_for(fake.got.wait(), 10)
                callback_url = fake.received[0]["callback_url"]
                assert callback_url == f"http://127.0.0.1:{port}/v1/jobs/{run['job_id']}/callback"
                body, sig = signed(peer["secret"], {"status": "succeeded", "output": {"ok": 1}})
                async with httpx.AsyncClient() as peer_side:
                    r = await peer_side.post(callback_url, content=body, headers=sig)
                assert r.json()["applied"] is True
                done = (await http.get(f"/v1/jobs/{run['job_id']}", headers=a.h())).json()
                assert done["status"] == "succeeded" and done["credits_captured"] == 5
        finally:
            await live_db.dispose()
