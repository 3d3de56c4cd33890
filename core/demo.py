"""Demo data so a newcomer's first `./run dev` shows a living portal.

For the seeded person (`transquinnftw`, personal context) and the org (`cocotte`): inbound
threads from clients, one with an agent's pending draft; a service with working hours and a
week of bookings; a month of analytics events. Everything goes through the core operations
the API uses (an inbound message is ingested as the client's conversation page delivers it,
the draft is written by an API key as an agent would), so the demo shows what the product
really does. Where the context has credits, a few identity jobs (look-ups of the demo clients)
are run too.

Demo rows are marked: threads carry the label `demo`, the service's name ends in "(demo)" and
its bookings' private notes say "demo", analytics events have the source `demo`. Each part
checks its marker first, so running the seed again changes nothing; `atlilith seed --no-demo`
skips all of it.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from core import analytics, billing, bookings, messaging, tenancy
from core.analytics.models import events as analytics_events
from core.billing.models import Job
from core.billing.schemas import RunIn
from core.bookings.models import Service as ServiceRow
from core.bookings.schemas import (
    AvailabilityIn,
    ConfirmIn,
    RequestIn,
    ServiceIn,
    ServiceOut,
    SlotOut,
    SlotsQuery,
    parse_weekly,
)
from core.context import Principal, PrincipalKind, TenantContext
from core.messaging.models import Thread
from core.messaging.schemas import DraftIn, InboundIn, ThreadUpdateIn
from core.pagination import PageRequest
from core.seed import seeded_contexts, seeded_ids
from core.tenancy.schemas import ApiKeyIn
from core.uow import Database, UnitOfWork

DEMO_LABEL = "demo"
DEMO_SOURCE = "demo"
DEMO_NOTE = "demo"
DEMO_SERVICE_SUFFIX = " (demo)"
TIME_ZONE = "Europe/Paris"

# (client name, email, subject, what they wrote, hours ago)
THREADS = (
    (
        "Camille Laurent",
        "camille.laurent@example.com",
        "Rendez-vous mardi ?",
        "Bonjour ! Auriez-vous un créneau mardi après-midi pour une consultation ?",
        3,
    ),
    (
        "Jules Moreau",
        "jules.moreau@example.com",
        "Question sur le tarif",
        "Le tarif inclut-il le suivi par message après la séance ?",
        20,
    ),
    ("Nora Petit", "nora.petit@example.com", "Merci !", "Merci pour la séance d'hier, à très vite.", 50),
)
DRAFT_REPLY = "Bonjour Camille, oui : mardi à 15 h ou à 16 h 30 sont libres. Lequel vous convient ?"
FUNNEL = ("page_view", "service_viewed", "booking_started", "booking_requested")
CHANNELS = ("instagram", "google", "direct", "newsletter", "word_of_mouth")


@dataclass
class DemoReport:
    threads: int = 0
    drafts: int = 0
    services: int = 0
    bookings: int = 0
    events: int = 0
    jobs: int = 0
    contexts: list[str] = field(default_factory=list)


async def seed_demo_data(db: Database, now: dt.datetime | None = None) -> DemoReport:
    """Add the demo data to both of the seeded person's contexts (after `core.seed.seed`)."""
    now = now or dt.datetime.now(dt.UTC)
    async with db.system() as uow:
        person_id, org_id = await seeded_ids(uow)
    report = DemoReport()
    principal = Principal(kind=PrincipalKind.SESSION, person_id=person_id)
    for ctx in seeded_contexts(principal, person_id, org_id):
        report.contexts.append(ctx.org_slug or ctx.person_slug or "")
        threads, drafts = await _demo_threads(db, ctx, now)
        services, booked = await _demo_bookings(db, ctx, now)
        report.threads += threads
        report.drafts += drafts
        report.services += services
        report.bookings += booked
        report.events += await _demo_events(db, ctx, now)
        report.jobs += await _demo_jobs(db, ctx)
    return report


