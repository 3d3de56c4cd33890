"""The booking page and the manage page: each handler reads the request, calls one core
operation and renders its answer; every rule lives in `core.bookings`."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from core.bookings.manage import manage_cancel, manage_ics, manage_reschedule, manage_slots, manage_view
from core.bookings.public import (
    PublicBookIn,
    public_book,
    public_is_free,
    public_page,
    public_service,
    public_slots,
)
from core.bookings.schemas import ManageCancelIn, ManageRescheduleIn, SlotsOut, bookable_range, is_bookable
from core.bookings.sites import SiteOut, brand_for_host, public_site
from core.errors import Conflict, DomainError, NotFound, ValidationFailed
from core.uow import Database
from servers.public.conversation import conversation_routes
from servers.public.form_errors import form_errors, invalid, sentence
from servers.public.guard import check_form, check_target, count_booking
from servers.public.render import HEADERS, csrf_token, error_page, not_found, render, when
from servers.public.resent import already_booked, remember_booking
from servers.public.zones import asked_zone, chosen, clock_labels, tz_query, zone_label, zone_query, zones

__all__ = ["routes", "site_page"]

Handler = Callable[[Request], Awaitable[Response]]
DONE = {
    "booked": "You are booked. A confirmation is below; keep this page's link.",
    "requested": "Request sent: you will hear back once it is confirmed.",
    "cancelled": "Your booking is cancelled.",
    "moved": "Your booking has moved.",
}
STATUS = {
    "confirmed": "Confirmed",
    "requested": "Waiting for confirmation",
    "held": "Being booked",
    "cancelled": "Cancelled",
    "declined": "Declined",
    "completed": "Done",
    "no_show": "Missed",
    "expired": "Expired",
}


def _last_week() -> dt.date:
    """The first day of the last week a times page shows: it ends on the last bookable day."""
    return bookable_range()[1] - dt.timedelta(days=6)


def _from(request: Request, zone: str) -> tuple[dt.date, str | None]:
    """The first day of the week to show, and what to tell the visitor when it is not the one
    asked for. An earlier day is today (the week picker may offer one); a day the core's rule
    refuses ahead, or that is no date, is answered with the nearest week that can be shown."""
    today = dt.datetime.now(ZoneInfo(zone)).date()
    asked = request.query_params.get("from", "")
    if not asked:
        return today, None
    try:
        day = dt.date.fromisoformat(asked)
    except ValueError:
        return today, "That date was not understood: here are this week's times."
    last, horizon = _last_week(), bookable_range()[1]
    if day > last:
        said = f"{horizon.day} {horizon:%B %Y}"
        return last, f"Times can be booked up to {said}: here is the last week that can be."
    return max(today, day), None


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def _days(slots: SlotsOut, link: Callable[[dt.datetime], str]) -> list[dict[str, Any]]:
    by_day: dict[dt.date, list[dt.datetime]] = {}
    for slot in slots.slots:
        by_day.setdefault(slot.start.date(), []).append(slot.start)
    days = []
    for starts in by_day.values():
        label = f"{starts[0]:%A} {starts[0].day} {starts[0]:%B}"
        times = [
            {"time": time, "label": f"{label}, {time}", "url": link(at)}
            for at, time in zip(starts, clock_labels(starts), strict=True)
        ]
        days.append({"label": label, "slots": times})
    return days


def guarded(handler: Handler) -> Handler:
    """Core's refusals become pages: 404s look alike, the rest say what to do."""

    async def page(request: Request) -> Response:
        try:
            return await handler(request)
        except DomainError as error:
            return error_page(request, error)
        except ValidationError as exc:
            # A model built from what the page passed refused it: still a page, never the
            # REST door's problem JSON (the handlers check what a visitor can get wrong first).
            said = " ".join(dict.fromkeys(issue.message for issue in invalid(exc).errors))
            return error_page(request, ValidationFailed(said or "this could not be done"))

    return page


# --- the booking page ----------------------------------------------------------------------------


async def booking_page(request: Request) -> Response:
    """The provider's own page: the site template filled from the person or org."""
    page = await public_page(_db(request), request.path_params["slug"])
    site = SiteOut(
        slug=page.slug,
        name=page.name,
        tagline=None,
        about=None,
        logo_url=None,
        colours=None,
        contact=None,
        book_slug=page.slug,
        services=page.services,
    )
    return render(request, "site.html", title=f"Book with {page.name}", site=site, query=zone_query(request))


