"""Demo data for tenancy beyond the bootstrap seed: a second provider, a membership, an
invitation, an API key and clients in both contexts. The restore drill (and any operator who
wants a realistic database to try a backup on) calls every feature's `seed_demo`."""

from __future__ import annotations

import secrets

from sqlalchemy import select

from core import tenancy
from core.context import Principal, PrincipalKind, TenantContext
from core.seed import seeded_contexts, seeded_ids
from core.tenancy.models import Person
from core.tenancy.schemas import ApiKeyIn, ClientIn, InvitationIn, SignupIn
from core.uow import Database

DEMO_SLUG = "demo-ada"


async def seed_demo(db: Database) -> None:
    """Idempotent: a second run finds the demo person and changes nothing."""
    async with db.system() as uow:
        found = (await uow.session.execute(select(Person.id).where(Person.slug == DEMO_SLUG))).first()
        owner, org_id = await seeded_ids(uow)
    if found is not None:
        return
    auth = await tenancy.signup(
        db,
        SignupIn(
            email="ada@example.com",
            password=secrets.token_urlsafe(16),
            slug=DEMO_SLUG,
            display_name="Ada Démo",
        ),
        tenancy.Device(device_id="seed-demo", user_agent="seed"),
    )
    ada = auth.person.id
    as_ada = TenantContext(
        principal=Principal(kind=PrincipalKind.SESSION, person_id=ada), person_id=ada, person_slug=DEMO_SLUG
    )
    async with db.system() as uow:
        uow.ctx = as_ada
        await uow.act_as_service(ada, None)
        await tenancy.create_api_key(as_ada, uow, ApiKeyIn(name="demo agent", scopes=["tenancy:read"]))
        await tenancy.create_client(
            as_ada, uow, ClientIn(name="Zoë Personnelle", email="zoe@example.com", notes="ne pas démarcher ✓")
        )
    principal = Principal(kind=PrincipalKind.SESSION, person_id=owner)
    _, in_org = seeded_contexts(principal, owner, org_id)
    async with db.system() as uow:
        uow.ctx = in_org
        invited = await tenancy.create_invitation(in_org, uow, InvitationIn(person=DEMO_SLUG, role="admin"))
        await tenancy.create_invitation(in_org, uow, InvitationIn(email="invitee@example.com"))
        for i, (name, phone) in enumerate(
            (("Léa Martin", "+33611223344"), ("O'Brien & Co", None), ("李雷", None))
        ):
            await tenancy.create_client(
                in_org,
                uow,
                ClientIn(name=name, email=f"demo{i}@example.com", phone=phone, notes="line1\nline2\t"),
            )
    async with db.system() as uow:  # Ada joins as everyone does: by accepting
        uow.ctx = as_ada
        await uow.act_as_service(ada, None)
        await tenancy.accept_invitation(as_ada, uow, invited.id)
