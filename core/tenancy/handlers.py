"""Tenancy reacting to its own events, and its housekeeping."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, func, update

from core.events import ScheduledRun, schedule, subscribe
from core.observability import get_logger
from core.outbox import Event
from core.tenancy.invitations import expire_invitations
from core.tenancy.models import ApiKey, AuthSession
from core.uow import UnitOfWork

log = get_logger("atlilith.tenancy.handlers")


@subscribe("platform/org_member.removed")
async def revoke_keys_of_removed_member(event: Event, uow: UnitOfWork) -> None:
    """A member who leaves or is removed keeps no API key bound to that org. Membership is
    re-checked on every request anyway; this makes the keys visibly dead. Idempotent."""
    member = uuid.UUID(str(event.data["member_person_id"]))
    if event.org_id is None:
        return
    # Keys are their owner's rows: act as the removed person, within this org only.
    await uow.act_as_service(member, event.org_id)
    revoked = (
        await uow.session.execute(
            update(ApiKey)
            .where(ApiKey.person_id == member, ApiKey.org_id == event.org_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=func.now())
            .returning(ApiKey.id, ApiKey.name)
        )
    ).all()
    for key_id, name in revoked:
        uow.emit(
            "platform/api_key.revoked",
            {"api_key_id": key_id, "name": name, "reason": "membership_ended"},
            person_id=member,
            org_id=event.org_id,
        )
    if revoked:
        log.info("member_keys_revoked", count=len(revoked))


@schedule("*/10 * * * *", name="platform.expire_invitations")
async def expire_stale_invitations(run: ScheduledRun, uow: UnitOfWork) -> None:
    count = await expire_invitations(uow)
    if count:
        log.info("invitations_expired", count=count)


@schedule("43 3 * * *", name="platform.purge_sessions")
async def purge_ended_sessions(run: ScheduledRun, uow: UnitOfWork) -> None:
    """Sessions that ended more than 30 days ago (and their refresh tokens) are deleted."""
    await uow.session.execute(
        delete(AuthSession).where(
            (AuthSession.expires_at < func.now() - func.make_interval(0, 0, 0, 30))
            | (AuthSession.revoked_at < func.now() - func.make_interval(0, 0, 0, 30))
        )
    )
