"""The client's manage link shapes: what the client may send and sees."""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel

from core.bookings.schemas.catalogue import MoneyOut
from core.bookings.schemas.common import BookableStart, LocationKind, Reason, Status
from core.validation import Input


class ManageCancelIn(Input):
    reason: Reason | None = None
    dry_run: bool = False


class ManageRescheduleIn(Input):
    start_at: BookableStart
    dry_run: bool = False


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
