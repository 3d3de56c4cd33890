"""The registry reacting to its events: telling every process that tool lists changed."""

from __future__ import annotations

from sqlalchemy import text

from core.events import subscribe
from core.observability import get_logger
from core.outbox import Event
from core.registry.changes import CHANNEL, TOOLS_CHANGED, ToolsChange
from core.uow import UnitOfWork

log = get_logger("atlilith.registry.handlers")


@subscribe(TOOLS_CHANGED, name="registry.broadcast_tools_changed")
async def broadcast_tools_changed(event: Event, uow: UnitOfWork) -> None:
    """NOTIFY every listening process (each MCP server) with the affected ids, delivered when
    this delivery commits. Idempotent: a repeat only makes hosts refetch a list once more."""
    change = ToolsChange.from_event_data(event.id, event.data)
    await uow.session.execute(
        text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": change.to_notice()}
    )
    log.info(
        "tools_changed_broadcast",
        reason=event.data.get("reason"),
        persons=len(change.persons),
        orgs=len(change.orgs),
    )
