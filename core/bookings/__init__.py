"""Bookings: services, working hours, slots, and the booking lifecycle, without double bookings.

Every rule lives here once; REST routes and MCP tools call the operations listed below. The one
rule that cannot be left to code is "a provider is never booked twice at once": PostgreSQL enforces
it with the exclusion constraint `ex_bookings_no_overlap` over (provider, buffered time) for every
active booking, across all the contexts the provider works in. The code around it only makes the
outcome clear (409 `slot_taken`) and cheap (writes for one provider queue on an advisory lock
instead of racing into the constraint, which can deadlock under concurrent inserts;
`queries.lock_providers`).

Where things live: `catalogue` (services), `hours` (working hours), `slots`, `holds` (creating
bookings), `lifecycle` (confirm, decline, cancel, reschedule, outcome), `reading`, `feeds`
(calendar exports), `manage` (the client's link), `housekeeping` (sweeps); shared rules in
`policy`, loaders in `queries`, answers and events in `presenters`.
"""

from core.bookings.catalogue import create_service, delete_service, get_service, list_services, update_service
from core.bookings.feeds import booking_ics, create_feed, feed_ics, list_feeds, revoke_feed
from core.bookings.holds import hold, request_booking
from core.bookings.hours import get_availability, set_availability
from core.bookings.housekeeping import expire_holds, send_due_reminders
from core.bookings.lifecycle import (
    cancel_booking,
    confirm_booking,
    decline_booking,
    record_outcome,
    reschedule_booking,
    reschedule_slots,
)
from core.bookings.manage import (
    manage_cancel,
    manage_ics,
    manage_link,
    manage_reschedule,
    manage_slots,
    manage_view,
)
from core.bookings.reading import get_booking, list_bookings
from core.bookings.slots import MAX_SLOTS, find_slots

__all__ = [
    "MAX_SLOTS",
    "booking_ics",
    "cancel_booking",
    "confirm_booking",
    "create_feed",
    "create_service",
    "decline_booking",
    "delete_service",
    "expire_holds",
    "feed_ics",
    "find_slots",
    "get_availability",
    "get_booking",
    "get_service",
    "hold",
    "list_bookings",
    "list_feeds",
    "list_services",
    "manage_cancel",
    "manage_ics",
    "manage_link",
    "manage_reschedule",
    "manage_slots",
    "manage_view",
    "record_outcome",
    "request_booking",
    "reschedule_booking",
    "reschedule_slots",
    "revoke_feed",
    "send_due_reminders",
    "set_availability",
    "update_service",
]
