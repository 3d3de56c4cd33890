"""The platform's audit log: who did what to whom, when, under which trace.

Platform-wide like `core.outbox` and `core.idempotency`: one table, `platform.audit_log`, written
in the same transaction as the action it records (so an action and its entry commit or vanish
together). Row-level security lets only system mode and platform admins read it and has no
UPDATE or DELETE policy: for the app role the log is append-only.

Being a platform admin is not an org role and never a token claim: `require_platform_admin`
re-reads `platform.persons.is_platform_admin` on every call.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import Index, Text, select, text
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Mapped, mapped_column

from core.context import TenantContext, register_scopes
from core.db import Base, uuid_pk
from core.errors import PermissionDenied
from core.tenancy.models import Person
from core.uow import UnitOfWork

ADMIN_READ, ADMIN_WRITE = "admin:read", "admin:write"
register_scopes(
    {
        ADMIN_READ: "platform admins: read persons, orgs and the audit log",
        ADMIN_WRITE: "platform admins: suspend and reactivate persons, grant credits, manage peers",
    }
)

OPERATOR = "operator"  # the actor of `atlilith admin ...`: someone with database access
ACTOR_KINDS = ("person", OPERATOR)


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at_id", "at", "id"),
        Index("ix_audit_log_actor_person_id_at", "actor_person_id", "at"),
        Index("ix_audit_log_action_at", "action", "at"),
        Index("ix_audit_log_target_type_target_id_at", "target_type", "target_id", "at"),
        {"schema": "platform"},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    # clock_timestamp, not now(): entries of one transaction keep the order they were written in
    at: Mapped[dt.datetime] = mapped_column(server_default=text("clock_timestamp()"))
    actor_kind: Mapped[str] = mapped_column(Text)
    # No foreign key: the log outlives the rows it talks about.
    actor_person_id: Mapped[uuid.UUID | None]
    actor_label: Mapped[str] = mapped_column(Text)
    credential: Mapped[str | None] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    target_type: Mapped[str] = mapped_column(Text)
    target_id: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    trace_id: Mapped[str] = mapped_column(Text)
    context_org_id: Mapped[uuid.UUID | None]
    context: Mapped[str] = mapped_column(Text)


_ACTION_RE = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
# Keys whose values never belong in the log, whatever an operation hands over.
_SECRET_KEY = re.compile(r"secret|token|password|passwd|api_?key|authorization|signature|hash", re.I)
REDACTED = "[redacted]"


def scrub(value: Any) -> Any:
    """`details` minus any text under a key that names a credential, at any depth (a flag such
    as `secret_rotated: true` stays)."""
    if isinstance(value, dict):
        return {
            str(k): (REDACTED if _SECRET_KEY.search(str(k)) and isinstance(v, str) else scrub(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def admin_required() -> PermissionDenied:
    return PermissionDenied(
        "this needs a platform admin",
        code="platform_admin_required",
        hint="platform admins are made by the operator (`atlilith admin promote <handle>`); "
        "ask the platform operator",
    )


async def is_platform_admin(uow: UnitOfWork, person_id: uuid.UUID) -> bool:
    row = (
        await uow.session.execute(
            select(Person.is_platform_admin, Person.status).where(Person.id == person_id)
        )
    ).one_or_none()
    return row is not None and bool(row.is_platform_admin) and row.status == "active"


async def require_platform_admin(ctx: TenantContext, uow: UnitOfWork, *, write: bool = True) -> None:
    """Refuse unless the acting person is a platform admin right now (`check_platform_admin`);
    then switch the transaction to system mode, since admin work crosses tenants."""
    await check_platform_admin(ctx, uow, write=write)
    await uow.act_as_system()


async def check_platform_admin(ctx: TenantContext, uow: UnitOfWork, *, write: bool = True) -> None:
    """Refuse unless the acting person is a platform admin right now (read from the database, not
    the token). `write`: the credential needs `admin:write` (else `admin:read`); session tokens
    have both."""
    if not await is_platform_admin(uow, ctx.person_id):
        raise admin_required()
    ctx.require(ADMIN_WRITE if write else ADMIN_READ)


def _credential(ctx: TenantContext) -> str | None:
    p = ctx.principal
    if p.api_key_id is not None:
        return f"api_key:{p.api_key_id}"
    if p.session_id is not None:
        return f"session:{p.session_id}"
    return p.kind.value


async def record(
    uow: UnitOfWork,
    ctx: TenantContext | None,
    action: str,
    target_type: str,
    target_id: Any,
    details: dict[str, Any] | None = None,
) -> None:
    """Append an entry in the caller's transaction. `ctx` None = the local operator. `action` is
    `<noun>.<verb>` (`person.suspend`, `credits.grant`); `details` are scrubbed of secrets."""
    if not _ACTION_RE.fullmatch(action):
        raise ValueError(f"audit actions are '<noun>.<verb>', got {action!r}")
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "action": action,
        "target_type": target_type,
        "target_id": None if target_id is None else str(target_id),
        "details": scrub(to_jsonable_python(details or {})),
        "trace_id": uow.trace_id,
    }
    if ctx is None:
        values |= {
            "actor_kind": OPERATOR,
            "actor_person_id": None,
            "actor_label": OPERATOR,
            "credential": None,
            "context_org_id": None,
            "context": OPERATOR,
        }
    else:
        values |= {
            "actor_kind": "person",
            "actor_person_id": ctx.person_id,
            "actor_label": ctx.person_slug or str(ctx.person_id),
            "credential": _credential(ctx),
            "context_org_id": ctx.org_id,
            "context": ctx.label,
        }
    await uow.session.execute(insert(AuditEntry).values(**values))
