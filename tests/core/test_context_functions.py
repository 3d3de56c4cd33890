"""The context functions of security_0004 and security_0006 and the helpers security_0005 moved to PL/pgSQL answer
exactly as the bodies they replaced, in every mode the policies can meet: none, a signed user (with their org, without one, in an org they are
not a member of, without a person), a forged, replayed or re-pointed signature, 'system' and
'service' claimed on the app role (believed by nothing) and on the system role, and garbage.
The old bodies are installed beside the new ones, from the migrations that wrote them, in a
scratch schema; each scenario also pins a few answers so a shared mistake cannot pass."""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from core.credentials import parse_api_key
from core.db import asyncpg_url
from core.uow import Database
from migrations.rls import split_sql
from tests.conftest import Account, join_org, make_org, signup
from tests.support.rls import signature

OLD = "ctx_reference"
_SIGNING = importlib.import_module("migrations.versions.security_0001_unforgeable_tenant_context")
# (migration module, script attribute, functions of it whose old body is the reference)
SOURCES = (
    (
        "0001_platform_tenancy_and_event_spine",
        "GUARD_FUNCTIONS",
        (
            "ctx_tenant_id",
            "owns_org",
            "has_invitation",
            "co_member_ids",
            "person_id_by_slug",
            "person_id_by_email",
        ),
    ),
    (
        "security_0001_unforgeable_tenant_context",
        "CONTEXT_FUNCTIONS",
        ("ctx_mode", "ctx_person_id", "ctx_is_system", "ctx_org_id", "ctx_is_platform_admin"),
    ),
    # The reference ctx_mode signs with the reference helpers: old bodies end to end.
    ("security_0001_unforgeable_tenant_context", "PRIVATE_FUNCTIONS", ("mac", "user_msg", "ticket")),
    ("bookings_0001_services_availability_bookings", "PROVIDER_FUNCTIONS", ("may_schedule",)),
    # Binding through the reference ticket (and, unchanged, platform_private.bind_user).
    ("security_0003_context_with_toolsets", "RESOLVE_CONTEXT", ("resolve_context",)),
)
# {p}: platform's schema or the reference one; {b}: bookings' or the reference one.
ASKED = (
    "{p}.ctx_mode()",
    "{p}.ctx_is_system()",
    "{p}.ctx_person_id()",
    "{p}.ctx_org_id()",
    "{p}.ctx_tenant_id()",
    "{p}.ctx_is_platform_admin()",
    "{b}.may_schedule(CAST(:a AS uuid))",
    "{b}.may_schedule(CAST(:b AS uuid))",
    "{b}.may_schedule(CAST(:s AS uuid))",
    "{b}.may_schedule(NULL)",
    "{p}.owns_org(CAST(:org AS uuid))",
    "{p}.owns_org(NULL)",
    "{p}.has_invitation(CAST(:org AS uuid), 'admin')",
    "{p}.has_invitation(CAST(:org AS uuid), 'member')",
    "ARRAY(SELECT x FROM {p}.co_member_ids() AS x ORDER BY x)",
    "{p}.person_id_by_slug(:slug)",
    "{p}.person_id_by_slug(upper(:slug))",
    "{p}.person_id_by_slug('nobody-has-this-slug')",
    "{p}.person_id_by_email(upper(:email))",
    "{p}.person_id_by_email(NULL)",
)
SET = (
    "SELECT set_config('app.mode', :m, true), set_config('app.person_id', :p, true),"
    " set_config('app.org_id', :o, true), set_config('app.ctx_sig', :sig, true)"
)


def _old_bodies() -> list[str]:
    names = {name for _, _, wanted in SOURCES for name in wanted}
    out: list[str] = []
    for module, attr, wanted in SOURCES:
        script = getattr(importlib.import_module(f"migrations.versions.{module}"), attr)
        script = script.replace("{ticket_seconds}", str(_SIGNING.TICKET_SECONDS))
        for stmt in split_sql(script):
            header = stmt.split("(", 1)[0]
            if any(header.endswith(f".{name}") for name in wanted):
                stmt = stmt.replace("CREATE OR REPLACE FUNCTION", "CREATE FUNCTION")
                for name in names:
                    stmt = stmt.replace(f"platform.{name}(", f"{OLD}.{name}(")
                    stmt = stmt.replace(f"bookings.{name}(", f"{OLD}.{name}(")
                    stmt = stmt.replace(f"platform_private.{name}(", f"{OLD}.{name}(")
                out.append(stmt)
    assert len(out) == len(names)
    return out


