"""Calendar export shapes: feeds and iCalendar documents."""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, Field

from core.validation import Input, Name


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
