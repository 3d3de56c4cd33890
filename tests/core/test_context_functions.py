"""The context functions of security_0004 answer exactly as the bodies they replaced, in every
mode the policies can meet: none, a signed user (with their org, without one, in an org they are
not a member of, without a person), a forged, replayed or re-pointed signature, 'system' and
'service' claimed on the app role (believed by nothing) and on the system role, and garbage.
The old bodies are installed beside the new ones, from the migrations that wrote them, in a
scratch schema; each scenario also pins a few answers so a shared mistake cannot pass."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from core.db import asyncpg_url
from core.uow import Database
from migrations.rls import split_sql
from tests.conftest import Account, make_org, signup
from tests.support.rls import signature

OLD = "ctx_reference"
# (migration module, script attribute, functions of it whose old body is the reference)
SOURCES = (
    ("0001_platform_tenancy_and_event_spine", "GUARD_FUNCTIONS", ("ctx_tenant_id",)),
    (
        "security_0001_unforgeable_tenant_context",
        "CONTEXT_FUNCTIONS",
        ("ctx_mode", "ctx_person_id", "ctx_is_system", "ctx_org_id", "ctx_is_platform_admin"),
    ),
    ("bookings_0001_services_availability_bookings", "PROVIDER_FUNCTIONS", ("may_schedule",)),
)
ASKED = (
    "ctx_mode()",
    "ctx_is_system()",
    "ctx_person_id()",
    "ctx_org_id()",
    "ctx_tenant_id()",
    "ctx_is_platform_admin()",
    "may_schedule(CAST(:a AS uuid))",
    "may_schedule(CAST(:b AS uuid))",
    "may_schedule(CAST(:s AS uuid))",
    "may_schedule(NULL)",
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
        for stmt in split_sql(script):
            header = stmt.split("(", 1)[0]
            if any(header.endswith(f".{name}") for name in wanted):
                stmt = stmt.replace("CREATE OR REPLACE FUNCTION", "CREATE FUNCTION")
                for name in names:
                    stmt = stmt.replace(f"platform.{name}(", f"{OLD}.{name}(")
                    stmt = stmt.replace(f"bookings.{name}(", f"{OLD}.{name}(")
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
            new = ("bookings." if asked.startswith("may_") else "platform.") + asked
            for into, call in zip(answers, (new, f"{OLD}.{asked}"), strict=True):
                try:  # an error (a garbage setting cast) is an answer too
                    async with conn.begin_nested():
                        into.append((await conn.execute(text(f"SELECT {call}"), ids)).scalar())
                except DBAPIError as e:
                    into.append(f"error {getattr(e.orig, 'sqlstate', '')}")
    return tuple(answers[0]), tuple(answers[1])


async def _world(client: httpx.AsyncClient, db: Database) -> tuple[Account, Account, Account, str]:
    a, b, stranger = await signup(client), await signup(client), await signup(client)
    org = await make_org(client, a)
    added = await client.post(f"/v1/orgs/{org}/members", json={"person": b.slug}, headers=a.h())
    assert added.status_code == 201, added.text
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
    ids = {"a": a.id, "b": b.id, "s": stranger.id}
    # (system role?, mode, person, org, signature) -> a few answers pinned:
    # (ctx_mode, ctx_person_id, ctx_tenant_id, may_schedule(b))
    cases: list[tuple[bool, str, str, str, str, tuple[Any, ...]]] = [
        (False, "user", a.id, org, "valid", ("user", a.id, org, True)),
        (False, "user", a.id, "", "valid", ("user", a.id, a.id, False)),
        (False, "user", stranger.id, org, "valid", ("user", stranger.id, None, False)),
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
        assert new == old, label
        as_text = tuple(None if v is None else str(v) for v in (new[0], new[2], new[4]))
        assert (*as_text, new[7]) == pinned, label
        # The platform admin flag counts only in a verified user context.
        assert new[5] is (mode == "user" and sig == "valid" and person == a.id), label