@pytest.fixture
async def reference(db: Database) -> AsyncIterator[None]:
    owner = create_async_engine(asyncpg_url(db.settings.database_url or ""))
    try:
        async with owner.begin() as conn:
            await conn.execute(text(f"CREATE SCHEMA {OLD}"))
            await conn.execute(text(f"GRANT USAGE ON SCHEMA {OLD} TO PUBLIC"))
            # They call each other; the order of the sources is not the order of creation.
            await conn.execute(text("SET LOCAL check_function_bodies = off"))
            for stmt in _old_bodies():
                await conn.execute(text(stmt))
        yield
    finally:
        async with owner.begin() as conn:
            await conn.execute(text(f"DROP SCHEMA IF EXISTS {OLD} CASCADE"))
        await owner.dispose()


async def _answers(
    db: Database, system_role: bool, ctx: dict[str, str], sig: str, ids: dict[str, str]
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(new answers, old answers) in one transaction bound to `ctx`. `sig`: 'valid' (signed
    as resolve_context signs), 'other-org' (signed for no org, claiming one), 'replayed' (from
    another transaction), 'zeros', or '' (none)."""
    engine = db.system_engine if system_role else db.engine
    if sig == "replayed":
        async with engine.connect() as conn, conn.begin():
            ctx["sig"] = await signature(db, conn, ctx["p"], ctx["o"])
    async with engine.connect() as conn, conn.begin():
        if sig in ("valid", "other-org"):
            ctx["sig"] = await signature(db, conn, ctx["p"], ctx["o"] if sig == "valid" else "")
        elif sig == "zeros":
            ctx["sig"] = "0" * 64
        elif sig == "":
            ctx["sig"] = ""
        await conn.execute(text(SET), ctx)
        answers: tuple[list[Any], list[Any]] = ([], [])
        for asked in ASKED:
            new, old = asked.format(p="platform", b="bookings"), asked.format(p=OLD, b=OLD)
            for into, call in zip(answers, (new, old), strict=True):
                try:  # an error (a garbage setting cast) is an answer too
                    async with conn.begin_nested():
                        into.append((await conn.execute(text(f"SELECT {call}"), ids)).scalar())
                except DBAPIError as e:
                    into.append(f"error {getattr(e.orig, 'sqlstate', '')}")
    return tuple(answers[0]), tuple(answers[1])


async def _world(client: httpx.AsyncClient, db: Database) -> tuple[Account, Account, Account, str]:
    a, b, stranger = await signup(client), await signup(client), await signup(client)
    org = await make_org(client, a)
    await join_org(client, org, a, b)
    # A pending invitation for the stranger (has_invitation, the persons policy's invitations).
    invited = await client.post(
        f"/v1/orgs/{org}/invitations", json={"person": stranger.slug, "role": "admin"}, headers=a.h()
    )
    assert invited.status_code == 201, invited.text
    owner = create_async_engine(asyncpg_url(db.settings.database_url or ""))
    try:
        async with owner.begin() as conn:
            org_id = (
                await conn.execute(text("SELECT id FROM platform.orgs WHERE slug = :s"), {"s": org})
            ).scalar()
            await conn.execute(
                text("UPDATE platform.persons SET is_platform_admin = true WHERE id = :a"),
                {"a": uuid.UUID(a.id)},
            )
    finally:
        await owner.dispose()
    return a, b, stranger, str(org_id)


async def test_each_rewritten_function_answers_as_the_old_one_in_every_mode(
    client: httpx.AsyncClient, db: Database, reference: None
) -> None:
    a, b, stranger, org = await _world(client, db)
    ids = {"a": a.id, "b": b.id, "s": stranger.id, "org": org, "slug": b.slug, "email": stranger.email}
    # (system role?, mode, person, org, signature) -> a few answers pinned:
    # (ctx_mode, ctx_person_id, ctx_tenant_id, may_schedule(b))
    cases: list[tuple[bool, str, str, str, str, tuple[Any, ...]]] = [
        (False, "user", a.id, org, "valid", ("user", a.id, org, True)),
        (False, "user", a.id, "", "valid", ("user", a.id, a.id, False)),
        (False, "user", stranger.id, org, "valid", ("user", stranger.id, None, False)),
        (False, "user", stranger.id, "", "valid", ("user", stranger.id, stranger.id, False)),
        (False, "user", b.id, "", "valid", ("user", b.id, b.id, True)),
        (False, "user", "", "", "valid", ("user", None, None, None)),
        (False, "user", "", org, "valid", ("user", None, None, None)),
        (False, "user", a.id, org, "zeros", ("none", None, None, None)),
        (False, "user", a.id, org, "replayed", ("none", None, None, None)),
        (False, "user", a.id, org, "other-org", ("none", None, None, None)),
        (False, "user", a.id, org, "", ("none", None, None, None)),
        (False, "system", a.id, org, "", ("none", None, None, None)),
        (False, "service", a.id, org, "", ("none", None, None, None)),
        # A claimed org that is no uuid fails the statement (as before); a person is never cast.
        (False, "system", "not-a-uuid", "not-a-uuid", "", ("none", None, "error 22P02", "error 22P02")),
        (False, "system", "not-a-uuid", "", "", ("none", None, None, None)),
        (False, "", "", "", "", ("none", None, None, None)),
        (True, "system", "", org, "", ("system", None, org, True)),
        (True, "system", "", "", "", ("system", None, None, True)),
        (True, "service", a.id, org, "", ("service", a.id, org, True)),
        (True, "service", stranger.id, "", "", ("service", stranger.id, stranger.id, False)),
        (True, "service", "", "", "", ("service", None, None, None)),
        (True, "user", a.id, org, "", ("none", None, None, None)),
        (True, "", "", "", "", ("none", None, None, None)),
    ]
    for system_role, mode, person, o, sig, pinned in cases:
        ctx = {"m": mode, "p": person, "o": o}
        new, old = await _answers(db, system_role, ctx, sig, ids)
        label = (system_role, mode, person == a.id, bool(o), sig)
        compared_new, compared_old = new, old
        if o == "not-a-uuid":
            # may_schedule(NULL) reaches the claimed org's cast only if its plan keeps the
            # membership subquery: a custom plan, made for the NULL it is called with, folds
            # `person_id = NULL` away, a generic one does not, and which one a connection uses
            # depends on its earlier calls. Either answer refuses; the rest must agree.
            assert {new[9], old[9]} <= {None, "error 22P02"}, label
            compared_new, compared_old = new[:9] + new[10:], old[:9] + old[10:]
        assert compared_new == compared_old, label
        as_text = tuple(None if v is None else str(v) for v in (new[0], new[2], new[4]))
        assert (*as_text, new[7]) == pinned, label
        # The platform admin flag counts only in a verified user context.
        assert new[5] is (mode == "user" and sig == "valid" and person == a.id), label
        verified = sig == "valid" or (system_role and mode in ("system", "service"))
        acting = person if verified and person != "not-a-uuid" else ""
        # The org's owner owns it; the stranger holds the admin invitation; a and b share it.
        assert new[10] is (acting == a.id), label
        assert (new[12], new[13]) == (acting == stranger.id, False), label
        members = sorted([uuid.UUID(a.id), uuid.UUID(b.id)])
        assert new[14] == (members if acting in (a.id, b.id) else []), label
        # The lookups do not depend on the context.
        assert (str(new[15]), str(new[16]), new[17], str(new[18])) == (b.id, b.id, None, stranger.id), label


def _hmac(ipad: bytes, opad: bytes, msg: str) -> str:
    """HMAC-SHA256 as security_0001 defined it, over the stored padded key, computed here."""
    inner = hashlib.sha256(ipad + msg.encode()).digest()
    return hashlib.sha256(opad + inner).hexdigest()


async def test_the_signing_helpers_compute_what_they_did(db: Database, reference: None) -> None:
    """Signatures and tickets made by the old helpers verify with the new ones and the other way
    round (a rolling upgrade meets both): the same bytes, for any message, in one transaction."""
    owner = create_async_engine(asyncpg_url(db.settings.database_url or ""))
    person, org = uuid.uuid4(), uuid.uuid4()
    try:
        async with owner.connect() as conn, conn.begin():
            ipad, opad = (
                await conn.execute(text("SELECT k_ipad, k_opad FROM platform_private.context_key"))
            ).one()

            async def both(call: str, params: dict[str, Any]) -> Any:
                new = (await conn.execute(text(f"SELECT platform_private.{call}"), params)).scalar()
                old = (await conn.execute(text(f"SELECT {OLD}.{call}"), params)).scalar()
                assert new == old, (call, params)
                return new

            for msg in ("user|a|b|1|2.5", "", "ünïcødé ✓ | ' \\", "x" * 5000):
                assert await both("mac(:m)", {"m": msg}) == _hmac(ipad, opad, msg)
            assert await both("mac(CAST(:m AS text))", {"m": None}) is None
            backend, started = (
                await conn.execute(text("SELECT pg_backend_pid(), extract(epoch FROM now())::text"))
            ).one()
            for p, o in ((str(person), str(org)), (str(person), ""), ("", ""), (None, None)):
                made = await both("user_msg(CAST(:p AS text), CAST(:o AS text))", {"p": p, "o": o})
                assert made == f"user|{p or ''}|{o or ''}|{backend}|{started}"
            for p2, o2 in ((person, org), (person, None), (None, None)):
                ticket = await both("ticket(CAST(:p AS uuid), CAST(:o AS uuid))", {"p": p2, "o": o2})
                if p2 is None:
                    assert ticket is None
                    continue
                expires, mac = ticket.split(".")
                assert int(expires) == int(float(started)) + _SIGNING.TICKET_SECONDS
                assert mac == _hmac(ipad, opad, f"ticket|{p2}|{o2 or ''}|{expires}")
    finally:
        await owner.dispose()


RESOLVED = (
    "SELECT r.*, current_setting('app.mode', true), current_setting('app.person_id', true),"
    " current_setting('app.org_id', true), current_setting('app.trace_id', true),"
    " current_setting('app.ctx_sig', true), current_setting('app.ctx_ticket', true)"
    " FROM {p}.resolve_context(CAST(:person AS uuid), CAST(:session AS uuid), :prefix, :hash,"
    " CAST(:org_id AS uuid), :org_slug, :trace, :toolsets) r"
)


def _claims(account: Account) -> dict[str, str]:
    payload = account.token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


async def test_resolve_context_binds_and_answers_as_the_old_body(
    client: httpx.AsyncClient, db: Database, reference: None
) -> None:
    """Credential by credential, the new body (security_0007) answers the same row and leaves
    the same settings -- the signature and the ticket included -- as security_0003's, called
    in the same transaction (same backend, same instant)."""
    a, b, stranger = await signup(client), await signup(client), await signup(client)
    org = await make_org(client, a)
    await join_org(client, org, a, b)
    made = await client.post("/v1/api-keys", json={"name": "k", "scopes": ["*"], "org": org}, headers=a.h())
    assert made.status_code == 201, made.text
    key = parse_api_key(made.json()["token"])
    assert key is not None
    org_id = str(made.json()["org"]["id"])
    ca, cb, cs = _claims(a), _claims(b), _claims(stranger)
    none = {"person": None, "session": None, "prefix": None, "hash": None, "org_id": None, "org_slug": None}
    cases: list[dict[str, Any]] = [
        {**none, "person": ca["sub"], "session": ca["sid"]},
        {**none, "person": ca["sub"], "session": ca["sid"], "org_slug": org},
        {**none, "person": ca["sub"], "session": ca["sid"], "org_id": org_id, "toolsets": True},
        {**none, "person": cb["sub"], "session": cb["sid"], "org_slug": org},
        {**none, "person": cs["sub"], "session": cs["sid"], "org_slug": org},
        {**none, "person": ca["sub"], "session": ca["sid"], "org_slug": "no-such-org"},
        {**none, "person": ca["sub"], "session": str(uuid.uuid4())},
        {**none, "person": ca["sub"], "session": cs["sid"]},
        {**none, "person": str(uuid.uuid4()), "session": ca["sid"]},
        {**none, "prefix": key[0], "hash": key[1]},
        {**none, "prefix": key[0], "hash": key[1], "org_slug": org, "toolsets": True},
        {**none, "prefix": key[0], "hash": "0" * 64},
    ]
    bound = 0
    for case in cases:
        params = {"toolsets": False, "trace": "t-" + uuid.uuid4().hex, **case}
        async with db.engine.connect() as conn, conn.begin():
            new = (await conn.execute(text(RESOLVED.format(p="platform")), params)).all()
            old = (await conn.execute(text(RESOLVED.format(p=OLD)), params)).all()
        assert new == old, case
        bound += bool(new)
        if new:
            # Signed for this backend and transaction: the setting verifies (or the test is void).
            assert new[0][-6] == "user" and len(new[0][-2]) == 64, case
    assert bound == 10  # all but the unknown person and the wrong key
