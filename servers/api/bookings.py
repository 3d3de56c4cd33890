"""/v1/bookings: services, working hours, slots, holds and requests, the booking lifecycle,
calendar exports, and the client's manage link (unauthenticated, one booking per token)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from fastapi import Path, Query, Response, status
from pydantic import AwareDatetime

from core import bookings
from core.bookings import schemas
from core.pagination import Page
from core.validation import SLUG_PATTERN
from servers.api.deps import CallerDep, DbDep, FeatureRouter, IdempotencyKey, IfMatch, PageDep, tagged

router = FeatureRouter(tags=["bookings"])

# Service operations deliberately without a route, and why (checked by tests/test_parity.py).
NOT_ROUTES = {
    "bookings.expire_holds": "scheduled sweep (bookings.expire_holds), not a caller's operation",
    "bookings.send_due_reminders": "scheduled handler (bookings.reminders), not a caller's operation",
}

Token = Annotated[str, Path(min_length=10, max_length=2000, description="The token from the link.")]
ProviderQuery = Annotated[
    str | None,
    Query(pattern=SLUG_PATTERN, description="A provider's slug (an org member); default: you."),
]
CALENDAR: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/calendar": {}}, "description": "An iCalendar document."}
}


def _ics(cal: schemas.Calendar) -> Response:
    return Response(
        cal.content,
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{cal.filename}"'},
    )


# --- services -------------------------------------------------------------------------------------


@router.get("/v1/bookings/services", response_model=Page[schemas.ServiceOut])
async def list_services(
    caller: CallerDep, page: PageDep, active: Annotated[bool | None, Query()] = None
) -> Page[schemas.ServiceOut]:
    """Services of the current context (personal, or the org of your token / X-Atlilith-Org)."""
    return await caller.call(bookings.list_services, page, active)


@router.post("/v1/bookings/services", status_code=status.HTTP_201_CREATED, response_model=schemas.ServiceOut)
async def create_service(
    data: schemas.ServiceIn, caller: CallerDep, idempotency_key: IdempotencyKey = None
) -> schemas.ServiceOut:
    """Create a bookable service (you, or an org's owner/admin)."""
    return await caller.call(bookings.create_service, data, idempotency_key=idempotency_key)


@router.get("/v1/bookings/services/{service_id}", response_model=schemas.ServiceOut)
async def get_service(service_id: uuid.UUID, caller: CallerDep, response: Response) -> schemas.ServiceOut:
    return tagged(response, await caller.call(bookings.get_service, service_id))


@router.patch("/v1/bookings/services/{service_id}", response_model=schemas.ServiceOut)
async def update_service(
    service_id: uuid.UUID,
    data: schemas.ServiceUpdateIn,
    caller: CallerDep,
    response: Response,
    if_match: IfMatch = None,
) -> schemas.ServiceOut:
    return tagged(response, await caller.call(bookings.update_service, service_id, data, if_match))


@router.delete("/v1/bookings/services/{service_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_service(service_id: uuid.UUID, caller: CallerDep) -> None:
    """Delete a never-booked service (409 `service_has_bookings` otherwise: deactivate it)."""
    async with caller.context() as (ctx, uow):
        await bookings.delete_service(ctx, uow, service_id)


# --- availability and slots ---------------------------------------------------------------------


@router.get("/v1/bookings/availability", response_model=schemas.AvailabilityOut)
async def get_availability(
    caller: CallerDep, response: Response, provider: ProviderQuery = None
) -> schemas.AvailabilityOut:
    """A provider's working hours in the current context."""
    return tagged(response, await caller.call(bookings.get_availability, provider))


@router.put("/v1/bookings/availability", response_model=schemas.AvailabilityOut)
async def set_availability(
    data: schemas.AvailabilityIn,
    caller: CallerDep,
    response: Response,
    provider: ProviderQuery = None,
    if_match: IfMatch = None,
) -> schemas.AvailabilityOut:
    """Replace working hours: weekly rules and date overrides, in an IANA time zone."""
    return tagged(response, await caller.call(bookings.set_availability, provider, data, if_match))


@router.get("/v1/bookings/slots", response_model=schemas.SlotsOut)
async def find_slots(caller: CallerDep, q: Annotated[schemas.SlotsQuery, Query()]) -> schemas.SlotsOut:
    """Free start times of a service between two dates, in your time zone."""
    return await caller.call(bookings.find_slots, q)


# --- creating bookings ----------------------------------------------------------------------------


@router.post("/v1/bookings/holds", status_code=status.HTTP_201_CREATED, response_model=schemas.BookingOut)
async def hold(
    data: schemas.HoldIn, caller: CallerDep, idempotency_key: IdempotencyKey = None
) -> schemas.BookingOut:
    """Reserve a slot for a few minutes; confirm it to book. 409 `slot_taken` when it is taken."""
    return await caller.call(bookings.hold, data, idempotency_key=idempotency_key)


@router.post("/v1/bookings/requests", status_code=status.HTTP_201_CREATED, response_model=schemas.BookingOut)
async def request_booking(
    data: schemas.RequestIn, caller: CallerDep, idempotency_key: IdempotencyKey = None
) -> schemas.BookingOut:
    """Request a slot for a client; the provider confirms or declines it."""
    return await caller.call(bookings.request_booking, data, idempotency_key=idempotency_key)


@router.get("/v1/bookings", response_model=Page[schemas.BookingOut])
async def list_bookings(
    caller: CallerDep,
    page: PageDep,
    from_at: Annotated[AwareDatetime | None, Query(description="Starting at or after (ISO 8601).")] = None,
    to_at: Annotated[AwareDatetime | None, Query(description="Starting before (ISO 8601).")] = None,
    status_filter: Annotated[list[schemas.Status] | None, Query(alias="status")] = None,
    provider: ProviderQuery = None,
    client_id: Annotated[uuid.UUID | None, Query()] = None,
) -> Page[schemas.BookingOut]:
    """Bookings of the current context by start time."""
    filters = schemas.BookingFilters(
        from_at=from_at, to_at=to_at, status=status_filter, provider=provider, client_id=client_id
    )
    return await caller.call(bookings.list_bookings, page, filters)


# --- calendar feeds -------------------------------------------------------------------------------


@router.get("/v1/bookings/feeds", response_model=Page[schemas.FeedOut])
async def list_feeds(caller: CallerDep, page: PageDep) -> Page[schemas.FeedOut]:
    """Your private calendar feeds."""
    return await caller.call_person_level(bookings.list_feeds, page)


@router.post("/v1/bookings/feeds", status_code=status.HTTP_201_CREATED, response_model=schemas.FeedCreated)
async def create_feed(data: schemas.FeedIn, caller: CallerDep) -> schemas.FeedCreated:
    """A private iCalendar URL of your bookings in every context (shown once)."""
    return await caller.call_person_level(bookings.create_feed, data)


@router.delete("/v1/bookings/feeds/{feed_id}", response_model=schemas.FeedOut)
async def revoke_feed(feed_id: uuid.UUID, caller: CallerDep) -> schemas.FeedOut:
    """Revoke a feed: its URL answers 404 from now on."""
    return await caller.call_person_level(bookings.revoke_feed, feed_id)


@router.get("/v1/bookings/feeds/{token}.ics", response_class=Response, responses=CALENDAR)
async def feed_ics(token: Token, db: DbDep) -> Response:
    """The feed itself (no credential: the token in the URL is the secret)."""
    return _ics(await bookings.feed_ics(db, token))


# --- the client's manage link (no account, no credential: the token reaches one booking) ----------


@router.get("/v1/bookings/manage/{token}", response_model=schemas.ManagedBookingOut, tags=["manage"])
async def manage_view(token: Token, db: DbDep) -> schemas.ManagedBookingOut:
    return await bookings.manage_view(db, token)


@router.get("/v1/bookings/manage/{token}/slots", response_model=schemas.SlotsOut, tags=["manage"])
async def manage_slots(
    token: Token,
    db: DbDep,
    from_date: Annotated[dt.date, Query()],
    to_date: Annotated[dt.date, Query()],
    time_zone: Annotated[str | None, Query(max_length=64)] = None,
) -> schemas.SlotsOut:
    """Free times the booking could move to."""
    return await bookings.manage_slots(db, token, from_date, to_date, time_zone)


@router.post("/v1/bookings/manage/{token}/cancel", response_model=schemas.ManagedChangeOut, tags=["manage"])
async def manage_cancel(token: Token, data: schemas.ManageCancelIn, db: DbDep) -> schemas.ManagedChangeOut:
    return await bookings.manage_cancel(db, token, data)


@router.post(
    "/v1/bookings/manage/{token}/reschedule", response_model=schemas.ManagedChangeOut, tags=["manage"]
)
async def manage_reschedule(
    token: Token, data: schemas.ManageRescheduleIn, db: DbDep
) -> schemas.ManagedChangeOut:
    return await bookings.manage_reschedule(db, token, data)


@router.get("/v1/bookings/manage/{token}/ics", response_class=Response, responses=CALENDAR, tags=["manage"])
async def manage_ics(token: Token, db: DbDep) -> Response:
    return _ics(await bookings.manage_ics(db, token))


# --- one booking ----------------------------------------------------------------------------------


@router.get("/v1/bookings/{booking_id}", response_model=schemas.BookingOut)
async def get_booking(booking_id: uuid.UUID, caller: CallerDep) -> schemas.BookingOut:
    return await caller.call(bookings.get_booking, booking_id)


@router.get("/v1/bookings/{booking_id}/ics", response_class=Response, responses=CALENDAR)
async def booking_ics(booking_id: uuid.UUID, caller: CallerDep) -> Response:
    return _ics(await caller.call(bookings.booking_ics, booking_id))


@router.post("/v1/bookings/{booking_id}/confirm", response_model=schemas.BookingOut)
async def confirm(
    booking_id: uuid.UUID,
    caller: CallerDep,
    data: schemas.ConfirmIn | None = None,
    idempotency_key: IdempotencyKey = None,
) -> schemas.BookingOut:
    """Confirm a hold (with the client's details if it had none) or a request."""
    return await caller.call(
        bookings.confirm_booking, booking_id, data or schemas.ConfirmIn(), idempotency_key=idempotency_key
    )


@router.post("/v1/bookings/{booking_id}/decline", response_model=schemas.BookingOut)
async def decline(booking_id: uuid.UUID, data: schemas.DeclineIn, caller: CallerDep) -> schemas.BookingOut:
    return await caller.call(bookings.decline_booking, booking_id, data)


@router.post("/v1/bookings/{booking_id}/cancel", response_model=schemas.BookingChangeOut)
async def cancel(
    booking_id: uuid.UUID,
    caller: CallerDep,
    data: schemas.CancelIn | None = None,
    idempotency_key: IdempotencyKey = None,
) -> schemas.BookingChangeOut:
    """Cancel (or, with `dry_run`, preview the cancellation and any late fee)."""
    return await caller.call(
        bookings.cancel_booking, booking_id, data or schemas.CancelIn(), idempotency_key=idempotency_key
    )


@router.get("/v1/bookings/{booking_id}/slots", response_model=schemas.SlotsOut)
async def reschedule_slots(
    booking_id: uuid.UUID, caller: CallerDep, q: Annotated[schemas.MoveSlotsQuery, Query()]
) -> schemas.SlotsOut:
    """The times this booking could move to: its service's free times with its own length,
    the times next to it included (it does not block itself), its own time left out."""
    return await caller.call(bookings.reschedule_slots, booking_id, q)


@router.post("/v1/bookings/{booking_id}/reschedule", response_model=schemas.BookingChangeOut)
async def reschedule(
    booking_id: uuid.UUID,
    data: schemas.RescheduleIn,
    caller: CallerDep,
    idempotency_key: IdempotencyKey = None,
) -> schemas.BookingChangeOut:
    """Move the booking (same id, history kept); 409 `slot_taken` if the new time is taken."""
    return await caller.call(bookings.reschedule_booking, booking_id, data, idempotency_key=idempotency_key)


@router.post("/v1/bookings/{booking_id}/outcome", response_model=schemas.BookingOut)
async def record_outcome(
    booking_id: uuid.UUID, data: schemas.OutcomeIn, caller: CallerDep
) -> schemas.BookingOut:
    """After the start: `completed` or `no_show`."""
    return await caller.call(bookings.record_outcome, booking_id, data)


@router.post("/v1/bookings/{booking_id}/manage-link", response_model=schemas.ManageLinkOut)
async def manage_link(
    booking_id: uuid.UUID, caller: CallerDep, revoke_previous: bool = False
) -> schemas.ManageLinkOut:
    """A fresh link for the client to view, cancel or reschedule this booking only;
    `?revoke_previous=true` makes every link given out before stop working."""
    return await caller.call(bookings.manage_link, booking_id, revoke_previous)
