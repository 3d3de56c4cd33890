"""Wall 2: row-level security alone keeps tenants apart. Raw SQL as the app role, with the
service layer's filters out of the way, shows no foreign row and cannot write one."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from core.uow import Database
from tests.conftest import signup
from tests.support.rls import raw_as
from tests.support.world import build_victim


async def _tables(db: Database) -> list[tuple[str, str, bool, list[str]]]:
    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT n.nspname, c.relname, c.relrowsecurity,"
                    " array_agg(a.attname::text) FILTER (WHERE t.typname = 'uuid') AS uuid_cols"
                    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " JOIN pg_roles r ON r.oid = n.nspowner"
                    " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
                    " JOIN pg_type t ON t.oid = a.atttypid"
                    " WHERE c.relkind IN ('r', 'p') AND r.rolname = :owner"
                    " AND n.nspname NOT IN ('atlilith_meta', 'platform_private')"
                    " GROUP BY 1, 2, 3 ORDER BY 1, 2"
                ),
                {"owner": db.settings.db_owner_role},
            )
        ).all()
    return [(r[0], r[1], r[2], r[3] or []) for r in rows]


async def _as(
    db: Database,
    mode: str,
    person: str | None,
    org: str | None,
    sql: str,
    params: dict[str, Any] | None = None,
) -> list[Any]:
    """Raw SQL as the app role; "signed-off" sets a person's context by hand (no signature)."""
    if mode == "signed-off":
        async with db.engine.connect() as conn, conn.begin():
            await conn.execute(
                text(
                    "SELECT set_config('app.mode', 'user', true), set_config('app.person_id', :p, true),"
                    " set_config('app.org_id', :o, true)"
                ),
                {"p": person or "", "o": org or ""},
            )
            return list((await conn.execute(text(sql), params or {})).all())
    if mode in ("system", "service"):
        # Claimed on the app role's connection, as injected SQL would: believed by nothing.
        async with db.engine.connect() as conn, conn.begin():
            await conn.execute(
                text("SELECT set_config('app.mode', :m, true), set_config('app.person_id', :p, true)"),
                {"m": mode, "p": person or ""},
            )
            return list((await conn.execute(text(sql), params or {})).all())
    return await raw_as(db, mode, person, org, sql, params)


async def test_app_role_is_not_superuser_and_every_table_has_rls(db: Database) -> None:
    async with db.engine.connect() as conn:
        role = (
            await conn.execute(
                text("SELECT rolsuper, rolbypassrls, current_user FROM pg_roles WHERE rolname = current_user")
            )
        ).one()
    assert role.current_user == db.settings.db_app_role
    assert not role.rolsuper and not role.rolbypassrls
    tables = await _tables(db)
    assert len(tables) >= 14
    assert [f"{s}.{t}" for s, t, rls, _ in tables if not rls] == []


async def test_raw_sql_in_another_tenants_context_returns_no_foreign_rows(
    client: httpx.AsyncClient, db: Database
) -> None:
    v = await build_victim(client)
    mallory = await signup(client, "mallory")
    ids = [str(i) for i in v.ids]
    checked = 0
    for schema, table, _, cols in await _tables(db):
        if not cols:
            continue
        where = " OR ".join(f"{c}::text = ANY(:ids)" for c in cols)
        sql = f"SELECT count(*) FROM {schema}.{table} WHERE {where}"
        for mode, person, org in (
            ("user", mallory.id, None),  # another person, personal context
            ("user", mallory.id, v.org_id),  # claiming the victim's org without membership
            ("service", mallory.id, None),  # a handler working for another tenant
            ("system", None, None),  # the platform across tenants, claimed by the app role
            ("signed-off", v.person.id, v.org_id),  # the victim's context, set by hand
            ("none", None, None),  # a transaction nobody bound to a context
            ("none", v.person.id, v.org_id),  # settings without a mode
        ):
            (count,) = (await _as(db, mode, person, org, sql, {"ids": ids}))[0]
            assert count == 0, (schema, table, mode, person == mallory.id, org)
            checked += 1
    assert checked > 40

    # The same queries do find the rows in the victim's own contexts: the test can fail.
    async def victim_sees(org: str | None, client_index: int) -> int:
        """Whether the victim, as a user in `org` (None: personal), sees one of their clients."""
        client_id = uuid.UUID(v.refs["client_id"][client_index])
        sql = "SELECT count(*) FROM platform.clients WHERE id = :c"
        (count,) = (await _as(db, "user", v.person.id, org, sql, {"c": client_id}))[0]
        return int(count)

    personal, in_org, cross = (
        await victim_sees(None, 1),
        await victim_sees(v.org_id, 0),
        await victim_sees(v.org_id, 1),
    )
    assert (personal, in_org, cross) == (1, 1, 0)


async def test_anonymous_transactions_see_nothing_at_all(db: Database, client: httpx.AsyncClient) -> None:
    await build_victim(client)
    for schema, table, _, _ in await _tables(db):
        (count,) = (await _as(db, "none", None, None, f"SELECT count(*) FROM {schema}.{table}"))[0]
        assert count == 0, f"{schema}.{table}"


async def test_rls_refuses_writes_into_another_tenant(client: httpx.AsyncClient, db: Database) -> None:
    v = await build_victim(client)
    mallory = await signup(client, "mallory")
    for sql, params in (
        (
            "INSERT INTO platform.clients (id, person_id, org_id, name) VALUES (gen_random_uuid(), :p, :o, 'x')",
            {"p": uuid.UUID(mallory.id), "o": uuid.UUID(v.org_id)},
        ),
        (
            "INSERT INTO platform.clients (id, person_id, name) VALUES (gen_random_uuid(), :p, 'x')",
            {"p": uuid.UUID(v.person.id)},
        ),
        (
            "INSERT INTO platform.org_members (org_id, person_id, role) VALUES (:o, :p, 'admin')",
            {"o": uuid.UUID(v.org_id), "p": uuid.UUID(mallory.id)},
        ),
    ):
        with pytest.raises(DBAPIError, match="row-level security"):
            await _as(db, "user", mallory.id, v.org_id, sql + " RETURNING 1", params)
    # Updates and deletes of invisible rows touch nothing.
    for sql in (
        "UPDATE platform.clients SET name = 'pwned' WHERE id = :c RETURNING id",
        "DELETE FROM platform.clients WHERE id = :c RETURNING id",
        "UPDATE platform.orgs SET name = 'pwned' WHERE id = :o RETURNING id",
    ):
        rows = await _as(
            db,
            "user",
            mallory.id,
            v.org_id,
            sql,
            {"c": uuid.UUID(v.refs["client_id"][0]), "o": uuid.UUID(v.org_id)},
        )
        assert rows == []
    still = (await client.get(f"/v1/clients/{v.refs['client_id'][0]}", headers=v.person.h(org=v.org))).json()
    assert still["name"].startswith("Secret Org")
