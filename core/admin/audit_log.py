"""The audit log: who did what to whom, filtered by actor, action, target and time."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import or_, select

from core import audit
from core.admin.lookup import as_uuid
from core.admin.schemas import (
    AuditEntryOut,
)
from core.audit import AuditEntry
from core.context import TenantContext
from core.errors import FieldIssue, ValidationFailed
from core.pagination import Page, PageRequest
from core.scoping import keyset_page, map_page
from core.tenancy.models import Org, Person
from core.uow import UnitOfWork


async def _target_ids(uow: UnitOfWork, target_type: str | None, target_id: str) -> list[str]:
    """Persons and orgs are logged by id; let the caller name them by handle or slug too (without
    a `target_type`, whatever the name may mean: the raw value, a person, an org)."""
    if (as_id := as_uuid(target_id)) is not None:
        return [str(as_id)]
    ref = target_id.strip().lower()
    found = [target_id.strip()]
    if target_type in (None, "person"):
        pid = (await uow.session.execute(select(Person.id).where(Person.slug == ref))).scalar_one_or_none()
        found += [str(pid)] if pid else []
    if target_type in (None, "org"):
        oid = (await uow.session.execute(select(Org.id).where(Org.slug == ref))).scalar_one_or_none()
        found += [str(oid)] if oid else []
    return found


async def list_audit(
    ctx: TenantContext,
    uow: UnitOfWork,
    page: PageRequest,
    actor: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Page[AuditEntryOut]:
    """Audit entries, newest first. `actor`: a handle, a person id or `operator`; `action`:
    exact (`person.suspend`) or a prefix (`person.*`); `target_id` of a person or org may be
    its handle or slug; `since` inclusive, `until` exclusive."""
    await audit.require_platform_admin(ctx, uow, write=False)
    # an instant without an offset is read as UTC
    since = since.replace(tzinfo=dt.UTC) if since is not None and since.tzinfo is None else since
    until = until.replace(tzinfo=dt.UTC) if until is not None and until.tzinfo is None else until
    if since is not None and until is not None and since >= until:
        raise ValidationFailed(
            "`since` must be before `until`",
            code="invalid_time_range",
            hint="give a `since` before `until` (`since` is inclusive, `until` exclusive), or only one",
            errors=[FieldIssue("until", "not after since")],
        )
    stmt = select(AuditEntry)
    if actor:
        if actor.strip().lower() == audit.OPERATOR:
            stmt = stmt.where(AuditEntry.actor_kind == audit.OPERATOR)
        elif (pid := as_uuid(actor)) is not None:
            stmt = stmt.where(AuditEntry.actor_person_id == pid)
        else:
            handle = actor.strip().lower()
            found = (
                await uow.session.execute(select(Person.id).where(Person.slug == handle))
            ).scalar_one_or_none()
            # the handle someone has now, or had when they acted
            stmt = stmt.where(
                or_(AuditEntry.actor_person_id == found, AuditEntry.actor_label == handle)
                if found
                else AuditEntry.actor_label == handle
            )
    if action:
        action = action.strip()
        if action.endswith(".*"):
            stmt = stmt.where(AuditEntry.action.startswith(action[:-1], autoescape=True))
        else:
            stmt = stmt.where(AuditEntry.action == action)
    if target_type:
        stmt = stmt.where(AuditEntry.target_type == target_type)
    if target_id:
        stmt = stmt.where(AuditEntry.target_id.in_(await _target_ids(uow, target_type, target_id)))
    if since is not None:
        stmt = stmt.where(AuditEntry.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEntry.at < until)
    filters = (actor, action, target_type, target_id, since, until)
    rows = await keyset_page(uow, stmt, page, AuditEntry.at, AuditEntry.id, descending=True, under=filters)
    return map_page(rows, AuditEntryOut.model_validate)
