"""The second wall cannot be talked down: connected as the app role, no `set_config` of any
mode, person or org — nor a signature replayed from another transaction — shows a row of
anyone. Only `resolve_context` (after checking a credential) and the system role's own pool
bind a context the policies believe."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from core.opener import open_context
from core.uow import Database
from tests.conftest import signup
from tests.support.world import Victim, build_victim

CLIENTS = "SELECT count(*) FROM platform.clients WHERE id = ANY(:ids)"
SET = (
    "SELECT set_config('app.mode', :m, true), set_config('app.person_id', :p, true),"
    " set_config('app.org_id', :o, true), set_config('app.ctx_sig', :s, true)"
)


def _client_ids(v: Victim) -> list[uuid.UUID]:
    return [uuid.UUID(c) for c in v.refs["client_id"]]


async def _forged(db: Database, v: Victim, mode: str, person: str, org: str, sig: str = "") -> int:
    async with db.engine.connect() as conn, conn.begin():
        await conn.execute(text(SET), {"m": mode, "p": person, "o": org, "s": sig})
        return int((await conn.execute(text(CLIENTS), {"ids": _client_ids(v)})).scalar_one())


async def test_no_set_config_as_the_app_role_shows_anyones_rows(
    client: httpx.AsyncClient, db: Database
) -> None:
    v = await build_victim(client)
    me, org = v.person.id, v.org_id
    # What the victim legitimately sees through resolve_context: the test can fail.
    async with db.uow() as uow:
        await open_context(uow, v.person.token, v.org)
        seen = (await uow.session.execute(text(CLIENTS), {"ids": _client_ids(v)})).scalar_one()
        stolen_sig = (await uow.session.execute(text("SELECT current_setting('app.ctx_sig')"))).scalar_one()
    assert seen == 1  # the org's client, in the org context
    for mode, person, o, sig in (
        ("system", "", "", ""),
        ("system", me, org, ""),
        ("service", me, org, ""),
        ("service", me, "", ""),
        ("user", me, org, ""),
        ("user", me, "", ""),
        ("user", me, org, "0" * 64),
        ("user", me, org, stolen_sig),  # replayed into another transaction
    ):
        assert await _forged(db, v, mode, person, o, sig) == 0, (mode, bool(o), bool(sig))


async def test_the_key_and_the_signer_are_out_of_the_app_roles_reach(db: Database) -> None:
    for sql in (
        "SELECT * FROM platform_private.context_key",
        "SELECT platform_private.mac('user|x')",
        f"SET ROLE {db.settings.db_system_role}",
        f"SET ROLE {db.settings.db_owner_role}",
    ):
        async with db.engine.connect() as conn:
            with pytest.raises(DBAPIError, match="permission denied"):
                await conn.execute(text(sql))


async def test_a_context_ticket_rebinds_only_its_own_context(client: httpx.AsyncClient, db: Database) -> None:
    v = await build_victim(client)
    mallory = await signup(client, "mallory")
    async with db.uow() as uow:
        await open_context(uow, mallory.token)
        ticket = (await uow.session.execute(text("SELECT current_setting('app.ctx_ticket')"))).scalar_one()
    bind = "SELECT platform.bind_ticket(:p, :o, :t, 'trace')"
    async with db.engine.connect() as conn, conn.begin():
        # Mallory's own ticket binds Mallory's context in a new transaction...
        await conn.execute(text(bind), {"p": uuid.UUID(mallory.id), "o": None, "t": ticket})
        mode = (await conn.execute(text("SELECT platform.ctx_mode()"))).scalar_one()
        assert mode == "user"
    # ...and nobody else's, nor a tampered or expired one.
    expires, mac = ticket.split(".")
    for person, org, forged in (
        (v.person.id, None, ticket),
        (mallory.id, v.org_id, ticket),
        (mallory.id, None, f"{int(expires) + 10**6}.{mac}"),
        (mallory.id, None, f"1.{mac}"),
        (mallory.id, None, "garbage"),
    ):
        async with db.engine.connect() as conn:
            with pytest.raises(DBAPIError, match="invalid or expired context ticket"):
                await conn.execute(
                    text(bind), {"p": uuid.UUID(person), "o": uuid.UUID(org) if org else None, "t": forged}
                )


async def test_system_work_runs_on_the_system_role_and_sees_across_tenants(
    client: httpx.AsyncClient, db: Database
) -> None:
    v = await build_victim(client)
    async with db.system() as uow:
        role = (await uow.session.execute(text("SELECT session_user"))).scalar_one()
        seen = (await uow.session.execute(text(CLIENTS), {"ids": _client_ids(v)})).scalar_one()
    assert role == db.settings.db_system_role
    assert seen == 2
    # A request's unit of work that turns to system work leaves the app role's connection.
    async with db.uow() as uow:
        await open_context(uow, v.person.token)
        assert (
            await uow.session.execute(text("SELECT session_user"))
        ).scalar_one() == db.settings.db_app_role
        await uow.act_as_system()
        assert (
            await uow.session.execute(text("SELECT session_user"))
        ).scalar_one() == db.settings.db_system_role
        assert (await uow.session.execute(text(CLIENTS), {"ids": _client_ids(v)})).scalar_one() == 2
