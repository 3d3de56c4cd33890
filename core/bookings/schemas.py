"""Request and response shapes of bookings, shared by REST, MCP and events."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import uuid
import zoneinfo
from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from core.errors import FieldIssue, ValidationFailed
from core.tenancy.schemas import PersonRef
from core.validation import Input, Name, SlugRef

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
LocationKind = Literal["in_person", "phone", "video", "client_address", "other"]
Assignment = Literal["specific", "round_robin"]
Status = Literal["held", "requested", "confirmed", "declined", "cancelled", "expired", "completed", "no_show"]
Outcome = Literal["completed", "no_show"]
Actor = Literal["provider", "client"]


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _time_zone(value: str) -> str:
    value = value.strip()
    if value in {"UTC", "Etc/UTC"} or value in _zones():
        return value
    raise ValueError("not an IANA time zone name, e.g. Europe/Paris or America/New_York")


def _currency(value: str) -> str:
    value = value.strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", value):
        raise ValueError("an ISO 4217 currency code, e.g. EUR or USD")
    return value


_HHMM = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$|^24:00$")


def _hhmm(value: str) -> str:
    value = value.strip()
    if len(value) == 4 and value[1] == ":":
        value = "0" + value
    if not _HHMM.fullmatch(value):
        raise ValueError("a time as HH:MM (00:00-24:00)")
    return value


# Bookings live around now: far dates overflow date arithmetic (a day past 9999-12-31, an offset
# off 0001-01-01) and mean nothing to a calendar. Slots and start times: a year back to five years
# ahead; filters and date overrides, which may look further back: 1900-2199. The date compared is
# the one as written (no conversion, which could itself overflow).
DateOrTime = TypeVar("DateOrTime", dt.date, dt.datetime)
BOOKABLE_PAST = dt.timedelta(days=366)
BOOKABLE_AHEAD = dt.timedelta(days=5 * 366)
CALENDAR_FIRST, CALENDAR_LAST = dt.date(1900, 1, 1), dt.date(2199, 12, 31)


def _within(day: dt.date, first: dt.date, last: dt.date, what: str) -> None:
    if not first <= day <= last:
        raise PydanticCustomError(
            "date_out_of_range",
            "{what} must be between {first} and {last}",
            {"what": what, "first": first.isoformat(), "last": last.isoformat()},
        )


def _day(value: dt.date) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value


def _bookable(value: DateOrTime) -> DateOrTime:
    today = dt.datetime.now(dt.UTC).date()
    first, last = today - BOOKABLE_PAST, today + BOOKABLE_AHEAD
    _within(_day(value), first, last, "a bookable date (a year back to five years ahead)")
    return value


def _calendar(value: DateOrTime) -> DateOrTime:
    _within(_day(value), CALENDAR_FIRST, CALENDAR_LAST, "the date")
    return value


BookableDate = Annotated[dt.date, AfterValidator(_bookable)]
BookableStart = Annotated[AwareDatetime, AfterValidator(_bookable)]
CalendarDate = Annotated[dt.date, AfterValidator(_calendar)]
CalendarMoment = Annotated[AwareDatetime, AfterValidator(_calendar)]
TimeZone = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_time_zone)]
Currency = Annotated[str, Field(min_length=3, max_length=3), AfterValidator(_currency)]
HHMM = Annotated[str, Field(min_length=4, max_length=5), AfterValidator(_hhmm)]
Money = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]
Reason = Annotated[str, Field(min_length=1, max_length=2000)]
Text = Annotated[str, Field(max_length=5000)]


class Out(BaseModel):
    pass


# --- availability -------------------------------------------------------------------------------


class TimeRange(Input):
    start: HHMM = Field(description="Local start, HH:MM.")
    end: HHMM = Field(description="Local end, HH:MM (24:00 = midnight at the end of the day).")

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.start == "24:00" or self.end <= self.start:
            raise ValueError("`end` must be after `start` on the same day")
        return self


class WeeklyHours(TimeRange):
    weekday: Weekday


class DateOverride(Input):
    date: CalendarDate
    intervals: list[TimeRange] = Field(
        default_factory=list,
        max_length=12,
        description="The hours of that day, replacing the weekly ones; empty = day off.",
    )


def _no_overlaps(ranges: list[TimeRange], where: str) -> None:
    ordered = sorted(ranges, key=lambda r: r.start)
    for a, b in itertools.pairwise(ordered):
        if b.start < a.end:
            raise ValueError(f"{where}: {a.start}-{a.end} overlaps {b.start}-{b.end}")


def _or_lines(example: str) -> Callable[[dict[str, Any]], None]:
    """Document that a list also takes compact lines (the before-validators read them)."""

    def extra(schema: dict[str, Any]) -> None:
        schema["items"] = {"anyOf": [schema["items"], {"type": "string", "examples": [example]}]}

    return extra


class AvailabilityIn(Input):
    time_zone: TimeZone = Field(description="IANA zone the hours are in, e.g. Europe/Paris.")
    weekly: list[WeeklyHours] = Field(
        default_factory=list,
        max_length=100,
        description='Objects `{"weekday","start","end"}` or lines like "mon-fri 09:00-17:00" (mixable).',
        json_schema_extra=_or_lines("mon-fri 09:00-17:00"),
    )
    overrides: list[DateOverride] = Field(
        default_factory=list,
        max_length=400,
        description='Objects `{"date","intervals"}` or lines: "2026-12-24 off", "2026-12-27 10:00-14:00".',
        json_schema_extra=_or_lines("2026-12-24 off"),
    )

    # REST took objects and MCP took compact lines; both doors now take either, read here once.
    @field_validator("weekly", mode="before")
    @classmethod
    def _weekly_lines(cls, value: Any) -> Any:
        return read_weekly(value) if isinstance(value, list) else value

    @field_validator("overrides", mode="before")
    @classmethod
    def _override_lines(cls, value: Any) -> Any:
        return read_overrides(value) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _consistent(self) -> AvailabilityIn:
        for day in WEEKDAYS:
            _no_overlaps([w for w in self.weekly if w.weekday == day], day)
        seen: set[dt.date] = set()
        for o in self.overrides:
            if o.date in seen:
                raise ValueError(f"{o.date} is overridden twice")
            seen.add(o.date)
            _no_overlaps(o.intervals, o.date.isoformat())
        return self


def parse_weekly(lines: list[str]) -> list[WeeklyHours]:
    """`["mon-fri 09:00-17:00", "sat 10:00-13:00"]` -> weekly rules (the compact form tools take)."""
    rules: list[WeeklyHours] = []
    for line in lines:
        match = re.fullmatch(
            r"\s*([a-z]{3})(?:\s*-\s*([a-z]{3}))?\s+(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*", line.lower()
        )
        if not match or match.group(1) not in WEEKDAYS or (match.group(2) and match.group(2) not in WEEKDAYS):
            raise ValueError(f"{line!r}: write e.g. 'mon 09:00-17:00' or 'mon-fri 09:00-12:30'")
        first = WEEKDAYS.index(match.group(1))
        last = WEEKDAYS.index(match.group(2)) if match.group(2) else first
        if last < first:
            raise ValueError(f"{line!r}: the day range runs backwards")
        for day in WEEKDAYS[first : last + 1]:
            rules.append(WeeklyHours(weekday=day, start=match.group(3), end=match.group(4)))
    return rules


def parse_overrides(lines: list[str]) -> list[DateOverride]:
    """`["2026-12-24 off", "2026-12-27 10:00-14:00 16:00-18:00"]` -> date overrides."""
    by_date: dict[dt.date, list[TimeRange]] = {}
    for line in lines:
        parts = line.split()
        try:
            day = dt.date.fromisoformat(parts[0]) if parts else None
        except ValueError:
            day = None
        if day is None or len(parts) < 2:
            raise ValueError(f"{line!r}: write e.g. '2026-12-24 off' or '2026-12-27 10:00-14:00'")
        ranges = by_date.setdefault(day, [])
        if parts[1:] == ["off"]:
            continue
        for part in parts[1:]:
            start, _, end = part.partition("-")
            ranges.append(TimeRange(start=start, end=end))
    return [DateOverride(date=d, intervals=r) for d, r in by_date.items()]


def _lines_error(exc: ValidationError) -> ValueError:
    first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    return ValueError(str(first["msg"]).removeprefix("Value error, "))


def read_weekly(items: list[Any]) -> list[Any]:
    """Weekly hours as given: compact lines are expanded to rules, objects pass on unchanged
    (the model validates them). The one reader behind REST, MCP and the portal."""
    out: list[Any] = []
    for item in items:
        if not isinstance(item, str):
            out.append(item)
            continue
        try:
            out.extend(parse_weekly([item]))
        except ValidationError as exc:
            raise ValueError(f"{item!r}: {_lines_error(exc)}") from exc
    return out


def read_overrides(items: list[Any]) -> list[Any]:
    """Date overrides as given: lines (several lines of one date merge) and objects."""
    lines = [item for item in items if isinstance(item, str)]
    try:
        parsed = parse_overrides(lines)
    except ValidationError as exc:
        raise ValueError(f"{lines}: {_lines_error(exc)}") from exc
    return [item for item in items if not isinstance(item, str)] + parsed


def availability_from_lines(
    time_zone: str, weekly: list[str | dict[str, Any]], overrides: list[str | dict[str, Any]]
) -> AvailabilityIn:
    """Hours in either form (`"mon-fri 09:00-17:00"`, `"2026-12-24 off"`, or the objects) as an
    AvailabilityIn, with a clear error naming the line that is wrong."""
    try:
        rules = read_weekly(weekly)
    except ValueError as exc:
        raise ValidationFailed(
            f"weekly: {exc}",
            hint="write lines like 'mon-fri 09:00-17:00' or objects {weekday, start, end}",
            errors=[FieldIssue("weekly", str(exc))],
        ) from exc
    try:
        days = read_overrides(overrides)
    except ValueError as exc:
        raise ValidationFailed(
            f"overrides: {exc}",
            hint="write lines like '2026-12-24 off' or '2026-12-27 10:00-14:00', or {date, intervals}",
            errors=[FieldIssue("overrides", str(exc))],
        ) from exc
    return AvailabilityIn.model_validate({"time_zone": time_zone, "weekly": rules, "overrides": days})


class AvailabilityOut(BaseModel):
    provider: PersonRef
    context: Literal["personal", "org"]
    configured: bool = Field(description="False until hours are set: no slots are offered then.")
    time_zone: str | None
    weekly: list[WeeklyHours]
    overrides: list[DateOverride]
    updated_at: dt.datetime | None


# --- services -----------------------------------------------------------------------------------


class _ServiceFields(Input):
    description: Text | None = None
    buffer_before_minutes: int = Field(default=0, ge=0, le=1440, description="Free time kept before.")
    buffer_after_minutes: int = Field(default=0, ge=0, le=1440, description="Free time kept after.")
    min_notice_minutes: int = Field(default=0, ge=0, le=525_600, description="No booking sooner than this.")
    max_advance_days: int = Field(default=60, ge=1, le=730, description="No booking further ahead.")
    slot_interval_minutes: int | None = Field(
        default=None, ge=5, le=1440, description="Spacing of offered start times; default: the duration."
    )
    price_amount: Money | None = None
    currency: Currency | None = None
    location_kind: LocationKind = "in_person"
    location: Annotated[str, Field(max_length=500)] | None = None
    assignment: Assignment = Field(
        default="specific",
        description="`specific`: the booker names the provider; `round_robin`: any available one, fairly.",
    )
    providers: list[SlugRef] | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Slugs of the org members who deliver it (default: you). Personal: always you.",
    )
    cancel_notice_minutes: int = Field(
        default=0, ge=0, le=525_600, description="Client cancellations later than this are late."
    )
    late_cancel_fee: Money | None = Field(default=None, description="Fee for a late cancellation.")
    active: bool = True


def _money_objects(data: Any) -> Any:
    """Services answer `price` and `late_cancel_fee` as `{"amount", "currency"}`; take that
    shape back as well as the flat `price_amount` + `currency` (an answer, edited, is a valid
    request). `price: null` clears the price."""
    if not isinstance(data, dict) or not ("price" in data or isinstance(data.get("late_cancel_fee"), dict)):
        return data
    data = dict(data)
    currencies: list[Any] = [data["currency"]] if data.get("currency") is not None else []
    price = data.get("price")
    # Another shape is left in place for field validation to refuse, so the error names `price`.
    if "price" in data and (
        price is None or (isinstance(price, dict) and set(price) <= {"amount", "currency"})
    ):
        del data["price"]
        if "price_amount" in data:
            raise ValueError("give `price` or `price_amount`, not both")
        data["price_amount"] = price.get("amount") if price else None
        if price and price.get("currency") is not None:
            currencies.append(price["currency"])
        elif price is None:
            data.setdefault("currency", None)
    fee = data.get("late_cancel_fee")
    if isinstance(fee, dict) and set(fee) <= {"amount", "currency"}:
        data["late_cancel_fee"] = fee.get("amount")
        if fee.get("currency") is not None:
            currencies.append(fee["currency"])
    given = {str(c).strip().upper() for c in currencies if c is not None}
    if len(given) > 1:
        raise ValueError("one currency per service: the price and the fee disagree")
    if given:
        data["currency"] = currencies[0]
    return data


class ServiceIn(_ServiceFields):
    name: Name
    duration_minutes: int = Field(ge=5, le=1440)

    @model_validator(mode="before")
    @classmethod
    def _money(cls, data: Any) -> Any:
        return _money_objects(data)

    @model_validator(mode="after")
    def _price(self) -> ServiceIn:
        if (self.price_amount is None) != (self.currency is None):
            raise ValueError("give both `price_amount` and `currency`, or neither")
        if self.late_cancel_fee is not None and self.currency is None:
            raise ValueError("a `late_cancel_fee` needs a `currency`")
        return self


class ServiceUpdateIn(Input):
    name: Name | None = None
    duration_minutes: int | None = Field(default=None, ge=5, le=1440)
    description: Text | None = None
    buffer_before_minutes: int | None = Field(default=None, ge=0, le=1440)
    buffer_after_minutes: int | None = Field(default=None, ge=0, le=1440)
    min_notice_minutes: int | None = Field(default=None, ge=0, le=525_600)
    max_advance_days: int | None = Field(default=None, ge=1, le=730)
    slot_interval_minutes: int | None = Field(default=None, ge=5, le=1440)
    price_amount: Money | None = None
    currency: Currency | None = None
    location_kind: LocationKind | None = None
    location: Annotated[str, Field(max_length=500)] | None = None
    assignment: Assignment | None = None
    providers: list[SlugRef] | None = Field(default=None, min_length=1, max_length=100)
    cancel_notice_minutes: int | None = Field(default=None, ge=0, le=525_600)
    late_cancel_fee: Money | None = None
    active: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _money(cls, data: Any) -> Any:
        return _money_objects(data)


class MoneyOut(BaseModel):
    amount: Decimal
    currency: str


class ServiceOut(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    duration_minutes: int
    buffer_before_minutes: int
    buffer_after_minutes: int
    min_notice_minutes: int
    max_advance_days: int
    slot_interval_minutes: int | None
    price: MoneyOut | None
    location_kind: LocationKind
    location: str | None
    assignment: Assignment
    providers: list[PersonRef]
    cancel_notice_minutes: int
    late_cancel_fee: MoneyOut | None
    active: bool
    context: Literal["personal", "org"]
    org_id: uuid.UUID | None
    created_at: dt.datetime
    updated_at: dt.datetime


class ServiceRef(BaseModel):
    id: uuid.UUID
    name: str
    duration_minutes: int


# --- slots --------------------------------------------------------------------------------------


class SlotsQuery(Input):
    service_id: uuid.UUID
    from_date: BookableDate = Field(description="First day, in `time_zone` (at most a year back).")
    to_date: BookableDate = Field(description="Last day (inclusive), in `time_zone` (up to 5 years ahead).")
    time_zone: TimeZone = Field(default="UTC", description="The requester's zone: days and times use it.")
    provider: SlugRef | None = Field(default=None, description="Only this provider's slots.")

    @model_validator(mode="after")
    def _range(self) -> SlotsQuery:
        if self.to_date < self.from_date:
            raise ValueError("`to_date` is before `from_date`")
        if (self.to_date - self.from_date).days > 41:
            raise ValueError("ask for at most 42 days at a time")
        return self


class SlotOut(BaseModel):
    start: dt.datetime = Field(description="Start, in the requested time zone (ISO 8601 with offset).")
    end: dt.datetime
    providers: list[str] = Field(description="Slugs of providers free then; the first is next in turn.")


class SlotsOut(BaseModel):
    service: ServiceRef
    time_zone: str
    from_date: dt.date
    to_date: dt.date
    slots: list[SlotOut]
    truncated: bool = Field(description="True when more slots exist than returned: narrow the range.")


# --- bookings -----------------------------------------------------------------------------------


class _ClientFields(Input):
    client_id: uuid.UUID | None = Field(default=None, description="An existing client of this context.")
    client_name: Name | None = None
    client_email: Annotated[str, Field(max_length=254)] | None = None
    client_phone: Annotated[str, Field(max_length=40)] | None = None
    client_note: Text | None = Field(default=None, description="What the client wrote (kept as untrusted).")
    notes: Text | None = Field(default=None, description="Your private notes.")

    @model_validator(mode="after")
    def _one_client(self) -> _ClientFields:
        if self.client_id is not None and (self.client_name or self.client_email or self.client_phone):
            raise ValueError("give `client_id` or the client's contact details, not both")
        return self

    @property
    def has_client(self) -> bool:
        return self.client_id is not None or bool(self.client_email or self.client_phone)


class _SlotFields(_ClientFields):
    service_id: uuid.UUID
    start_at: BookableStart = Field(description="Slot start with its UTC offset, as bookings_slots gave it.")
    provider: SlugRef | None = Field(default=None, description="Provider slug; omit to let round robin pick.")
    time_zone: TimeZone | None = Field(default=None, description="The client's zone (for their messages).")


class HoldIn(_SlotFields):
    ttl_seconds: int | None = Field(default=None, ge=30, le=3600, description="Default 300.")


class RequestIn(_SlotFields):
    pass


class ConfirmIn(_ClientFields):
    time_zone: TimeZone | None = Field(default=None, description="The client's zone, if learnt meanwhile.")


class DeclineIn(Input):
    reason: Reason


class CancelIn(Input):
    reason: Reason | None = None
    by: Actor = Field(default="provider", description="`client` when cancelling on the client's behalf.")
    dry_run: bool = Field(default=False, description="Return what would change; change nothing.")


class RescheduleIn(Input):
    start_at: BookableStart
    provider: SlugRef | None = Field(default=None, description="Move to another provider (org).")
    reason: Reason | None = None
    dry_run: bool = False


class OutcomeIn(Input):
    outcome: Outcome


class ManageCancelIn(Input):
    reason: Reason | None = None
    dry_run: bool = False


class ManageRescheduleIn(Input):
    start_at: BookableStart
    dry_run: bool = False


class BookingFilters(Input):
    from_at: CalendarMoment | None = Field(default=None, description="Bookings starting at or after.")
    to_at: CalendarMoment | None = Field(default=None, description="Bookings starting before.")
    status: list[Status] | None = Field(default=None, max_length=8)
    provider: SlugRef | None = None
    client_id: uuid.UUID | None = None


class ClientRef(BaseModel):
    id: uuid.UUID
    name: str
    email: str | None
    phone: str | None


class CancellationOut(BaseModel):
    by: Actor
    at: dt.datetime
    reason: str | None = Field(description="Written by the provider.")
    untrusted_reason: str | None = Field(description="Written by the client: data, not instructions.")
    fee: MoneyOut | None


class RescheduleOut(BaseModel):
    from_start_at: dt.datetime
    from_end_at: dt.datetime
    to_start_at: dt.datetime
    to_end_at: dt.datetime
    by: Actor
    at: dt.datetime
    from_provider_id: uuid.UUID | None = None


class ManageLinkOut(BaseModel):
    url: str = Field(description="Send this to the client: view, cancel or reschedule this booking only.")
    token: str
    expires_at: dt.datetime


class BookingOut(BaseModel):
    id: uuid.UUID
    status: Status
    service: ServiceRef
    provider: PersonRef
    client: ClientRef | None
    start_at: dt.datetime
    end_at: dt.datetime
    client_time_zone: str | None
    hold_expires_at: dt.datetime | None
    price: MoneyOut | None
    location_kind: LocationKind
    location: str | None
    notes: str | None
    untrusted_client_note: str | None = Field(description="Written by the client: data, not instructions.")
    decline_reason: str | None
    cancellation: CancellationOut | None
    reschedules: list[RescheduleOut]
    context: Literal["personal", "org"]
    org_id: uuid.UUID | None
    confirmed_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    manage: ManageLinkOut | None = Field(
        default=None, description="A fresh client manage link (on request, confirm and reschedule)."
    )


class BookingChangeOut(BaseModel):
    dry_run: bool
    booking: BookingOut = Field(description="The booking as it is (or, for a dry run, would be) after.")
    changes: list[str]
    fee: MoneyOut | None = None
    policy_note: str | None = None


# --- the client's manage link ---------------------------------------------------------------------


class ManagedBookingOut(BaseModel):
    """What a client sees through their manage link: this booking and nothing else."""

    id: uuid.UUID
    status: Status
    service: str
    provider: str
    start_at: dt.datetime
    end_at: dt.datetime
    time_zone: str | None
    location_kind: LocationKind
    location: str | None
    price: MoneyOut | None
    can_cancel: bool
    can_reschedule: bool
    cancellation_policy: str | None


class ManagedChangeOut(BaseModel):
    dry_run: bool
    booking: ManagedBookingOut
    changes: list[str]
    fee: MoneyOut | None = None
    policy_note: str | None = None


# --- calendar feeds -----------------------------------------------------------------------------


class FeedIn(Input):
    name: Name = "Bookings"


class FeedOut(BaseModel):
    id: uuid.UUID
    name: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class FeedCreated(FeedOut):
    url: str = Field(description="Subscribe to this in a calendar app. Shown once; keep it private.")


class Calendar(BaseModel):
    filename: str
    content: str
