"""Finding a context's client from what a peer or a booking form knows about them.

Used by other features (messaging ingest, bookings); not an operation with doors of its own.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, or_, select

from core.context import TenantContext
from core.errors import FieldIssue, ValidationFailed
from core.identity.polyseme import client_person_id
from core.preconditions import lock_resource
from core.scoping import in_context, new_in_context
from core.tenancy.models import Client
from core.tenancy.schemas import ClientOut
from core.uow import UnitOfWork
from core.validation import PHONE_HINT, clean_name, normalize_email, normalize_phone


def normalize_contact(uow: UnitOfWork, email: str | None, phone: str | None) -> tuple[str | None, str | None]:
    try:
        norm_email = normalize_email(email) if email else None
    except ValueError as exc:
        raise ValidationFailed(
            str(exc),
            code="invalid_email",
            hint="write it as name@domain, e.g. ada@example.com",
            errors=[FieldIssue("email", str(exc))],
        ) from exc
    try:
        norm_phone = normalize_phone(phone, uow.db.settings.default_phone_region) if phone else None
    except ValueError as exc:
        raise ValidationFailed(
            str(exc), code="invalid_phone", hint=PHONE_HINT, errors=[FieldIssue("phone", str(exc))]
        ) from exc
    return norm_email, norm_phone


async def find_or_create_client(
    ctx: TenantContext,
    uow: UnitOfWork,
    *,
    name: str | None,
    email: str | None,
    phone: str | None,
) -> tuple[ClientOut, bool]:
    """The client of this context with this email or phone (normalized), or a new one.
    Returns (client, created). Safe under concurrency: callers racing on the same contact
    get the same client."""
    norm_email, norm_phone = normalize_contact(uow, email, phone)
    if not norm_email and not norm_phone:
        raise ValidationFailed(
            "an email or a phone number is needed to find or create a client",
            code="contact_required",
            hint="give the client's `email`, `phone` or both",
            errors=[FieldIssue("email", "email or phone required")],
        )
    # Serialize matching per (tenant, contact) so two ingests of a new contact make one client.
    for key in filter(None, (norm_email, norm_phone)):
        await lock_resource(uow, "client", ctx.tenant_id, key)
    conditions = []
    if norm_email:
        conditions.append(func.lower(Client.email) == norm_email)
    if norm_phone:
        conditions.append(Client.phone == norm_phone)
    existing = (
        await uow.session.execute(
            select(Client)
            .where(in_context(Client, ctx), or_(*conditions))
            # Prefer the email match: emails are unique per context, phones are not.
            .order_by((func.lower(Client.email) == (norm_email or "")).desc(), Client.created_at)
            .limit(1)
        )
    ).scalar_one_or_none()
    if existing is not None:
        return ClientOut.model_validate(existing), False
    # The name a peer passes on is whatever the sender chose: cleaned (a "\u202egnp.exe" would
    # show reversed), not refused, which would drop the message; the contact when nothing shows.
    display = clean_name((name or "")[:200]) or norm_email or norm_phone or "Unknown"
    client_id = uuid.uuid4()
    await uow.session.execute(
        new_in_context(
            Client,
            ctx,
            id=client_id,
            name=display[:200],
            email=norm_email,
            phone=norm_phone,
            polyseme_person_id=client_person_id(uow.db.settings, ctx.tenant_id, norm_email, norm_phone),
        )
    )
    created = (await uow.session.execute(select(Client).where(Client.id == client_id))).scalar_one()
    uow.emit("platform/client.created", {"client_id": client_id, "via": "match"})
    return ClientOut.model_validate(created), True
