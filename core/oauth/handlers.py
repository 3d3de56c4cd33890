"""OAuth reacting to tenancy events, and its housekeeping."""

from __future__ import annotations

from sqlalchemy import delete, func, or_

from core.events import ScheduledRun, schedule, subscribe
from core.oauth.models import OAuthCode, OAuthGrant, OAuthRequest, OAuthToken
from core.observability import get_logger
from core.outbox import Event
from core.tenancy.members import revoke_delegations_of_leaver
from core.uow import UnitOfWork

log = get_logger("atlilith.oauth.handlers")


@subscribe("platform/org_member.removed")
async def revoke_connections_of_removed_member(event: Event, uow: UnitOfWork) -> None:
    """A connection made to act in an org ends when its person leaves that org: it stops acting
    elsewhere under a consent given for that org (membership is re-checked on every call too)."""
    count = await revoke_delegations_of_leaver(
        event,
        uow,
        OAuthGrant,
        "platform/oauth_connection.revoked",
        reason_column=OAuthGrant.revoked_reason,
        connection_id=OAuthGrant.id,
        client_id=OAuthGrant.client_id,
    )
    if count:
        log.info("member_connections_revoked", count=count)


@schedule("17 4 * * *", name="oauth.purge")
async def purge_spent_oauth_rows(run: ScheduledRun, uow: UnitOfWork) -> None:
    """Requests, codes and tokens past their life by a day are refused anyway: delete them.
    Revoked connections are kept (the person's history) until their tokens are gone."""
    day_ago = func.now() - func.make_interval(0, 0, 0, 1)
    await uow.session.execute(delete(OAuthRequest).where(OAuthRequest.expires_at < day_ago))
    await uow.session.execute(delete(OAuthCode).where(OAuthCode.expires_at < day_ago))
    await uow.session.execute(
        delete(OAuthToken).where(or_(OAuthToken.expires_at < day_ago, OAuthToken.revoked_at < day_ago))
    )