async def _demo_threads(db: Database, ctx: TenantContext, now: dt.datetime) -> tuple[int, int]:
    """Inbound messages as a channel peer delivers them, and one pending draft by an agent."""
    async with db.service(ctx.person_id, ctx.org_id) as uow:
        uow.ctx = ctx
        exists = (
            await uow.session.execute(select(Thread.id).where(Thread.labels.contains([DEMO_LABEL])).limit(1))
        ).first()
        if exists is not None:
            return 0, 0
        tag = ctx.org_slug or "me"
        thread_ids: list[uuid.UUID] = []
        for i, (name, email, subject, body, hours) in enumerate(THREADS):
            out = await messaging.ingest(
                ctx,
                uow,
                InboundIn(
                    # The client wrote through a conversation page: replies (and the agent's
                    # draft, once approved) are delivered on a fresh `./run dev`, which has no
                    # email peer, and the first one shows the provider the client's link.
                    channel="portal",
                    external_id=f"demo-{tag}-{i}",
                    client_email=email,
                    client_name=name,
                    subject=subject,
                    body=body,
                    occurred_at=now - dt.timedelta(hours=hours),
                ),
            )
            thread_id = out.results[0].thread_id
            thread_ids.append(thread_id)
            await messaging.update_thread(ctx, uow, thread_id, ThreadUpdateIn(add_labels=[DEMO_LABEL]))
        key = await tenancy.create_api_key(
            ctx, uow, ApiKeyIn(name="Demo agent", scopes=["*"], org=ctx.org_slug)
        )
        agent = TenantContext(
            principal=Principal(
                kind=PrincipalKind.API_KEY,
                person_id=ctx.person_id,
                api_key_id=key.id,
                org_id=ctx.org_id,
                org_bound=ctx.org_id is not None,
            ),
            person_id=ctx.person_id,
            person_slug=ctx.person_slug,
            org_id=ctx.org_id,
            org_slug=ctx.org_slug,
            role=ctx.role,
        )
        await messaging.create_draft(agent, uow, thread_ids[0], DraftIn(body=DRAFT_REPLY))
    return len(thread_ids), 1


async def _demo_bookings(db: Database, ctx: TenantContext, now: dt.datetime) -> tuple[int, int]:
    """A service, working hours (only where none are set) and bookings over the coming week."""
    async with db.service(ctx.person_id, ctx.org_id) as uow:
        uow.ctx = ctx
        exists = (
            await uow.session.execute(
                select(ServiceRow.id).where(ServiceRow.name.endswith(DEMO_SERVICE_SUFFIX)).limit(1)
            )
        ).first()
        if exists is not None:
            return 0, 0
        service = await _demo_service(ctx, uow)
        today = now.astimezone(ZoneInfo(TIME_ZONE)).date()
        slots = await bookings.find_slots(
            ctx,
            uow,
            SlotsQuery(
                service_id=service.id,
                from_date=today,
                to_date=today + dt.timedelta(days=6),
                time_zone=TIME_ZONE,
            ),
        )
        clients = (await tenancy.list_clients(ctx, uow, _first_page(), None)).items
        rng = random.Random(f"demo-bookings-{ctx.org_slug}")  # noqa: S311 -- demo data, seeded to repeat
        # Slots are the starts free before any of these bookings: two of them may overlap (a
        # 60-minute service offered every quarter of an hour), so only slots apart are picked.
        gap = dt.timedelta(minutes=service.buffer_before_minutes + service.buffer_after_minutes)
        picked = _spread(_apart(slots.slots, gap), 8, rng)
        booked = 0
        for i, slot in enumerate(picked):
            client = clients[i % len(clients)] if clients else None
            fields: dict[str, Any] = {"client_id": client.id} if client else {"client_name": "Demo client"}
            b = await bookings.request_booking(
                ctx,
                uow,
                RequestIn(service_id=service.id, start_at=slot.start, notes=DEMO_NOTE, **fields),
            )
            # Most confirmed, a few left as requests for the provider to answer.
            if i % 3 != 2:
                await bookings.confirm_booking(ctx, uow, b.id, ConfirmIn())
            booked += 1
    return 1, booked


