"""OAuth reacting to tenancy events, and its housekeeping."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, func, or_, update

from core.events import ScheduledRun, schedule, subscribe
from core.oauth.models import OAuthCode, OAuthGrant, OAuthRequest, OAuthToken
from core.observability import get_logger
from core.outbox import Event
from core.uow import UnitOfWork

log = get_logger("atlilith.oauth.handlers")


@subscribe("platform/org_member.removed")
async def revoke_connections_of_removed_member(event: Event, uow: UnitOfWork) -> None:
    """A connection made to act in an org ends when its person leaves that org. Membership is
    re-checked on every call anyway (`not_a_member`); this makes the connection visibly dead
    and stops it acting elsewhere under a consent given for that org. Idempotent."""
    if event.org_id is None:
        return
    member = uuid.UUID(str(event.data["member_person_id"]))
    # Connections are their person's rows: act as the removed person, within this org only.
    await uow.act_as_service(member, event.org_id)
    revoked = (
        await uow.session.execute(
            update(OAuthGrant)
            .where(
                OAuthGrant.person_id == member,
                OAuthGrant.org_id == event.org_id,
                OAuthGrant.revoked_at.is_(None),
            )
            .values(revoked_at=func.now(), revoked_reason="membership_ended")
            .returning(OAuthGrant.id, OAuthGrant.client_id)
        )
    ).all()
    for grant_id, client_id in revoked:
        uow.emit(
            "platform/oauth_connection.revoked",
            {"connection_id": grant_id, "client_id": client_id, "reason": "membership_ended"},
            person_id=member,
            org_id=event.org_id,
        )
    if revoked:
        log.info("member_connections_revoked", count=len(revoked))


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