async def site_page(request: Request) -> Response:
    """A brand's site: one template, the brand's config."""
    slug = request.path_params.get("brand") or await brand_for_host(_db(request), _host(request))
    site = await public_site(_db(request), slug) if slug else None
    if site is None:
        return not_found(request)
    theme = f"/site/{site.slug}/theme.css" if site.colours else None
    return render(
        request,
        "site.html",
        title=site.name,
        site=site,
        site_name=site.name,
        theme_url=theme,
        query=zone_query(request),
    )


async def site_theme(request: Request) -> Response:
    """The brand's colours as a style sheet (no inline style under the CSP); the values were
    checked as #rrggbb when the brand was saved."""
    site = await public_site(_db(request), request.path_params["brand"])
    if site is None:
        return not_found(request)
    c = site.colours
    rules = [
        f"--{name}: {value};"
        for name, value in (
            ("accent", c and c.primary),
            ("ink", c and c.text),
            ("page", c and c.background),
        )
        if value
    ]
    css = ":root { " + " ".join(rules) + " }\nbody { background: var(--page, #fff); }\n"
    return Response(css, media_type="text/css", headers={**HEADERS, "cache-control": "no-cache"})


def _host(request: Request) -> str:
    return request.headers.get("host", "").rsplit(":", 1)[0]


async def _slots_page(request: Request, notice: str | None = None, status: int = 200) -> Response:
    slug, service_id = request.path_params["slug"], _service_id(request)
    zone, given = asked_zone(request)
    start, refused = _from(request, zone)
    if refused and not notice:
        notice, status = refused, 400
    db = _db(request)
    page, service = await public_service(db, slug, service_id)
    slots = await public_slots(db, slug, service_id, start, 7, zone)
    base = f"/book/{page.slug}/{service.id}"
    return _times(
        request,
        slots,
        (zone, given, start),
        pick=f"{base}/details",
        page_url=base,
        status=status,
        title=f"{service.name} · {page.name}",
        heading=f"{service.name} with {page.name}",
        back_url=f"/book/{page.slug}",
        back_label=page.name,
        notice=notice,
    )


def _times(
    request: Request,
    slots: SlotsOut,
    where: tuple[str, bool, dt.date],
    *,
    pick: str,
    page_url: str,
    **context: Any,
) -> Response:
    """A week of free times: each links to `pick?start=…&tz=…`; the picker and "next week" stay
    on `page_url`."""
    zone, given, start = where

    def link(at: dt.datetime) -> str:
        return f"{pick}?" + urlencode({"start": at.isoformat(), "tz": zone})

    following = start + dt.timedelta(days=7)
    last = _last_week()
    return render(
        request,
        "slots.html",
        zones=zones(),
        time_zone=zone,
        zone_given=given,
        from_date=start.isoformat(),
        first_date=dt.datetime.now(ZoneInfo(zone)).date().isoformat(),
        last_date=last.isoformat(),
        days=_days(slots, link),
        next_url=f"{page_url}?" + urlencode({"tz": zone, "from": following.isoformat()})
        if following <= last
        else None,
        **context,
    )


def _service_id(request: Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.path_params["service"])
    except ValueError as exc:
        raise NotFound("no booking page here", code="page_not_found", hint="check the address") from exc


async def slots_page(request: Request) -> Response:
    return await _slots_page(request)


def _start(value: str) -> dt.datetime | None:
    try:
        start = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return start if start.tzinfo is not None else None


def _unbookable(start: dt.datetime) -> str | None:
    """Why nobody can book this start, said before anyone fills a form for it; None when the
    core's rules have to decide (free, within hours and notice)."""
    if not is_bookable(start):
        # The date as written, like the rule: converting a far date could overflow.
        ahead = start.date() > dt.datetime.now(dt.UTC).date()
        return "This time is too far ahead to be booked." if ahead else "This time has passed."
    if start <= dt.datetime.now(dt.UTC):
        return "This time has passed."
    return None


# Core's refusals of the time itself: shown as "this time can't be booked", with the way back
# to the times on offer, rather than as the developer's wording of the REST door.
_TIME_REFUSED = ("slot_taken", "slot_unavailable")


def _time_refused(request: Request, error: DomainError, back_url: str) -> Response:
    taken = error.code == "slot_taken"
    why = "That time was just taken. Please pick another." if taken else sentence(error.message)
    return _closed(request, why, back_url, status=error.status)


def _closed(request: Request, why: str, back_url: str, *, status: int) -> Response:
    return render(
        request,
        "message.html",
        status=status,
        private=True,
        title="This time can't be booked",
        heading="This time can't be booked",
        message=why,
        link={"url": back_url, "label": "Pick another time"},
    )


