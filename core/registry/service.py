"""The component registry: every rule of the catalogue, installations and the MCP gate.

Built-in components are written by `sync_builtins` from what the running code serves (the
servers layer builds the specs from the toolsets, actions, scopes and skills). Peer components
are written by platform admins, together with their billing peer in one unit of work.
Installations belong to one context; `core.registry.gate` refuses a component's tools and
actions where it is not installed.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import Any

from sqlalchemy import Float, Numeric, and_, cast, func, literal, or_, select, tuple_
from sqlalchemy.dialects.postgresql import REGCONFIG, insert

from core import __version__, audit, billing
from core.billing.schemas import PeerCreated, PeerIn, PeerUpdateIn
from core.context import Role, TenantContext, register_scopes
from core.errors import Conflict, NotFound, PermissionDenied, constraint_error
from core.idempotency import idempotent_operation
from core.observability import get_logger
from core.pagination import Page, PageRequest, decode_cursor, encode_cursor
from core.preconditions import require_match
from core.registry.changes import context_tools_changed
from core.registry.models import Component as ComponentRow
from core.registry.models import ComponentVersion, Installation
from core.registry.schemas import (
    ActionDetail,
    ActionSpecData,
    ActionSummary,
    Component,
    ComponentSpec,
    ComponentSummary,
    InstallationUpdate,
    Installed,
    InstallIn,
    Kind,
    PeerComponentIn,
    PeerComponentOut,
    PeerComponentUpdate,
    SyncReport,
    ToolOut,
    Uninstalled,
    VersionOut,
)
from core.registry.schemas import Installation as InstallationOut
from core.tenancy.models import OrgMember
from core.uow import UnitOfWork
from core.utilities import utcnow

log = get_logger("atlilith.registry")

READ, WRITE = "registry:read", "registry:write"
register_scopes(
    {
        "registry:read": "search the component registry and read installations",
        "registry:write": "install, configure and uninstall components in a context",
    }
)
constraint_error(
    "uq_components_slug",
    Conflict("a component with this slug exists", code="component_exists", hint="choose another slug"),
)
# Any constant: serialises concurrent syncs (two processes starting at once).
_SYNC_LOCK = 0x7265_6769_7374_7279
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_VERSION = re.compile(r"v?(\d+(?:\.\d+)*)(.*)")
MAX_QUERY_WORDS = 8


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def tools_hash(definitions: list[dict[str, Any]]) -> str:
    """sha256 of the canonical JSON of the tool definitions (sorted by name), as served."""
    ordered = sorted(definitions, key=lambda d: str(d.get("name", "")))
    return hashlib.sha256(canonical_json(ordered).encode()).hexdigest()


def _search_text(actions: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
    parts: list[str] = []
    for a in actions:
        parts += [str(a.get("name", "")).replace("-", " "), str(a.get("summary") or "")]
    for t in tools:
        parts += [
            str(t.get("name", "")).replace("_", " "),
            str(t.get("title") or ""),
            str(t.get("description")),
        ]
    return " ".join(p for p in parts if p)


# --- built-ins: the start-up sync -----------------------------------------------------------------


def version_key(version: str | None) -> tuple[tuple[int, ...], int, str]:
    """Orders the package versions that wrote registry entries: 0.10.0 after 0.9.1, 1.0 equal
    to 1.0.0, a pre-release (0.2.0rc1) before its release, a local label (+abc) ignored. None
    or an unreadable version (entries from before versions were recorded) sorts first."""
    match = _VERSION.fullmatch((version or "").strip().split("+", 1)[0])
    if match is None:
        return ((), 0, "")
    release = tuple(int(part) for part in match.group(1).split("."))
    while len(release) > 1 and release[-1] == 0:
        release = release[:-1]
    pre = match.group(2).lstrip(".-_")
    return (release, 0 if pre else 1, pre)


async def sync_builtins(
    uow: UnitOfWork, specs: list[ComponentSpec], *, writer: str = __version__
) -> SyncReport:
    """Make the built-in entries equal to `specs` (what this process serves, at package
    version `writer`). Idempotent and safe when several processes start at once: a
    transaction-scoped advisory lock serialises them, and an unchanged entry is not written at
    all. Safe across versions during a rolling deploy: each entry records the version that wrote
    it, and an entry a newer version wrote is left as it is (never downgraded, never retired),
    so the registry converges on the newest code. A built-in no longer served is retired
    (hidden), not deleted, so its installations survive a rollback of the code."""
    await uow.session.execute(select(func.pg_advisory_xact_lock(_SYNC_LOCK)))
    existing = {
        c.slug: c
        for c in (
            await uow.session.execute(select(ComponentRow).where(ComponentRow.kind == "builtin"))
        ).scalars()
    }
    mine = version_key(writer)
    report = SyncReport()
    now = utcnow()
    for spec in sorted(specs, key=lambda s: s.slug):
        actions = [a.model_dump() for a in spec.actions]
        tools = [t.model_dump(exclude={"definition"}) for t in spec.tools]
        digest = tools_hash([t.definition or t.model_dump(exclude={"definition"}) for t in spec.tools])
        values: dict[str, Any] = {
            "name": spec.name,
            "version": spec.version,
            "availability": spec.availability,
            "description": spec.description,
            "toolset": spec.toolset,
            "actions": actions,
            "tools": tools,
            "scopes": sorted(spec.scopes),
            "skill_name": spec.skill_name,
            "skill_text": spec.skill_text,
            "tools_hash": digest,
            "search_text": _search_text(actions, tools),
            "retired_at": None,
            "written_by": writer,
        }
        row = existing.pop(spec.slug, None)
        if row is None:
            row = ComponentRow(id=uuid.uuid4(), slug=spec.slug, kind="builtin", **values)
            uow.session.add(row)
            await uow.session.flush()
            report.created.append(spec.slug)
        elif version_key(row.written_by) > mine:
            report.kept_newer.append(spec.slug)
            continue
        elif any(getattr(row, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(row, k, v)
            row.updated_at = now
            report.changed.append(spec.slug)
        else:
            report.unchanged.append(spec.slug)
            continue
        await _record_version(uow, row.id, spec.version, digest)
    for row in existing.values():
        if row.retired_at is not None:
            continue
        if version_key(row.written_by) > mine:
            report.kept_newer.append(row.slug)  # a newer version serves it; this one predates it
            continue
        row.retired_at = now
        row.written_by = writer
        report.retired.append(row.slug)
    await uow.session.flush()
    if report.created or report.changed or report.retired:
        log.info("registry_synced", created=report.created, changed=report.changed, retired=report.retired)
    if report.kept_newer:
        log.info("registry_newer_kept", writer=writer, kept=report.kept_newer)
    return report


async def _record_version(uow: UnitOfWork, component_id: uuid.UUID, version: str, digest: str) -> None:
    await uow.session.execute(
        insert(ComponentVersion)
        .values(id=uuid.uuid4(), component_id=component_id, version=version, tools_hash=digest)
        .on_conflict_do_nothing(index_elements=["component_id", "version", "tools_hash"])
    )


# --- reads -------------------------------------------------------------------------------------------


def _installed_expr(ctx: TenantContext) -> Any:
    has = (
        select(Installation.id)
        .where(Installation.component_id == ComponentRow.id, Installation.tenant_id == ctx.tenant_id)
        .exists()
    )
    return or_(ComponentRow.availability == "always", has)


def _tsquery(q: str) -> str | None:
    """Prefix query over the words of `q` (letters and digits only, so nothing the caller
    types can break the tsquery syntax), any word matching."""
    words = [w.lower() for w in _WORD.findall(q)][:MAX_QUERY_WORDS]
    return " | ".join(f"{w}:*" for w in words) or None


def _summary(row: ComponentRow, installed: bool, rank: float | None = None) -> ComponentSummary:
    return ComponentSummary(
        slug=row.slug,
        name=row.name,
        version=row.version,
        kind=_kind(row.kind),
        description=row.description,
        toolset=row.toolset,
        tools_count=len(row.tools),
        tools_hash=row.tools_hash,
        actions=[ActionSummary.model_validate(a) for a in row.actions],
        installed=installed,
        rank=rank,
    )


def _kind(value: str) -> Kind:
    return "peer" if value == "peer" else "builtin"


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
        stmt = base.order_by(ComponentRow.slug).limit(page.limit + 1)
        if page.cursor:
            (after,) = decode_cursor(page.cursor, 1)
            stmt = stmt.where(ComponentRow.slug > str(after))
        rows = (await uow.session.execute(stmt)).all()
        items = [_summary(r[0], bool(r[1])) for r in rows[: page.limit]]
        more = len(rows) > page.limit
        return Page[ComponentSummary](
            items=items, next_cursor=encode_cursor(items[-1].slug) if more and items else None
        )

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
    stmt = (
        base.add_columns(rank.label("rank"))
        .where(matches)
        .order_by(rank.desc(), ComponentRow.slug)
        .limit(page.limit + 1)
    )
    if page.cursor:
        after_rank, after_slug = decode_cursor(page.cursor, 2)
        stmt = stmt.where(
            or_(
                rank < float(after_rank), and_(rank == float(after_rank), ComponentRow.slug > str(after_slug))
            )
        )
    rows = (await uow.session.execute(stmt)).all()
    items = [_summary(r[0], bool(r[1]), float(r[2])) for r in rows[: page.limit]]
    more = len(rows) > page.limit
    cursor = encode_cursor(items[-1].rank, items[-1].slug) if more and items else None
    return Page[ComponentSummary](items=items, next_cursor=cursor)


def _not_found(slug: str) -> NotFound:
    return NotFound(
        f"no component {slug!r}",
        code="component_not_found",
        hint="search the registry with [[registry.search_components]]",
    )


async def _component(uow: UnitOfWork, slug: str, *, lock: bool = False) -> ComponentRow:
    stmt = select(ComponentRow).where(ComponentRow.slug == slug.strip().lower())
    if lock:
        stmt = stmt.with_for_update()
    row = (await uow.session.execute(stmt)).scalar_one_or_none()
    if row is None or row.retired_at is not None:
        raise _not_found(slug)
    return row


async def _visible(ctx: TenantContext, uow: UnitOfWork, slug: str) -> ComponentRow:
    row = await _component(uow, slug)
    if row.availability == "platform" and not await is_platform_admin(ctx, uow):
        raise _not_found(slug)
    return row


def _detail(row: ComponentRow, installed: bool) -> Component:
    summary = _summary(row, installed).model_dump(exclude={"actions"})
    return Component(
        **summary,
        actions=[ActionDetail.model_validate(a) for a in row.actions],
        availability=row.availability,
        tools=[ToolOut.model_validate(t) for t in row.tools],
        scopes=list(row.scopes),
        skill_name=row.skill_name,
        base_url=row.base_url,
        health_url=row.health_url,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def _is_installed(ctx: TenantContext, uow: UnitOfWork, row: ComponentRow) -> bool:
    if row.availability == "always":
        return True
    found = await uow.session.execute(
        select(Installation.id).where(
            Installation.component_id == row.id, Installation.tenant_id == ctx.tenant_id
        )
    )
    return found.first() is not None


async def get_component(ctx: TenantContext, uow: UnitOfWork, slug: str) -> Component:
    """One component with its actions (and their schemas), tools, scopes and skill name."""
    ctx.require(READ)
    row = await _visible(ctx, uow, slug)
    return _detail(row, await _is_installed(ctx, uow, row))


async def list_versions(
    ctx: TenantContext, uow: UnitOfWork, slug: str, page: PageRequest
) -> Page[VersionOut]:
    """Every (version, tools_hash) the component has had, newest first."""
    ctx.require(READ)
    row = await _visible(ctx, uow, slug)
    stmt = (
        select(ComponentVersion)
        .where(ComponentVersion.component_id == row.id)
        .order_by(ComponentVersion.created_at.desc(), ComponentVersion.id.desc())
        .limit(page.limit + 1)
    )
    if page.cursor:
        after = decode_cursor(page.cursor, 2)
        stmt = stmt.where(tuple_(ComponentVersion.created_at, ComponentVersion.id) < tuple_(*after))
    rows = list((await uow.session.execute(stmt)).scalars())
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return Page[VersionOut](
        items=[VersionOut.model_validate(v) for v in rows],
        next_cursor=encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None,
    )


async def get_skill(ctx: TenantContext, uow: UnitOfWork, slug: str) -> str:
    """The component's SKILL.md (markdown)."""
    ctx.require(READ)
    row = await _visible(ctx, uow, slug)
    if not row.skill_text:
        raise NotFound(
            f"component {row.slug!r} has no skill",
            code="skill_not_found",
            hint="find components with skills with [[registry.search_components]]",
        )
    return row.skill_text


