"""core.scoping on real PostgreSQL: the tenant filter, load-in-context-or-404, the keyset pager;
and the rule that no other module compares tenant ids by hand."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from core.context import Principal, PrincipalKind, Role, TenantContext
from core.errors import NotFound, PermissionDenied, ValidationFailed
from core.opener import open_context
from core.pagination import PageRequest, encode_cursor
from core.scoping import (
    apply_keyset,
    get_in_context,
    in_context,
    insert_in_context,
    keyset_page,
    keyset_rows,
    keyset_tag,
    map_page,
    new_in_context,
    owned_by,
    require_manager,
    same_tenant,
    scoped,
    where_given,
)
from core.tenancy.matching import find_or_create_client
from core.tenancy.models import Brand, Client
from core.uow import Database, UnitOfWork
from tests.conftest import make_org, signup

ROOT = Path(__file__).resolve().parents[2]


async def _clients(db: Database, token: str, count: int) -> list[uuid.UUID]:
    async with db.uow() as uow:
        ctx = await open_context(uow, token, "personal")
        made = [
            await find_or_create_client(ctx, uow, name=f"c{i}", email=f"c{i}@example.com", phone=None)
            for i in range(count)
        ]
        return [c.id for c, _ in made]


async def _ctx(uow: UnitOfWork, token: str) -> TenantContext:
    return await open_context(uow, token, "personal")


def _missing() -> NotFound:
    return NotFound("no such client", code="client_not_found", hint="list clients")


async def test_scoped_and_get_in_context_see_only_the_callers_tenant(
    client: httpx.AsyncClient, db: Database
) -> None:
    a, b = await signup(client), await signup(client)
    mine = await _clients(db, a.token, 3)
    theirs = await _clients(db, b.token, 1)
    async with db.uow() as uow:
        ctx = await _ctx(uow, a.token)
        seen = {c.id for c in (await uow.session.execute(scoped(Client, ctx))).scalars()}
        assert seen == set(mine)
        found = await get_in_context(uow, Client, ctx, mine[0], not_found=_missing(), lock=True)
        assert found.id == mine[0]
        # Another tenant's row answers exactly like a missing one: the given error, unchanged.
        error = _missing()
        with pytest.raises(NotFound) as raised:
            await get_in_context(uow, Client, ctx, theirs[0], not_found=error)
        assert raised.value is error and raised.value.code == "client_not_found"
        with pytest.raises(NotFound):
            await get_in_context(uow, Client, ctx, uuid.uuid4(), not_found=_missing())
        # Extra conditions narrow the row and also answer 404.
        with pytest.raises(NotFound):
            await get_in_context(
                uow, Client, ctx, mine[0], not_found=_missing(), where=[Client.name == "nope"]
            )
        count = len(
            (await uow.session.execute(select(Client.id).where(owned_by(Client, ctx.tenant_id)))).all()
        )
        assert count == 3


def test_filters_compare_the_tenant_column() -> None:
    assert str(same_tenant(Brand, Client)) == "platform.brands.tenant_id = platform.clients.tenant_id"
    assert "tenant_id = :tenant_id_1" in str(owned_by(Client, uuid.uuid4()))


def test_where_given_narrows_only_by_the_filters_given() -> None:
    """A filter left out of a list request (None or empty) does not narrow the list."""
    stmt = where_given(select(Client.id), (Client.name, "Ada"), (Client.email, None), (Client.phone, ""))
    where = str(stmt.whereclause)
    assert where == "platform.clients.name = :name_1"


@pytest.mark.parametrize("descending", [False, True])
async def test_keyset_page_walks_every_row_once_in_order(
    client: httpx.AsyncClient, db: Database, descending: bool
) -> None:
    a = await signup(client)
    await _clients(db, a.token, 5)
    async with db.uow() as uow:
        ctx = await _ctx(uow, a.token)
        everything = list(
            (
                await uow.session.execute(
                    apply_keyset(
                        scoped(Client, ctx),
                        PageRequest(limit=100),
                        Client.created_at,
                        Client.id,
                        descending=descending,
                    )
                )
            ).scalars()
        )
        assert len(everything) == 5
        walked: list[uuid.UUID] = []
        cursor: str | None = None
        pages = 0
        while True:
            page = await keyset_page(
                uow,
                scoped(Client, ctx),
                PageRequest(limit=2, cursor=cursor),
                Client.created_at,
                Client.id,
                descending=descending,
            )
            walked += [c.id for c in page.items]
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                break
            # The cursor is the last row's values, named for this list's ordering in this context.
            last = page.items[-1]
            tag = keyset_tag(Client.created_at, Client.id, under={"context": ctx.tenant_id, "filters": None})
            assert cursor == encode_cursor(last.created_at, last.id, tag=tag)
        assert walked == [c.id for c in everything] and pages == 3
        presented = map_page(page, lambda c: c.name)
        assert presented.items == [c.name for c in page.items] and presented.next_cursor is None


async def test_keyset_page_with_a_key_and_a_bad_cursor(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    await _clients(db, a.token, 3)
    async with db.uow() as uow:
        ctx = await _ctx(uow, a.token)
        page = await keyset_page(
            uow, scoped(Client, ctx), PageRequest(limit=1), Client.name, key=lambda c: [c.name]
        )
        assert [c.name for c in page.items] == ["c0"]
        mine = {"context": ctx.tenant_id, "filters": None}
        assert page.next_cursor == encode_cursor("c0", tag=keyset_tag(Client.name, under=mine))
        nxt = await keyset_page(
            uow, scoped(Client, ctx), PageRequest(limit=5, cursor=page.next_cursor), Client.name
        )
        assert [c.name for c in nxt.items] == ["c1", "c2"] and nxt.next_cursor is None
        with pytest.raises(ValidationFailed) as raised:
            await keyset_page(
                uow, scoped(Client, ctx), PageRequest(cursor="bad"), Client.created_at, Client.id
            )
        assert raised.value.code == "invalid_cursor"
        assert str(in_context(Client, ctx)).endswith("tenant_id = :tenant_id_1")


async def test_a_row_inserted_in_context_belongs_to_that_context_only(
    client: httpx.AsyncClient, db: Database
) -> None:
    a, b = await signup(client), await signup(client)
    org = await make_org(client, a)
    async with db.uow() as uow:
        personal = await _ctx(uow, a.token)
        mine = await insert_in_context(uow, Client, personal, name="Ada")
    async with db.uow() as uow:
        in_org = await open_context(uow, a.token, org)
        ours = await insert_in_context(uow, Client, in_org, name="Grace")
        chosen = uuid.uuid4()
        await uow.session.execute(new_in_context(Client, in_org, id=chosen, name="Edsger"))
    assert (str(mine.person_id), mine.org_id, str(mine.tenant_id)) == (a.id, None, a.id)
    assert (str(ours.person_id), ours.org_id, ours.tenant_id) == (a.id, in_org.org_id, in_org.org_id)
    async with db.uow() as uow:
        in_org = await open_context(uow, a.token, org)
        assert (await get_in_context(uow, Client, in_org, chosen, not_found=_missing())).name == "Edsger"
    async with db.uow() as uow:
        personal = await _ctx(uow, a.token)
        assert (await get_in_context(uow, Client, personal, mine.id, not_found=_missing())).name == "Ada"
        # Written in the org: not in the person's own context.
        with pytest.raises(NotFound):
            await get_in_context(uow, Client, personal, ours.id, not_found=_missing())
    async with db.uow() as uow:
        other = await _ctx(uow, b.token)
        with pytest.raises(NotFound):
            await get_in_context(uow, Client, other, mine.id, not_found=_missing())


async def test_keyset_rows_reads_the_cursor_from_the_listed_entity(
    client: httpx.AsyncClient, db: Database
) -> None:
    """Without `key`, the cursor is the ordering columns' values on the row's first entity."""
    a = await signup(client)
    made = await _clients(db, a.token, 5)
    async with db.uow() as uow:
        ctx = await _ctx(uow, a.token)
        stmt = select(Client, Client.name.label("shown")).where(in_context(Client, ctx))
        walked: list[uuid.UUID] = []
        cursor: str | None = None
        while True:
            page = await keyset_rows(
                uow, stmt, PageRequest(limit=2, cursor=cursor), Client.created_at, Client.id, descending=True
            )
            walked += [row[0].id for row in page.items]
            assert all(row[0].name == row[1] for row in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
            last = page.items[-1][0]
            tag = keyset_tag(Client.created_at, Client.id, under={"context": ctx.tenant_id, "filters": None})
            assert cursor == encode_cursor(last.created_at, last.id, tag=tag)
    assert sorted(walked) == sorted(made) and len(walked) == len(set(walked)) == 5


# Tenant comparisons are written once, in core/scoping.py. Everything else calls it.
_TENANT_COMPARISON = re.compile(r"tenant_id\s*==")
ALLOWED = {
    "core/scoping.py",
}
# Nothing is left to convert (core/registry was the last).
NOT_YET_CONVERTED: tuple[str, ...] = ()


def test_no_tenant_comparison_outside_the_scoping_module() -> None:
    offenders = []
    for top in ("core", "servers", "tools"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in ALLOWED or rel.startswith(NOT_YET_CONVERTED):
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if _TENANT_COMPARISON.search(line):
                    offenders.append(f"{rel}:{n}: {line.strip()}")
    assert not offenders, "use core.scoping (in_context / owned_by / same_tenant):\n" + "\n".join(offenders)


def _context(role: Role | None, *, org: bool, scopes: frozenset[str] = frozenset({"*"})) -> TenantContext:
    person = uuid.uuid4()
    return TenantContext(
        principal=Principal(kind=PrincipalKind.SESSION, person_id=person, scopes=scopes),
        person_id=person,
        org_id=uuid.uuid4() if org else None,
        org_slug="o" if org else None,
        role=role,
    )


def test_require_manager_is_the_person_or_an_org_owner_or_admin() -> None:
    require_manager(_context(None, org=False), "tenancy:write")
    require_manager(_context(Role.OWNER, org=True), "tenancy:write")
    require_manager(_context(Role.ADMIN, org=True), "tenancy:write")
    with pytest.raises(PermissionDenied) as raised:
        require_manager(_context(Role.MEMBER, org=True), "tenancy:write")
    assert raised.value.code == "insufficient_role"
    with pytest.raises(PermissionDenied) as raised:
        require_manager(_context(None, org=False, scopes=frozenset({"tenancy:read"})), "tenancy:write")
    assert raised.value.code == "missing_scope"


def test_a_cursor_value_of_the_wrong_type_is_an_invalid_cursor() -> None:
    # Refused before PostgreSQL would fail comparing a timestamp with text.
    tag = keyset_tag(Client.created_at, Client.id)
    forged = PageRequest(cursor=encode_cursor("not a time", uuid.uuid4(), tag=tag))
    with pytest.raises(ValidationFailed) as raised:
        apply_keyset(select(Client), forged, Client.created_at, Client.id)
    assert raised.value.code == "invalid_cursor"
    fine = PageRequest(cursor=encode_cursor(dt.datetime.now(dt.UTC), uuid.uuid4(), tag=tag))
    assert "(platform.clients.created_at, platform.clients.id) >" in str(
        apply_keyset(select(Client), fine, Client.created_at, Client.id)
    )
    # Values of the right types, but another list's ordering (the bookings' start and id).
    elsewhere = PageRequest(cursor=encode_cursor(dt.datetime.now(dt.UTC), uuid.uuid4(), tag="0badc0de"))
    with pytest.raises(ValidationFailed) as raised:
        apply_keyset(select(Client), elsewhere, Client.created_at, Client.id)
    assert raised.value.code == "invalid_cursor"
