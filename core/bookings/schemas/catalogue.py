"""Service shapes: what a bookable service is, as written and as answered."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from core.bookings.schemas.common import Assignment, Currency, LocationKind, Money, Text
from core.tenancy.schemas import PersonRef
from core.validation import Input, Name, SlugRef


class _ServiceFields(Input):
    description: Text | None = None
    buffer_before_minutes: int = Field(default=0, ge=0, le=1440, description="Free time kept before.")
    buffer_after_minutes: int = Field(default=0, ge=0, le=1440, description="Free time kept after.")
    min_notice_minutes: int = Field(default=0, ge=0, le=525_600, description="No booking sooner than this.")
    max_advance_days: int = Field(default=60, ge=1, le=730, description="No booking further ahead.")
    slot_interval_minutes: int | None = Field(
        default=None, ge=5, le=1440, description="Spacing of offered start times; default: the duration."
    )
    price_amount: Money | None = Field(default=None, description="e.g. 45.00")
    currency: Currency | None = Field(default=None, description="ISO 4217, e.g. EUR.")
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
    approval_required: bool = Field(default=False, description="Public bookings become requests.")


def _money_objects(data: Any) -> Any:
    """Services answer `price` and `late_cancel_fee` as `{"amount", "currency"}`; take that
    shape back as well as the flat `price_amount` + `currency` (an answer, edited, is a valid
    request). `price: null` clears the price."""
    if not isinstance(data, dict) or not ("price" in data or isinstance(data.get("late_cancel_fee"), dict)):
        return data
    data = dict(data)
    currencies: list[Any] = [data["currency"]] if data.get("currency") is not None else []
    price = data.get("price")
    if "price" in data and not (price is None or isinstance(price, dict)):
        # Said here: left for field validation, `price` would be refused as an unknown field.
        raise ValueError('`price` is an object, e.g. {"amount": "45.00", "currency": "EUR"}, or null')
    # A dict with other keys is left in place for field validation to refuse by name.
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

    # How a price, its currency and a late fee go together is core's rule, checked once for
    # a new service and an edited one alike (`core.bookings.catalogue._check_price`).


class ServiceUpdateIn(Input):
    name: Name | None = None
    duration_minutes: int | None = Field(default=None, ge=5, le=1440)
    description: Text | None = None
    buffer_before_minutes: int | None = Field(default=None, ge=0, le=1440)
    buffer_after_minutes: int | None = Field(default=None, ge=0, le=1440)
    min_notice_minutes: int | None = Field(default=None, ge=0, le=525_600)
    max_advance_days: int | None = Field(default=None, ge=1, le=730)
    slot_interval_minutes: int | None = Field(default=None, ge=5, le=1440)
    price_amount: Money | None = Field(
        default=None, description="e.g. 45.00; null with `currency` clears it."
    )
    currency: Currency | None = Field(default=None, description="ISO 4217, e.g. EUR.")
    location_kind: LocationKind | None = None
    location: Annotated[str, Field(max_length=500)] | None = None
    assignment: Assignment | None = None
    providers: list[SlugRef] | None = Field(default=None, min_length=1, max_length=100)
    cancel_notice_minutes: int | None = Field(default=None, ge=0, le=525_600)
    late_cancel_fee: Money | None = None
    active: bool | None = None
    approval_required: bool | None = None

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
    approval_required: bool
    context: Literal["personal", "org"]
    org_id: uuid.UUID | None
    created_at: dt.datetime
    updated_at: dt.datetime


class ServiceRef(BaseModel):
    id: uuid.UUID
    name: str
    duration_minutes: int