async def _demo_service(ctx: TenantContext, uow: UnitOfWork) -> ServiceOut:
    """Working hours (only where none are set) and the demo service."""
    hours = await bookings.get_availability(ctx, uow)
    if not hours.configured:
        await bookings.set_availability(
            ctx,
            uow,
            None,
            AvailabilityIn(
                time_zone=TIME_ZONE, weekly=parse_weekly(["mon-fri 09:00-18:00", "sat 10:00-13:00"])
            ),
        )
    return await bookings.create_service(
        ctx,
        uow,
        ServiceIn(
            name="Consultation" + DEMO_SERVICE_SUFFIX,
            duration_minutes=60,
            description="A demo service: edit or delete it.",
            price_amount=Decimal("60"),
            currency="EUR",
            buffer_after_minutes=15,
            min_notice_minutes=60,
        ),
    )


def _first_page() -> PageRequest:
    return PageRequest(limit=50)


def _apart(slots: list[SlotOut], gap: dt.timedelta) -> list[SlotOut]:
    """The slots, in order, each starting once the one before it kept has ended (and `gap`)."""
    kept: list[SlotOut] = []
    for slot in slots:
        if not kept or slot.start >= kept[-1].end + gap:
            kept.append(slot)
    return kept


def _spread(items: list[Any], count: int, rng: random.Random) -> list[Any]:
    """`count` items spread over the list (one or two a day), not the first `count` in a row."""
    if len(items) <= count:
        return list(items)
    step = len(items) / count
    return [items[min(len(items) - 1, int(i * step + rng.random() * step / 2))] for i in range(count)]


async def _demo_events(db: Database, ctx: TenantContext, now: dt.datetime) -> int:
    """A month of visits walking the booking funnel, from a few acquisition channels."""
    async with db.service(ctx.person_id, ctx.org_id) as uow:
        uow.ctx = ctx
        exists = (
            await uow.session.execute(
                select(func.count())
                .select_from(analytics_events)
                .where(analytics_events.c.source == DEMO_SOURCE, analytics_events.c.org_id == ctx.org_id)
                if ctx.org_id
                else select(func.count())
                .select_from(analytics_events)
                .where(
                    analytics_events.c.source == DEMO_SOURCE,
                    analytics_events.c.org_id.is_(None),
                    analytics_events.c.person_id == ctx.person_id,
                )
            )
        ).scalar_one()
        if exists:
            return 0
        rng = random.Random(f"demo-events-{ctx.org_slug or 'me'}")  # noqa: S311 -- demo data, seeded to repeat
        batch: list[dict[str, Any]] = []
        for day in range(30, 0, -1):
            base = now - dt.timedelta(days=day)
            # Busier on weekdays, growing a little over the month.
            visitors = rng.randint(8, 14) + (30 - day) // 5 - (4 if base.weekday() >= 5 else 0)
            for v in range(max(visitors, 2)):
                client = f"demo-visitor-{day}-{v}"
                channel = rng.choices(CHANNELS, weights=(5, 4, 3, 2, 1))[0]
                ts = base + dt.timedelta(hours=rng.uniform(7, 21))
                depth = 1 + sum(rng.random() < p for p in (0.6, 0.55, 0.5))
                for step in range(depth):
                    ts += dt.timedelta(minutes=rng.uniform(1, 15))
                    batch.append(
                        {
                            "name": FUNNEL[step],
                            "timestamp": ts.isoformat(),
                            "client_id": client,
                            "source": DEMO_SOURCE,
                            "properties": {"channel": channel},
                        }
                    )
        out = await analytics.ingest(ctx, uow, batch)
    return out.accepted


async def _demo_jobs(db: Database, ctx: TenantContext) -> int:
    """A few identity look-ups of demo clients, as an agent would run them. Jobs cost credits:
    without enough (a fresh platform grants none) there are none, and a later start adds them
    once the context has credits. A context that has run any job already gets none."""
    emails = [email for _, email, *_ in THREADS]
    async with db.service(ctx.person_id, ctx.org_id) as uow:
        uow.ctx = ctx
        if (await uow.session.execute(select(Job.id).limit(1))).first() is not None:
            return 0
        balance = await billing.get_balance(ctx, uow)
        if balance.available < len(emails):
            return 0
        for email in emails:
            await billing.run_job(ctx, uow, "identity", "resolve-person", RunIn(input={"email": email}))
    return len(emails)
