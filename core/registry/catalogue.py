"""Reading the catalogue: search, one component, its versions and its skill."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Float, Numeric, and_, cast, func, literal, or_, select
from sqlalchemy.dialects.postgresql import REGCONFIG

from core.context import TenantContext
from core.errors import NotFound
from core.pagination import Page, PageRequest, decode_cursor, encode_cursor
from core.registry.models import Component as ComponentRow
from core.registry.models import ComponentVersion, Installation
from core.registry.presenters import detail_out, summary_out
from core.registry.queries import READ, is_installed, visible_component
from core.registry.schemas import (
    Component,
    ComponentSummary,
    Kind,
    VersionOut,
)
from core.scoping import in_context, keyset_page, keyset_rows, keyset_tag, map_page
from core.uow import UnitOfWork

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


MAX_QUERY_WORDS = 8


def _installed_expr(ctx: TenantContext) -> Any:
    has = (
        select(Installation.id)
        .where(Installation.component_id == ComponentRow.id, in_context(Installation, ctx))
        .exists()
    )
    return or_(ComponentRow.availability == "always", has)


def _tsquery(q: str) -> str | None:
    """Prefix query over the words of `q` (letters and digits only, so nothing the caller
    types can break the tsquery syntax), any word matching."""
    words = [w.lower() for w in _WORD.findall(q)][:MAX_QUERY_WORDS]
    return " | ".join(f"{w}:*" for w in words) or None


async def search_components(
    ctx: TenantContext,
    uow: UnitOfWork,
    page: PageRequest,
    q: str | None = None,
    kind: Kind | None = None,
) -> Page[ComponentSummary]:
    """The catalogue. With `q`: ranked by weighted full-text (name > description > actions and
    tools, prefixes match) plus trigram similarity (typos); without: by slug."""
    ctx.require(READ)
    q = " ".join((q or "").split())[:200] or None
    installed = _installed_expr(ctx).label("installed")
    base = select(ComponentRow, installed).where(
        ComponentRow.retired_at.is_(None), ComponentRow.availability != "platform"
    )
    if kind is not None:
        base = base.where(ComponentRow.kind == kind)
    if q is None:
        listed = await keyset_rows(uow, base, page, ComponentRow.slug, under=kind)
        return map_page(listed, lambda r: summary_out(r[0], bool(r[1])))

    tsq = _tsquery(q)
    query = func.to_tsquery(cast(literal("english"), REGCONFIG), tsq or "")
    doc = func.concat_ws(
        " ", ComponentRow.slug, ComponentRow.name, ComponentRow.description, ComponentRow.search_text
    )
    name_sim = func.greatest(func.similarity(ComponentRow.slug, q), func.similarity(ComponentRow.name, q))
    word_sim = func.word_similarity(q, doc)
    full_text = func.ts_rank(ComponentRow.search, query) if tsq else literal(0.0)
    # Rounded so the keyset cursor compares equal to what the previous page saw.
    rank = cast(func.round(cast(full_text + 0.6 * name_sim + 0.3 * word_sim, Numeric), 6), Float)
    matches = or_(name_sim > 0.3, word_sim > 0.5)
    if tsq:
        matches = or_(ComponentRow.search.op("@@")(query), matches)
    # Rank descending then slug ascending: mixed directions, which the row-value keyset of
    # core.scoping cannot express, so this page is cut by hand.
    stmt = (
        base.add_columns(rank.label("rank"))
        .where(matches)
        .order_by(rank.desc(), ComponentRow.slug)
        .limit(page.limit + 1)
    )
    ranked = keyset_tag(under=("ranked", q, kind))  # a rank is a position only for its own search
    if page.cursor:
        after_rank, after_slug = decode_cursor(page.cursor, 2, ranked)
        stmt = stmt.where(
            or_(
                rank < float(after_rank), and_(rank == float(after_rank), ComponentRow.slug > str(after_slug))
            )
        )
    rows = (await uow.session.execute(stmt)).all()
    items = [summary_out(r[0], bool(r[1]), float(r[2])) for r in rows[: page.limit]]
    more = len(rows) > page.limit
    cursor = encode_cursor(items[-1].rank, items[-1].slug, tag=ranked) if more and items else None
    return Page[ComponentSummary](items=items, next_cursor=cursor)


async def get_component(ctx: TenantContext, uow: UnitOfWork, slug: str) -> Component:
    """One component with its actions (and their schemas), tools, scopes and skill name."""
    ctx.require(READ)
    row = await visible_component(ctx, uow, slug)
    return detail_out(row, await is_installed(ctx, uow, row))


async def list_versions(
    ctx: TenantContext, uow: UnitOfWork, slug: str, page: PageRequest
) -> Page[VersionOut]:
    """Every (version, tools_hash) the component has had, newest first."""
    ctx.require(READ)
    row = await visible_component(ctx, uow, slug)
    stmt = select(ComponentVersion).where(ComponentVersion.component_id == row.id)
    versions = await keyset_page(
        uow, stmt, page, ComponentVersion.created_at, ComponentVersion.id, descending=True
    )
    return map_page(versions, VersionOut.model_validate)


async def get_skill(ctx: TenantContext, uow: UnitOfWork, slug: str) -> str:
    """The component's SKILL.md (markdown)."""
    ctx.require(READ)
    row = await visible_component(ctx, uow, slug)
    if not row.skill_text:
        raise NotFound(
            f"component {row.slug!r} has no skill",
            code="skill_not_found",
            hint="find components with skills with [[registry.search_components]]",
        )
    return row.skill_text
