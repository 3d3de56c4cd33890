"""Monthly partitions of the event table, created on demand before events need them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import text

from core.errors import Unavailable
from core.observability import get_logger
from core.uow import Database

log = get_logger("atlilith.analytics")

_known: dict[str, set[dt.date]] = {}


def _months(start: dt.datetime, end: dt.datetime) -> set[dt.date]:
    month = dt.date(start.year, start.month, 1)
    out: set[dt.date] = set()
    while month <= end.date():
        out.add(month)
        month = dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return out


async def ensure_partitions(db: Database, start: dt.datetime, end: dt.datetime) -> int:
    """Make sure the monthly partitions for [start, end] exist. Runs in its own short
    transaction (the DDL lock must not live as long as the caller's), once per month per
    process. Returns how many were created."""
    start, end = start.astimezone(dt.UTC), end.astimezone(dt.UTC)
    key = db.engine.url.render_as_string(hide_password=True)
    known = _known.setdefault(key, set())
    wanted = _months(start, end)
    if wanted <= known:
        return 0
    try:
        async with db.system() as uow:
            await uow.session.execute(text("SELECT set_config('lock_timeout', '5s', true)"))
            created = (
                await uow.session.execute(
                    text("SELECT analytics.ensure_partitions(:s, :e)"), {"s": start, "e": end}
                )
            ).scalar_one()
    except Unavailable as err:
        raise Unavailable(
            "the event store could not prepare its partitions",
            code="partitions_unavailable",
            hint="retry in a few seconds",
        ) from err
    known |= wanted
    if created:
        log.info("analytics_partitions_created", count=created, start=start.date().isoformat())
    return int(created)