# --- installations ----------------------------------------------------------------------------------


def _installation_out(inst: Installation, row: ComponentRow) -> InstallationOut:
    return InstallationOut(
        component=row.slug,
        name=row.name,
        version=row.version,
        tools_hash=row.tools_hash,
        config=inst.config,
        installed_at=inst.created_at,
        updated_at=inst.updated_at,
    )


def _require_manager(ctx: TenantContext) -> None:
    ctx.require(WRITE)
    if ctx.org_id is not None:
        ctx.require_role(Role.OWNER, Role.ADMIN)


def _refuse_not_installable(row: ComponentRow) -> None:
    if row.availability == "always":
        raise Conflict(
            f"{row.slug!r} is always available in every context: it cannot be installed or removed",
            code="component_always_available",
            hint="use its tools directly; nothing to install",
        )
    if row.availability == "platform":
        raise PermissionDenied(
            f"{row.slug!r} is for platform operators and cannot be installed",
            code="component_not_installable",
            hint="platform operators get it by starting the MCP server with --toolsets " + str(row.toolset),
        )


async def list_installations(ctx: TenantContext, uow: UnitOfWork, page: PageRequest) -> Page[InstallationOut]:
    """The components installed in the caller's context, by slug."""
    ctx.require(READ)
    stmt = (
        select(Installation, ComponentRow)
        .join(ComponentRow, ComponentRow.id == Installation.component_id)
        .where(Installation.tenant_id == ctx.tenant_id)
        .order_by(ComponentRow.slug)
        .limit(page.limit + 1)
    )
    if page.cursor:
        (after,) = decode_cursor(page.cursor, 1)
        stmt = stmt.where(ComponentRow.slug > str(after))
    rows = (await uow.session.execute(stmt)).all()
    items = [_installation_out(i, c) for i, c in rows[: page.limit]]
    more = len(rows) > page.limit
    return Page[InstallationOut](
        items=items, next_cursor=encode_cursor(items[-1].component) if more and items else None
    )


