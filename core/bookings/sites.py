"""Brand sites: one template, each brand's config (core.tenancy.schemas.SiteSettings).

A brand's site is its name, tagline, logo, colours, about text, contact and the services it
offers, each linking to the owner's booking page. It answers at `/site/{slug}` and, for the
brand's own domains, at `/` (the `Host` names the brand). A provider's booking page is the same
template filled from the provider instead (`core.bookings.public.public_page`).
"""

from __future__ import annotations

import time

from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from core.bookings.models import Service
from core.bookings.public import PublicService, public_service_list
from core.observability import get_logger
from core.presenting import from_row
from core.scoping import owned_by
from core.tenancy.models import Brand, BrandDomain, Org, Person
from core.tenancy.schemas import SiteColours, SiteContact, SiteSettings
from core.uow import Database

log = get_logger("atlilith.bookings.sites")

__all__ = ["SiteOut", "brand_for_host", "forget_hosts", "public_site"]

# How long a process believes what a host maps to: brand domains change rarely, and the
# lookup must not cost a query on every request to `/`.
HOST_TTL_SECONDS = 60.0
_hosts: dict[str, tuple[float, str | None]] = {}


class SiteOut(BaseModel):
    slug: str
    name: str
    tagline: str | None
    about: str | None
    logo_url: str | None
    colours: SiteColours | None
    contact: SiteContact | None
    book_slug: str  # the owner's booking page: /book/{book_slug}/{service}
    services: list[PublicService]


async def public_site(db: Database, slug: str) -> SiteOut | None:
    """The brand's site, or None for an unknown brand (the caller answers 404)."""
    async with db.system() as uow:
        brand = (
            await uow.session.execute(select(Brand).where(Brand.slug == slug.lower()))
        ).scalar_one_or_none()
        if brand is None:
            return None
        if brand.org_id is not None:
            owner = (await uow.session.execute(select(Org.slug).where(Org.id == brand.org_id))).scalar_one()
        else:
            owner = (
                await uow.session.execute(select(Person.slug).where(Person.id == brand.person_id))
            ).scalar_one()
        try:
            settings = SiteSettings.model_validate(brand.config)
        except ValidationError:
            # Saved before the site's keys were checked: show the brand plainly, never fail.
            log.warning("brand_config_unreadable", brand=brand.slug)
            settings = SiteSettings()
        await uow.act_as_service(brand.person_id, brand.org_id)
        stmt = select(Service).where(owned_by(Service, brand.tenant_id), Service.active.is_(True))
        if settings.services is not None:
            stmt = stmt.where(Service.id.in_(settings.services))
        services = await public_service_list(uow, stmt)
        # The site's words and looks are the brand's settings; its names are the brand's own.
        return from_row(
            SiteOut, settings, slug=brand.slug, name=brand.name, book_slug=owner, services=services
        )


async def brand_for_host(db: Database, host: str) -> str | None:
    """The slug of the brand whose domain this is (cached per process for a minute)."""
    host = host.lower().rstrip(".")
    now = time.monotonic()
    cached = _hosts.get(host)
    if cached is not None and cached[0] > now:
        return cached[1]
    async with db.system() as uow:
        slug = (
            await uow.session.execute(
                select(Brand.slug)
                .join(BrandDomain, BrandDomain.brand_id == Brand.id)
                .where(BrandDomain.domain == host)
            )
        ).scalar_one_or_none()
    if len(_hosts) > 10_000:  # a flood of made-up Host headers must not grow this without bound
        _hosts.clear()
    _hosts[host] = (now + HOST_TTL_SECONDS, slug)
    return slug


def forget_hosts() -> None:
    """Drop the host cache (tests; a process that just changed a brand's domains)."""
    _hosts.clear()
