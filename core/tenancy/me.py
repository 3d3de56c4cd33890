"""The signed-in person: who they are, their name and their password."""

from __future__ import annotations

from sqlalchemy import func, update

from core.context import TenantContext
from core.errors import FieldIssue, PermissionDenied, Unauthenticated
from core.tenancy.models import AuthSession, Person, PersonCredential
from core.tenancy.presenters import person_out
from core.tenancy.queries import WRITE
from core.tenancy.schemas import (
    ContextOut,
    CredentialOut,
    MembershipOut,
    MeOut,
    OrgRef,
    PasswordChangeIn,
    PersonOut,
    PersonUpdateIn,
)
from core.uow import UnitOfWork

# The hottest read of every agent and page: a plain statement on the driver's connection
# (`UnitOfWork.fetch`), not an ORM select, nor a statement through SQLAlchemy's execution: on
# this route either costs more Python than PostgreSQL spends answering it.
_WHOAMI_SQL = (
    "SELECT p.id, p.slug, p.display_name, p.email, m.role, m.created_at, o.id, o.slug, o.name,"
    " p.is_platform_admin"
    " FROM platform.persons p"
    " LEFT JOIN platform.org_members m ON m.person_id = p.id"
    " LEFT JOIN platform.orgs o ON o.id = m.org_id"
    " WHERE p.id = $1 ORDER BY o.slug"
)


async def whoami(ctx: TenantContext, uow: UnitOfWork) -> MeOut:
    """The person, the context this request acts in, every membership, and the credential used."""
    rows = await uow.fetch(_WHOAMI_SQL, ctx.person_id)
    if not rows:
        raise Unauthenticated(
            "the person behind this credential no longer exists",
            code="token_invalid",
            hint="sign in with an account that exists ([[tenancy.login]])",
        )
    first = rows[0]
    memberships = [
        MembershipOut(org=OrgRef(id=r[6], slug=r[7], name=r[8]), role=r[4], joined_at=r[5])
        for r in rows
        if r[6] is not None
    ]
    current = next((m for m in memberships if m.org.id == ctx.org_id), None)
    principal = ctx.principal
    return MeOut(
        # Their own email: the person is the viewer (`presenters.person_out`).
        person=PersonOut(id=first[0], slug=first[1], display_name=first[2], email=first[3]),
        context=ContextOut(kind="org", org=current.org, role=current.role)
        if current
        else ContextOut(kind="personal"),
        memberships=memberships,
        platform_admin=first[9],
        credential=CredentialOut(
            kind="oauth" if principal.grant_id else "api_key" if principal.api_key_id else "session",
            scopes=sorted(principal.scopes),
            api_key_id=principal.api_key_id,
            session_id=principal.session_id,
        ),
    )


async def update_me(ctx: TenantContext, uow: UnitOfWork, data: PersonUpdateIn) -> PersonOut:
    ctx.require(WRITE)
    person = await uow.session.get(Person, ctx.person_id)
    assert person is not None
    person.display_name = data.display_name
    await uow.session.flush()
    return person_out(person)


async def change_password(ctx: TenantContext, uow: UnitOfWork, data: PasswordChangeIn) -> None:
    """Change the password and sign out every other device."""
    ctx.require_human()
    cred = await uow.session.get(PersonCredential, ctx.person_id)
    assert cred is not None
    if not await uow.db.passwords.verify(cred.password_hash, data.current_password):
        raise PermissionDenied(
            "the current password is wrong",
            code="invalid_credentials",
            hint="`current_password` is the password you sign in with now",
            errors=[FieldIssue("current_password", "wrong password")],
        )
    cred.password_hash = await uow.db.passwords.hash(data.new_password)
    await uow.session.execute(
        update(AuthSession)
        .where(
            AuthSession.person_id == ctx.person_id,
            AuthSession.id != ctx.principal.session_id,
            AuthSession.revoked_at.is_(None),
        )
        .values(revoked_at=func.now(), revoked_reason="password_changed")
    )
    uow.emit("platform/person.password_changed", {})