async def _details(
    request: Request,
    start: dt.datetime,
    zone: str | None,
    values: dict[str, str],
    error: DomainError | None = None,
) -> Response:
    page, service = await public_service(_db(request), request.path_params["slug"], _service_id(request))
    back_url = f"/book/{page.slug}/{service.id}?" + tz_query(zone)
    if why := _unbookable(start):
        return _closed(request, why, back_url, status=error.status if error else 400)
    return render(
        request,
        "form.html",
        status=error.status if error else 200,
        title=f"{service.name} · {page.name}",
        page=page,
        service=service,
        when=when(start, zone),
        start_at=start.isoformat(),
        time_zone=zone or "",
        zone_label=zone_label(start, zone),
        values=values,
        errors=form_errors(error),
        csrf=csrf_token(request),
        key=values.get("key") or secrets.token_urlsafe(16),
        action=f"/book/{page.slug}/{service.id}",
        back_url=back_url,
    )


async def details_page(request: Request) -> Response:
    zone = chosen(request.query_params.get("tz"))
    start = _start(request.query_params.get("start", ""))
    if start is None:
        return not_found(request)
    slug, service_id = request.path_params["slug"], _service_id(request)
    if not _unbookable(start) and not await public_is_free(_db(request), slug, service_id, start):
        # Said before anyone fills the form: taken since the page was shown, or never offered.
        back = f"/book/{slug.lower()}/{service_id}?" + tz_query(zone, **{"from": start.date().isoformat()})
        return _closed(request, "This time is not free. Please pick another.", back, status=409)
    return await _details(request, start, zone, {})


async def book(request: Request) -> Response:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    await check_form(request, form)
    zone = chosen(form.get("tz"))
    start = _start(form.get("start_at", ""))
    if start is None:
        return not_found(request)
    if _unbookable(start):
        # Refused before core, which would name a field the visitor cannot change.
        return await _details(request, start, zone, form, ValidationFailed("this time can't be booked"))
    slug, service_id = request.path_params["slug"], _service_id(request)
    try:
        data = PublicBookIn(
            service_id=service_id,
            start_at=start,
            name=form.get("name", ""),
            email=form.get("email") or None,
            phone=form.get("phone") or None,
            notes=form.get("notes") or None,
            # No zone chosen is no zone stored: "UTC" is only what the pages show meanwhile.
            time_zone=zone,
        )
    except ValidationError as exc:
        return await _details(request, start, zone, form, invalid(exc))
    await check_target(request, slug.lower())
    try:
        booked = await public_book(_db(request), slug, data, form.get("key") or None)
    except Conflict as error:
        if error.code != "slot_taken":
            raise
        request.scope["query_string"] = tz_query(zone, **{"from": start.date().isoformat()}).encode()
        return await _slots_page(request, "That time was just taken. Please pick another.", status=409)
    except DomainError as error:
        times = f"/book/{slug}/{service_id}?" + tz_query(zone)
        if error.code in _TIME_REFUSED:
            return _time_refused(request, error, times)
        if error.code == "idempotency_key_reused":
            return already_booked(request, form.get("key", ""), times)
        if error.status != 422:
            raise
        return await _details(request, start, zone, form, error)
    except ValidationError as exc:
        # A model core builds from the visitor's input refused it: the form again, like above.
        return await _details(request, start, zone, form, invalid(exc))
    await count_booking(request, slug.lower(), booked.id)
    done = RedirectResponse(f"/manage/{booked.manage_token}?done={booked.status}", status_code=303)
    remember_booking(request, done, form.get("key", ""), booked.status, booked.manage_token)
    return done


# --- the manage page -----------------------------------------------------------------------------


async def manage_page(request: Request) -> Response:
    done = request.query_params.get("done", "")
    return await _manage(request, DONE.get("booked" if done == "confirmed" else done))


async def _manage(
    request: Request, said: str | None = None, error: str | None = None, typed: str = ""
) -> Response:
    """The booking's page; `error` and `typed`: a refused cancel reason, shown again beside the
    reason it is about, to be corrected."""
    token = request.path_params["token"]
    b = await manage_view(_db(request), token)
    zone = b.time_zone or "UTC"
    return render(
        request,
        "manage.html",
        status=422 if error else 200,
        private=True,
        title=f"{b.service} · your booking",
        b=b,
        token=token,
        said=said,
        error=error,
        typed=typed,
        when=when(b.start_at, zone),
        time_zone=zone,
        status_label=STATUS.get(b.status, b.status),
        manage_url=str(request.url.replace(path=f"/manage/{token}", query="")),
        csrf=csrf_token(request),
    )


