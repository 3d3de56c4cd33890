"""The benchmarks' people: signed up as every benchmark's are, and their set-up transactions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from core.context import TenantContext
from core.opener import open_context
from core.tenancy import Device, accept_invitation, create_invitation, signup
from core.tenancy.schemas import AuthOut, InvitationIn, SignupIn
from core.uow import Database, UnitOfWork


async def person(db: Database, slug: str, email: str, display_name: str) -> AuthOut:
    """A person signed up as every benchmark's people are: the one bench password, a new device."""
    data = SignupIn(email=email, password="bench-password", slug=slug, display_name=display_name)
    return await signup(db, data, Device())


@asynccontextmanager
async def acting(
    db: Database, token: str, org: str | None = None
) -> AsyncIterator[tuple[TenantContext, UnitOfWork]]:
    """One set-up transaction in the context `token` opens (in `org`, else its own)."""
    async with db.uow() as uow:
        yield await open_context(uow, token, org), uow


async def join(db: Database, owner: AuthOut, org: str, who: AuthOut, role: str = "member") -> None:
    """`who` joins `org` as everyone does: invited by `owner`, they accept."""
    async with acting(db, owner.access_token, org) as (ctx, uow):
        invited = await create_invitation(ctx, uow, InvitationIn(person=who.person.slug, role=role))
    async with acting(db, who.access_token) as (ctx, uow):
        await accept_invitation(ctx, uow, invited.id)
