"""`atlilith seed`: the design's bootstrap data, idempotent (a second run changes nothing).

Person `transquinnftw` owns org `cocotte`, whose brand sites are `cocotte.maison` and
`sansonnet.maison`, with a few clients. Everything goes through the same service functions as
the API; a second provider is onboarded the same way, with no code change.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select

from core import tenancy
from core.billing import ledger
from core.context import Principal, PrincipalKind, Role, TenantContext
from core.errors import ValidationFailed
from core.registry.installs import install_builtins
from core.tenancy.models import Brand, Client, Org, Person, PersonCredential
from core.tenancy.schemas import BrandIn, ClientIn, OrgIn
from core.uow import Database, UnitOfWork
from core.validation import Password, issue_message

PERSON_SLUG = "transquinnftw"
PERSON_EMAIL = "transquinnftw@cocotte.maison"
ORG_SLUG = "cocotte"
BRANDS = (
    ("cocotte-maison", "Cocotte", "cocotte.maison", {"theme": "cocotte", "locale": "fr-FR"}),
    ("sansonnet-maison", "Sansonnet", "sansonnet.maison", {"theme": "sansonnet", "locale": "fr-FR"}),
)
CLIENTS = (
    ("Camille Laurent", "camille.laurent@example.com", "+33612345678"),
    ("Jules Moreau", "jules.moreau@example.com", "+33698765432"),
    ("Inès Garnier", "ines.garnier@example.com", None),
)


@dataclass
class SeedReport:
    person_created: bool
    generated_password: str | None
    org_created: bool
    brands_created: int
    clients_created: int
    components_installed: int = 0
    credits_granted: int = 0
    # A password was chosen but the person already existed: it keeps the one it has.
    password_unchanged: bool = False


_PASSWORD = TypeAdapter(Password)


def check_seed_password(password: str | None) -> None:
    """Refuse a chosen seed password that sign-up and a password change would refuse."""
    if password is None:
        return
    try:
        _PASSWORD.validate_python(password)
    except ValidationError as exc:
        raise ValidationFailed(
            f"the seed password (ATLILITH_SEED_PASSWORD) {issue_message(exc.errors()[0])}",
            code="validation_failed",
            hint="choose 10 to 256 characters, or unset ATLILITH_SEED_PASSWORD to have one generated",
        ) from None


def seeded_contexts(
    principal: Principal, person_id: uuid.UUID, org_id: uuid.UUID
) -> tuple[TenantContext, TenantContext]:
    """The seeded person's two contexts: personal, and the seeded org as its owner."""
    personal = TenantContext(principal=principal, person_id=person_id, person_slug=PERSON_SLUG)
    in_org = TenantContext(
        principal=principal,
        person_id=person_id,
        person_slug=PERSON_SLUG,
        org_id=org_id,
        org_slug=ORG_SLUG,
        role=Role.OWNER,
    )
    return personal, in_org


async def seeded_ids(uow: UnitOfWork) -> tuple[uuid.UUID, uuid.UUID]:
    """The ids of the seeded person and org (after `seed`)."""
    person_id = (await uow.session.execute(select(Person.id).where(Person.slug == PERSON_SLUG))).scalar_one()
    org_id = (await uow.session.execute(select(Org.id).where(Org.slug == ORG_SLUG))).scalar_one()
    return person_id, org_id


async def seed(db: Database, password: str | None = None) -> SeedReport:
    check_seed_password(password)
    async with db.system() as uow:
        person_id, person_created, generated = await _person(db, uow, password)
        principal = Principal(kind=PrincipalKind.SYSTEM, person_id=person_id)
        personal = TenantContext(principal=principal, person_id=person_id, person_slug=PERSON_SLUG)
        uow.ctx = personal  # events emitted below name the seeded person as actor
        org = (await uow.session.execute(select(Org).where(Org.slug == ORG_SLUG))).scalar_one_or_none()
        if org is None:
            org_id = (await tenancy.create_org(personal, uow, OrgIn(slug=ORG_SLUG, name="Cocotte"))).id
        else:
            org_id = org.id
        _, in_org = seeded_contexts(principal, person_id, org_id)
        uow.ctx = in_org
        brands, clients = await _brands_and_clients(in_org, uow)
        # Every built-in the registry knows, in both contexts, so `./run dev` is fully usable.
        installed = await install_builtins(uow, person_id, None)
        installed += await install_builtins(uow, person_id, org_id)
        # Starting credits in both contexts, once (a later seed never tops them up).
        granted = 0
        for context_org in (None, org_id):
            if await ledger.grant_once(
                uow, person_id, context_org, db.settings.seed_credits, reason="seed", memo="seeded credits"
            ):
                granted += db.settings.seed_credits
    return SeedReport(
        person_created,
        generated,
        org is None,
        brands,
        clients,
        len(installed),
        granted,
        password_unchanged=password is not None and not person_created,
    )


async def _person(db: Database, uow: UnitOfWork, password: str | None) -> tuple[uuid.UUID, bool, str | None]:
    """The seeded person's id, whether it was created just now (with `password`, or a generated
    one, returned), and that generated password."""
    person = (
        await uow.session.execute(select(Person).where(Person.slug == PERSON_SLUG))
    ).scalar_one_or_none()
    if person is not None:
        return person.id, False, None
    generated = None
    if password is None:
        generated = password = secrets.token_urlsafe(12)
    person = Person(id=uuid.uuid4(), slug=PERSON_SLUG, email=PERSON_EMAIL, display_name="Quinn")
    uow.session.add(person)
    await uow.session.flush()
    uow.session.add(PersonCredential(person_id=person.id, password_hash=await db.passwords.hash(password)))
    uow.emit("platform/person.created", {"slug": PERSON_SLUG, "via": "seed"}, person_id=person.id)
    return person.id, True, generated


async def _brands_and_clients(in_org: TenantContext, uow: UnitOfWork) -> tuple[int, int]:
    """The org's brands and clients that are missing, by slug and by email."""
    org_id = in_org.org_id
    existing_brands = set(
        (await uow.session.execute(select(Brand.slug).where(Brand.org_id == org_id))).scalars()
    )
    brands = 0
    for slug, name, domain, config in BRANDS:
        if slug not in existing_brands:
            await tenancy.create_brand(
                in_org, uow, BrandIn(slug=slug, name=name, domains=[domain], config=config)
            )
            brands += 1
    existing_emails = set(
        (await uow.session.execute(select(Client.email).where(Client.org_id == org_id))).scalars()
    )
    clients = 0
    for name, email, phone in CLIENTS:
        if email not in existing_emails:
            await tenancy.create_client(in_org, uow, ClientIn(name=name, email=email, phone=phone))
            clients += 1
    return brands, clients
