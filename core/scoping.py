"""Tenant scoping and keyset paging, written once.

Wall 1 of tenancy (the service-side filter; row-level security is wall 2) lives here: every
`tenant_id` comparison in core, servers and tools goes through `owned_by` / `in_context` /
`same_tenant`, so a test can check that no query compares tenant ids by hand.

Lists page on a unique ordering with an opaque cursor (`core.pagination`); `apply_keyset`
narrows a statement to one page and `keyset_page` runs it and returns a typed `Page`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
import zlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, TypeVarTuple

from pydantic import BaseModel
from pydantic_core import to_jsonable_python
from sqlalchemy import Column, ColumnElement, Row, Select, Table, inspect, select, tuple_
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.orm import InstrumentedAttribute

from core.context import Role, TenantContext
from core.errors import DomainError, FieldIssue, NotFound
from core.pagination import Page, PageRequest, decode_cursor, invalid_cursor, page_of
from core.tenancy.models import TenantOwned
from core.uow import UnitOfWork

__all__ = [
    "apply_keyset",
    "cursor_values",
    "get_in_context",
    "in_context",
    "insert_in_context",
    "keyset_page",
    "keyset_rows",
    "keyset_tag",
    "map_page",
    "new_in_context",
    "not_in_context",
    "one_or",
    "owned_by",
    "require_manager",
    "row_or",
    "same_tenant",
    "scoped",
    "where_given",
]


M = TypeVar("M")
R = TypeVar("R", bound=TenantOwned)
T = TypeVar("T")
U = TypeVar("U")
Ts = TypeVarTuple("Ts")
# What a list orders on: a mapped attribute, or a Core table's column.
KeyColumn = InstrumentedAttribute[Any] | Column[Any]
S = TypeVar("S", bound=Select[*tuple[Any, ...]])


def owned_by(model: type[TenantOwned] | Table, tenant_id: uuid.UUID) -> ColumnElement[bool]:
    """Rows of `model` that belong to the tenant `tenant_id` (for callers holding a bare id,
    such as event handlers). `model` may be the model's Core table, for Core executemany."""
    if isinstance(model, Table):
        column: ColumnElement[Any] = model.c.tenant_id
        return column == tenant_id
    return model.tenant_id == tenant_id


def in_context(model: type[TenantOwned], ctx: TenantContext) -> ColumnElement[bool]:
    """Rows of `model` that belong to the caller's current context (person or org)."""
    return owned_by(model, ctx.tenant_id)


def same_tenant(left: type[TenantOwned], right: type[TenantOwned]) -> ColumnElement[bool]:
    """Join condition: a row only ever meets rows of its own tenant."""
    return left.tenant_id == right.tenant_id


def scoped(model: type[R], ctx: TenantContext) -> Select[R]:
    """`SELECT model WHERE model.tenant_id = ctx.tenant_id`."""
    return select(model).where(in_context(model, ctx))


def new_in_context(
    model: type[TenantOwned], ctx: TenantContext, *, id: uuid.UUID | None = None, **values: Any
) -> Insert:
    """`INSERT` of one row of `model` owned by the caller's context: the acting person and the
    context's org (None = personal), so that `in_context` finds it again; a fresh id unless
    `id` is given. `values` are the other columns; the statement may take `on_conflict_*`."""
    return insert(model).values(id=id or uuid.uuid4(), person_id=ctx.person_id, org_id=ctx.org_id, **values)


async def insert_in_context(uow: UnitOfWork, model: type[R], ctx: TenantContext, **values: Any) -> R:
    """Insert one row of `model` in the caller's context (see `new_in_context`) and return it as
    stored, with its server defaults and computed columns."""
    return (await uow.session.execute(new_in_context(model, ctx, **values).returning(model))).scalar_one()


def require_manager(ctx: TenantContext, write_scope: str) -> None:
    """Writes to what the context itself owns (its configuration, catalogue, brands): the person
    in their personal context, or an org's owner or admin; the credential needs `write_scope`."""
    ctx.require(write_scope)
    if ctx.org_id is not None:
        ctx.require_role(Role.OWNER, Role.ADMIN)


