"""Tenancy reacting to its own events, and its housekeeping."""

from __future__ import annotations

from sqlalchemy import delete, func

from core.events import ScheduledRun, schedule, subscribe, sweep
from core.observability import get_logger
from core.outbox import Event
from core.tenancy.invitations import expire_invitations
from core.tenancy.members import revoke_delegations_of_leaver
from core.tenancy.models import ApiKey, AuthSession
from core.uow import UnitOfWork

log = get_logger("atlilith.tenancy.handlers")


@subscribe("platform/org_member.removed")
async def revoke_keys_of_removed_member(event: Event, uow: UnitOfWork) -> None:
    """A member who leaves or is removed keeps no API key bound to that org."""
    count = await revoke_delegations_of_leaver(
        event, uow, ApiKey, "platform/api_key.revoked", api_key_id=ApiKey.id, name=ApiKey.name
    )
    if count:
        log.info("member_keys_revoked", count=count)


@sweep("*/10 * * * *", name="platform.expire_invitations", logged_as="invitations_expired")
async def expire_stale_invitations(uow: UnitOfWork) -> int:
    return await expire_invitations(uow)


@schedule("43 3 * * *", name="platform.purge_sessions")
async def purge_ended_sessions(run: ScheduledRun, uow: UnitOfWork) -> None:
    """Sessions that ended more than 30 days ago (and their refresh tokens) are deleted."""
    await uow.session.execute(
        delete(AuthSession).where(
            (AuthSession.expires_at < func.now() - func.make_interval(0, 0, 0, 30))
            | (AuthSession.revoked_at < func.now() - func.make_interval(0, 0, 0, 30))
        )
    )