async def manage_calendar(request: Request) -> Response:
    ics = await manage_ics(_db(request), request.path_params["token"])
    return Response(
        ics.content,
        media_type="text/calendar; charset=utf-8",
        headers={
            "content-disposition": f'attachment; filename="{ics.filename}"',
            "cache-control": "no-store",
        },
    )


async def cancel(request: Request) -> Response:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    await check_form(request, form)
    token = request.path_params["token"]
    typed = form.get("reason", "")
    try:
        data = ManageCancelIn(reason=typed or None)
    except ValidationError as exc:
        why = next((i.message for i in invalid(exc).errors if i.field == "reason"), None)
        return await _manage(request, error=why or "Check the reason and send it again.", typed=typed)
    await manage_cancel(_db(request), token, data)
    return RedirectResponse(f"/manage/{token}?done=cancelled", status_code=303)


async def reschedule_slots(request: Request) -> Response:
    token = request.path_params["token"]
    db = _db(request)
    b = await manage_view(db, token)
    zone, given = asked_zone(request)
    if not given and b.time_zone:
        zone, given = b.time_zone, True
    start, notice = _from(request, zone)
    slots = await manage_slots(db, token, start, start + dt.timedelta(days=6), zone)
    return _times(
        request,
        slots,
        (zone, given, start),
        pick=f"/manage/{token}/reschedule/confirm",
        page_url=f"/manage/{token}/reschedule",
        private=True,
        title=f"{b.service} · another time",
        heading=f"Move your {b.service} booking",
        back_url=f"/manage/{token}",
        back_label="Your booking",
        notice=notice,
        status=400 if notice else 200,
    )


async def reschedule_preview(request: Request) -> Response:
    token = request.path_params["token"]
    start = _start(request.query_params.get("start", ""))
    if start is None:
        return not_found(request)
    db = _db(request)
    current = await manage_view(db, token)
    # As the move page: the zone chosen there, else the one the booking was made in.
    zone = chosen(request.query_params.get("tz")) or chosen(current.time_zone)
    if why := _unbookable(start):
        return _closed(request, why, _other_times(token, zone), status=400)
    try:
        change = await manage_reschedule(db, token, ManageRescheduleIn(start_at=start, dry_run=True))
    except DomainError as error:
        if error.code not in _TIME_REFUSED:
            raise
        return _time_refused(request, error, _other_times(token, zone))
    return render(
        request,
        "confirm_move.html",
        private=True,
        title="Move your booking",
        token=token,
        change=change,
        old_when=when(current.start_at.astimezone(start.tzinfo), zone),
        when=when(start, zone),
        start_at=start.isoformat(),
        time_zone=zone or "",
        zone_label=zone_label(start, zone),
        csrf=csrf_token(request),
    )


async def reschedule(request: Request) -> Response:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    await check_form(request, form)
    token = request.path_params["token"]
    start = _start(form.get("start_at", ""))
    if start is None:
        return not_found(request)
    db = _db(request)
    current = await manage_view(db, token)
    zone = chosen(form.get("tz")) or chosen(current.time_zone)
    if why := _unbookable(start):
        return _closed(request, why, _other_times(token, zone), status=422)
    try:
        await manage_reschedule(db, token, ManageRescheduleIn(start_at=start))
    except DomainError as error:
        if error.code not in _TIME_REFUSED:
            raise
        return _time_refused(request, error, _other_times(token, zone))
    return RedirectResponse(f"/manage/{token}?done=moved", status_code=303)


def _other_times(token: str, zone: str | None) -> str:
    return f"/manage/{token}/reschedule?" + tz_query(zone)


def routes() -> list[BaseRoute]:
    return [
        Route("/site/{brand}", guarded(site_page), methods=["GET"]),
        Route("/site/{brand}/theme.css", guarded(site_theme), methods=["GET"]),
        Route("/book/{slug}", guarded(booking_page), methods=["GET"]),
        Route("/book/{slug}/{service}", guarded(slots_page), methods=["GET"]),
        Route("/book/{slug}/{service}", guarded(book), methods=["POST"]),
        Route("/book/{slug}/{service}/details", guarded(details_page), methods=["GET"]),
        Route("/manage/{token}", guarded(manage_page), methods=["GET"]),
        Route("/manage/{token}/booking.ics", guarded(manage_calendar), methods=["GET"]),
        Route("/manage/{token}/cancel", guarded(cancel), methods=["POST"]),
        Route("/manage/{token}/reschedule", guarded(reschedule_slots), methods=["GET"]),
        Route("/manage/{token}/reschedule", guarded(reschedule), methods=["POST"]),
        Route("/manage/{token}/reschedule/confirm", guarded(reschedule_preview), methods=["GET"]),
        *conversation_routes(guarded),
    ]