def where_given(stmt: S, *filters: tuple[KeyColumn, object]) -> S:
    """`stmt` narrowed to rows whose column equals its value, for each (column, value) whose value
    was given: a filter left out of a list request (None or "") does not narrow it."""
    for column, value in filters:
        if value is not None and value != "":
            stmt = stmt.where(column == value)
    return stmt


async def get_in_context(
    uow: UnitOfWork,
    model: type[R],
    ctx: TenantContext,
    id: uuid.UUID,
    *,
    not_found: NotFound,
    lock: bool = False,
    where: Sequence[ColumnElement[bool]] = (),
) -> R:
    """The row `id` of `model` in the caller's context, or `not_found` raised: another tenant's
    row is indistinguishable from a missing one. `lock` takes a row lock (FOR UPDATE) for the
    rest of the transaction; `where` adds conditions (e.g. a status) that also answer 404."""
    # populate_existing: an object already in the session is refreshed, so a row read again
    # (after an UPDATE statement, or once locked) shows what the database holds now.
    stmt = (
        scoped(model, ctx).where(_primary_key(model) == id, *where).execution_options(populate_existing=True)
    )
    if lock:
        stmt = stmt.with_for_update()
    row = (await uow.session.execute(stmt)).scalar_one_or_none()
    if row is None:
        raise not_found
    return row


def not_in_context(noun: str, hint: str, *errors: FieldIssue) -> NotFound:
    """The 404 for a `noun` the caller's context does not hold: "no such brand in this context",
    code `brand_not_found`, and a hint to where the caller can find one."""
    message = f"no such {noun} in this context"
    return NotFound(message, code=f"{noun}_not_found", hint=hint, errors=list(errors))


async def one_or(uow: UnitOfWork, stmt: Select[T], error: DomainError) -> T:
    """The one value `stmt` selects, or `error` raised when it selects nothing: the "load it
    or refuse" step, for reads that are not one row of the caller's context by id."""
    value = (await uow.session.execute(stmt)).scalar_one_or_none()
    if value is None:
        raise error
    return value


async def row_or(uow: UnitOfWork, stmt: Select[*Ts], error: DomainError) -> Row[*Ts]:
    """`one_or` for a statement that selects several columns: its one row, or `error`."""
    row = (await uow.session.execute(stmt)).one_or_none()
    if row is None:
        raise error
    return row


def apply_keyset(
    stmt: S,
    page: PageRequest,
    *columns: KeyColumn,
    descending: bool = False,
    having: bool = False,
    under: Any = None,
) -> S:
    """One page of `stmt` ordered on `columns` (a unique ordering), after the page's cursor.
    One row more than the page is fetched: its presence says there is a next page. `having`
    puts the cursor condition on the groups of an aggregate; `under`: see `keyset_tag`."""
    if page.cursor:
        after = tuple_(*cursor_values(page, *columns, under=under))
        condition = tuple_(*columns) < after if descending else tuple_(*columns) > after
        stmt = stmt.having(condition) if having else stmt.where(condition)
    order = [c.desc() for c in columns] if descending else list(columns)
    return stmt.order_by(*order).limit(page.limit + 1)


def keyset_tag(*columns: KeyColumn, under: Any = None) -> str:
    """Which list a keyset cursor belongs to: the threads' (last activity, id) and the
    bookings' (start, id) have values of the same types, and one list's cursor must not be
    read as a position in the other's. `under`: the filters the list was read with (a model or
    plain data), so a cursor made under other filters is refused rather than paging on from a
    position in a list the caller is no longer reading."""
    named = ",".join(str(c) for c in columns)
    filters = _normal(under)
    if _given(filters):  # no filter: the list's tag as it always was (cursors made before stay good)
        named += "|" + json.dumps(to_jsonable_python(filters), sort_keys=True, separators=(",", ":"))
    return f"{zlib.crc32(named.encode()):08x}"