@idempotent_operation("registry.install")
async def install(
    ctx: TenantContext, uow: UnitOfWork, data: InstallIn, idempotency_key: str | None = None
) -> Installed:
    """Install a component in the caller's context (personal, or the org: owner/admin). Already
    installed: the existing installation, config untouched (`created` false)."""
    _require_manager(ctx)
    row = await _component(uow, data.component)
    _refuse_not_installable(row)
    inserted = (
        await uow.session.execute(
            insert(Installation)
            .values(
                id=uuid.uuid4(),
                person_id=ctx.person_id,
                org_id=ctx.org_id,
                component_id=row.id,
                config=data.config,
            )
            .on_conflict_do_nothing(index_elements=["tenant_id", "component_id"])
            .returning(Installation.id)
        )
    ).scalar_one_or_none()
    inst = await _installation(ctx, uow, row)
    if inserted is not None:
        uow.emit("registry/installation.created", {"installation_id": inst.id, "component": row.slug})
        context_tools_changed(uow, "installation.created", ctx.person_id, ctx.org_id)
        log.info("component_installed", component=row.slug, context=ctx.label)
    return Installed(**_installation_out(inst, row).model_dump(), created=inserted is not None)


async def _installation(
    ctx: TenantContext, uow: UnitOfWork, row: ComponentRow, *, lock: bool = False
) -> Installation:
    stmt = select(Installation).where(
        Installation.component_id == row.id, Installation.tenant_id == ctx.tenant_id
    )
    if lock:
        stmt = stmt.with_for_update()
    inst = (await uow.session.execute(stmt)).scalar_one_or_none()
    if inst is None:
        raise NotFound(
            f"{row.slug!r} is not installed in this context ({ctx.label})",
            code="not_installed",
            hint=f"install {row.slug!r} first with [[registry.install]]",
        )
    return inst


