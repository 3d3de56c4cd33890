"""The installation gate: a component's tools and actions answer only in contexts that
installed it. One rule for every door — MCP tools, `jobs_run` and `POST /v1/run` — read in the
caller's own transaction (nothing cached: an uninstall takes effect on the next call). The
statement that bound the caller's context in this transaction may have read what the context may
use already (`UnitOfWork.available_to`): a name found there needs no statement of its own. A
component's toolset is its slug (a check constraint says so), so one list answers for tools and
actions alike; a name not in it is read here, and the refusal worded.

REST feature routes are the provider's own door to their own data and are not gated: the core
context opener (`core.opener.open_context`) gates only when it is given `toolset=`, which the
MCP door does for every installable toolset and the REST routes never do. Uninstalling
bookings hides its tools from agents; it does not lock its owner out of their bookings."""

from __future__ import annotations

import uuid
from functools import lru_cache
from typing import cast

from sqlalchemy import bindparam, or_, select
from sqlalchemy.types import Uuid

from core.context import TenantContext
from core.db import DriverStatement
from core.errors import PermissionDenied
from core.registry.models import Component, Installation
from core.uow import UnitOfWork

__all__ = ["require_installed"]


@lru_cache(maxsize=2)
def _gate_statement(*, by_toolset: bool) -> DriverStatement:
    """The gate's one statement, built once per kind of name with its values bound at execution
    (built per call, it cost a `jobs_run` about as much Python as its own job-and-hold statement)."""
    # Imported here: core.auth imports this module while the kernel loads, before the
    # core.uow that core.scoping needs exists.
    from core.scoping import owned_by

    tenant = cast(uuid.UUID, bindparam("gate_tenant", type_=Uuid()))
    installed = (
        select(Installation.id)
        .where(Installation.component_id == Component.id, owned_by(Installation, tenant))
        .exists()
    )
    column = Component.toolset if by_toolset else Component.slug
    return DriverStatement.of(
        select(Component.slug, or_(Component.availability != "install", installed)).where(
            column == bindparam("gate_name"), Component.retired_at.is_(None)
        )
    )


async def require_installed(
    ctx: TenantContext, uow: UnitOfWork, *, toolset: str | None = None, component: str | None = None
) -> None:
    """Refuse unless the component (named by its toolset, or by its slug for actions) is
    available in `ctx`: always-on, or installed in this very context. A name the registry does
    not know is left to the caller (an unknown action is its own error)."""
    name = toolset if toolset is not None else component
    if name in uow.available_to(ctx):
        return
    # On the driver's connection: a run whose other statements need no ORM makes no session.
    stmt = _gate_statement(by_toolset=toolset is not None)
    rows = await uow.fetch(stmt.sql, *stmt.args({"gate_name": name, "gate_tenant": ctx.tenant_id}))
    found = rows[0] if rows else None
    if found is None and toolset is None:
        return
    if found is not None and found[1]:
        return
    slug = found[0] if found is not None else str(name)
    where = f" in org {ctx.org_slug!r}" if ctx.org_slug else " in your personal context"
    raise PermissionDenied(
        f"the component {slug!r} is not installed in this context ({ctx.label})",
        code="component_not_installed",
        hint=f"install {slug!r}{where} with [[registry.install]], then call again",
        extra={"component": slug},
    )