def _normal(value: Any) -> Any:
    """Filters as what they select: a list of values in any order (`status=a&status=b`), an
    instant at any offset, "" for nothing -- each written one way."""
    if isinstance(value, BaseModel):
        return _normal(value.model_dump())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _normal(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, tuple):  # positional filters: their order is their meaning
        return [_normal(v) for v in value]
    if isinstance(value, list | set | frozenset):  # one filter's several values
        return sorted((_normal(v) for v in value), key=lambda v: json.dumps(to_jsonable_python(v)))
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC)
    return None if value == "" else value


def _given(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_given(v) for v in value.values())
    if isinstance(value, list):
        return any(_given(v) for v in value)
    return value is not None


def in_context_of(tenant_id: uuid.UUID, under: Any) -> Any:
    """A list's filters (`keyset_tag`'s `under`) with the context it is read in: a cursor made in
    one context (a personal list) is refused in another (the same list of an org) rather than
    skipping that list's rows up to a position it never had."""
    return {"context": tenant_id, "filters": under}


def _in_context(uow: UnitOfWork, under: Any) -> Any:
    ctx = uow.ctx
    return under if ctx is None else in_context_of(ctx.tenant_id, under)


def cursor_values(page: PageRequest, *columns: KeyColumn, under: Any = None) -> list[Any]:
    """The page's cursor decoded for `columns` (and the filters it was made `under`). A value
    of the wrong type is refused here, as `invalid_cursor`, rather than reaching PostgreSQL as
    a type error."""
    assert page.cursor is not None
    values = decode_cursor(page.cursor, len(columns), keyset_tag(*columns, under=under))
    for value, column in zip(values, columns, strict=True):
        try:
            expected = column.type.python_type
        except NotImplementedError:
            continue
        if not isinstance(value, expected):
            raise invalid_cursor()
    return values


async def keyset_page(
    uow: UnitOfWork,
    stmt: Select[M],
    page: PageRequest,
    *columns: KeyColumn,
    descending: bool = False,
    key: Callable[[M], Sequence[Any]] | None = None,
    under: Any = None,
) -> Page[M]:
    """Run one page of `stmt` (see `apply_keyset`), one entity a row. The cursor names the last
    row by the values of `columns`, read from the row by attribute name unless `key` is given;
    `under`: the list's filters (`keyset_tag`)."""
    under = _in_context(uow, under)
    keyset = apply_keyset(stmt, page, *columns, descending=descending, under=under)
    rows = list((await uow.session.execute(keyset)).scalars())
    names = [c.key for c in columns]
    by_name = key or (lambda row: [getattr(row, n) for n in names])
    return page_of(rows, page.limit, by_name, keyset_tag(*columns, under=under))


async def keyset_rows(
    uow: UnitOfWork,
    stmt: Select[*Ts],
    page: PageRequest,
    *columns: KeyColumn,
    key: Callable[[Row[*Ts]], Sequence[Any]] | None = None,
    descending: bool = False,
    having: bool = False,
    under: Any = None,
) -> Page[Row[*Ts]]:
    """Run one page of a several-column `stmt` (see `apply_keyset`); `key(row)` gives the
    cursor values of a row, in the order of `columns`. Without `key` they are read by name
    from the row's first entity (`row[0]`), the usual shape: the listed model, then extras.
    `under`: the list's filters (`keyset_tag`)."""
    under = _in_context(uow, under)
    stmt = apply_keyset(stmt, page, *columns, descending=descending, having=having, under=under)
    rows = list((await uow.session.execute(stmt)).all())
    names = [c.key for c in columns]

    def by_name(row: Row[*tuple[Any, ...]]) -> list[Any]:
        return [getattr(row[0], n) for n in names]

    return page_of(rows, page.limit, key or by_name, keyset_tag(*columns, under=under))


def map_page(page: Page[T], present: Callable[[T], U]) -> Page[U]:
    """The same page, each row presented (e.g. as its output model); the cursor is kept."""
    return Page[U](items=[present(item) for item in page.items], next_cursor=page.next_cursor)


def _primary_key(model: type[TenantOwned]) -> ColumnElement[Any]:
    keys = inspect(model).primary_key
    if len(keys) != 1:
        raise TypeError(f"{model.__name__} has no single-column primary key")
    key: ColumnElement[Any] = keys[0]
    return key