async def get_installation(ctx: TenantContext, uow: UnitOfWork, slug: str) -> InstallationOut:
    """One component installed in the caller's context, with its config."""
    ctx.require(READ)
    row = await _installed_component(uow, slug)
    return _installation_out(await _installation(ctx, uow, row), row)


async def update_installation(
    ctx: TenantContext, uow: UnitOfWork, slug: str, data: InstallationUpdate, if_match: str | None = None
) -> InstallationOut:
    """Replace the config of an installed component. `if_match`: the ETag the change is based
    on (core.preconditions); None = last write wins."""
    _require_manager(ctx)
    row = await _installed_component(uow, slug)
    inst = await _installation(ctx, uow, row, lock=True)
    if if_match is not None:
        require_match(if_match, _installation_out(inst, row), what="installation")
    inst.config = data.config
    inst.updated_at = utcnow()
    await uow.session.flush()
    uow.emit("registry/installation.updated", {"installation_id": inst.id, "component": row.slug})
    context_tools_changed(uow, "installation.updated", ctx.person_id, ctx.org_id)
    return _installation_out(inst, row)


async def _installed_component(uow: UnitOfWork, slug: str) -> ComponentRow:
    """The component of an installation; a retired one still counts (it can be uninstalled)."""
    row = (
        await uow.session.execute(select(ComponentRow).where(ComponentRow.slug == slug.strip().lower()))
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(
            f"{slug!r} is not installed in this context",
            code="not_installed",
            hint="list what is installed here with [[registry.list_installations]]",
        )
    return row


async def uninstall(ctx: TenantContext, uow: UnitOfWork, slug: str) -> Uninstalled:
    """Remove a component from the caller's context: its tools stop answering at once."""
    _require_manager(ctx)
    row = await _installed_component(uow, slug)
    _refuse_not_installable(row)
    inst = await _installation(ctx, uow, row, lock=True)
    await uow.session.delete(inst)
    await uow.session.flush()
    uow.emit("registry/installation.deleted", {"installation_id": inst.id, "component": row.slug})
    context_tools_changed(uow, "installation.deleted", ctx.person_id, ctx.org_id)
    log.info("component_uninstalled", component=row.slug, context=ctx.label)
    return Uninstalled(component=row.slug)


async def install_builtins(uow: UnitOfWork, person_id: uuid.UUID, org_id: uuid.UUID | None) -> list[str]:
    """Seed helper (system mode): install every installable built-in in one context."""
    rows = (
        await uow.session.execute(
            select(ComponentRow).where(
                ComponentRow.kind == "builtin",
                ComponentRow.availability == "install",
                ComponentRow.retired_at.is_(None),
            )
        )
    ).scalars()
    added: list[str] = []
    for row in rows:
        inserted = (
            await uow.session.execute(
                insert(Installation)
                .values(id=uuid.uuid4(), person_id=person_id, org_id=org_id, component_id=row.id)
                .on_conflict_do_nothing(index_elements=["tenant_id", "component_id"])
                .returning(Installation.id)
            )
        ).scalar_one_or_none()
        if inserted is not None:
            uow.emit(
                "registry/installation.created",
                {"installation_id": inserted, "component": row.slug},
                person_id=person_id,
                org_id=org_id,
            )
            added.append(row.slug)
    if added:
        context_tools_changed(uow, "installation.created", person_id, org_id)
    return sorted(added)


# --- the MCP gate -------------------------------------------------------------------------------------


async def listed_toolsets(ctx: TenantContext, uow: UnitOfWork) -> set[str]:
    """Toolsets to list to a credential: the always-available ones, and those installed in any
    context it can act in — the org an API key is bound to; else the person's own context and
    every org they are a member of now. (Calls are still gated in the context each one acts in;
    listing the union spares an agent tools it could call with `org` but would never see.)"""
    person = ctx.person_id
    await uow.act_as_system()  # across the person's own contexts, filtered explicitly below
    tenants = [ctx.tenant_id]
    if not ctx.principal.org_bound:
        orgs = await uow.session.execute(select(OrgMember.org_id).where(OrgMember.person_id == person))
        tenants = [person, *orgs.scalars()]
    rows = await uow.session.execute(
        select(ComponentRow.toolset)
        .where(ComponentRow.toolset.is_not(None), ComponentRow.retired_at.is_(None))
        .where(
            or_(
                ComponentRow.availability == "always",
                select(Installation.id)
                .where(Installation.component_id == ComponentRow.id, Installation.tenant_id.in_(tenants))
                .exists(),
            )
        )
    )
    return {str(t) for t in rows.scalars()}


async def is_platform_admin(ctx: TenantContext, uow: UnitOfWork) -> bool:
    """Re-read on every call (a revoked operator loses access at once)."""
    return await audit.is_platform_admin(uow, ctx.person_id)


# --- peer components (platform admins) ---------------------------------------------------------------


def _peer_actions(actions: list[Any]) -> list[dict[str, Any]]:
    return [
        ActionSpecData(name=a.name, summary=a.summary, price=a.price, unit="call").model_dump()
        for a in actions
    ]


async def register_peer_component(
    ctx: TenantContext, uow: UnitOfWork, data: PeerComponentIn
) -> PeerComponentOut:
    """Platform admin: register a peer component — its registry entry and its runnable billing
    peer, in one unit of work (either both exist afterwards or neither). The HMAC secret is
    returned once."""
    return (await _register_peer(ctx, uow, data))[0]


async def register_peer(ctx: TenantContext, uow: UnitOfWork, data: PeerIn) -> PeerCreated:
    """The same operation through the billing-shaped door (`POST /v1/admin/peers`), so a peer
    can never be runnable without being in the catalogue."""
    return (await _register_peer(ctx, uow, PeerComponentIn.model_validate(data.model_dump(), strict=False)))[
        1
    ]


async def _register_peer(
    ctx: TenantContext, uow: UnitOfWork, data: PeerComponentIn
) -> tuple[PeerComponentOut, PeerCreated]:
    await audit.require_platform_admin(ctx, uow)
    taken = (
        await uow.session.execute(select(ComponentRow.kind).where(ComponentRow.slug == data.slug))
    ).scalar_one_or_none()
    if taken is not None:
        raise Conflict(
            f"a {taken} component {data.slug!r} exists",
            code="component_exists",
            hint="update it ([[registry.update_peer_component]]) or choose another slug",
        )
    peer = await billing.register_peer(
        ctx,
        uow,
        PeerIn(
            slug=data.slug,
            name=data.name,
            base_url=data.base_url,
            actions=data.actions,
            timeout_seconds=data.timeout_seconds,
            enabled=data.enabled,
        ),
    )
    actions = _peer_actions(data.actions)
    digest = tools_hash(actions)
    row = ComponentRow(
        id=uuid.uuid4(),
        slug=data.slug,
        name=data.name,
        version=data.version,
        kind="peer",
        availability="install",
        description=data.description,
        toolset=None,
        actions=actions,
        tools=[],
        scopes=sorted(data.scopes),
        skill_name=data.slug if data.skill_text else None,
        skill_text=data.skill_text,
        base_url=peer.base_url,
        health_url=data.health_url or f"{peer.base_url}/health",
        tools_hash=digest,
        search_text=_search_text(actions, []),
        retired_at=None if data.enabled else utcnow(),
    )
    uow.session.add(row)
    await uow.session.flush()
    await _record_version(uow, row.id, row.version, digest)
    await uow.session.refresh(row)
    await audit.record(
        uow,
        ctx,
        "component.register",
        "component",
        row.slug,
        {"kind": "peer", "version": row.version, "base_url": row.base_url},
    )
    log.info("peer_component_registered", component=row.slug, by=str(ctx.person_id))
    return PeerComponentOut(component=_detail(row, False), secret=peer.secret), peer


async def update_peer_component(
    ctx: TenantContext, uow: UnitOfWork, slug: str, data: PeerComponentUpdate
) -> PeerComponentOut:
    """Platform admin: change a peer component (entry and billing peer together); a new version
    row is recorded when its version or its actions change. Disabled = hidden from the catalogue."""
    return (await _update_peer(ctx, uow, slug, data))[0]


async def update_peer(ctx: TenantContext, uow: UnitOfWork, slug: str, data: PeerUpdateIn) -> PeerCreated:
    """The same operation through the billing-shaped door (`PATCH /v1/admin/peers/{peer}`)."""
    update = PeerComponentUpdate.model_validate(data.model_dump(exclude_unset=True), strict=False)
    return (await _update_peer(ctx, uow, slug, update))[1]


async def _update_peer(
    ctx: TenantContext, uow: UnitOfWork, slug: str, data: PeerComponentUpdate
) -> tuple[PeerComponentOut, PeerCreated]:
    await audit.require_platform_admin(ctx, uow)
    row = (
        await uow.session.execute(select(ComponentRow).where(ComponentRow.slug == slug).with_for_update())
    ).scalar_one_or_none()
    if row is None or row.kind != "peer":
        raise NotFound(
            f"no peer component {slug!r}",
            code="component_not_found",
            hint="built-in components change with the code; register peers with "
            "[[registry.register_peer_component]]",
        )
    peer = await billing.update_peer(
        ctx,
        uow,
        slug,
        PeerUpdateIn(
            name=data.name,
            base_url=data.base_url,
            actions=data.actions,
            timeout_seconds=data.timeout_seconds,
            enabled=data.enabled,
            rotate_secret=data.rotate_secret,
            secret_grace_seconds=data.secret_grace_seconds,
            retire_old_secrets=data.retire_old_secrets,
        ),
    )
    if data.name is not None:
        row.name = data.name
    if data.version is not None:
        row.version = data.version
    if data.description is not None:
        row.description = data.description
    if data.scopes is not None:
        row.scopes = sorted(data.scopes)
    if data.skill_text is not None:
        row.skill_text, row.skill_name = data.skill_text or None, slug if data.skill_text else None
    if data.base_url is not None and data.health_url is None and row.health_url == f"{row.base_url}/health":
        row.health_url = f"{peer.base_url}/health"
    if data.health_url is not None:
        row.health_url = data.health_url
    row.base_url = peer.base_url
    if data.actions is not None:
        row.actions = _peer_actions(data.actions)
        row.tools_hash = tools_hash(row.actions)
    row.search_text = _search_text(row.actions, [])
    if data.enabled is not None:
        row.retired_at = None if data.enabled else (row.retired_at or utcnow())
    row.updated_at = utcnow()
    await uow.session.flush()
    await _record_version(uow, row.id, row.version, row.tools_hash)
    await uow.session.refresh(row)
    await audit.record(
        uow,
        ctx,
        "component.update",
        "component",
        row.slug,
        data.model_dump(exclude_none=True, exclude={"skill_text"}),
    )
    log.info("peer_component_updated", component=row.slug, by=str(ctx.person_id))
    return PeerComponentOut(component=_detail(row, False), secret=peer.secret), peer
