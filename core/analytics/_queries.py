"""What every analytics read shares: its range resolved in the asked zone, its time limit, the
one way it runs SQL (a timeout becomes a clear error) and the member references it shows."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Executable, text
from sqlalchemy.exc import DBAPIError

from core.analytics.schemas import MemberRef, RangeIn
from core.analytics.timebuckets import EPOCH, Range, resolve_range, zone
from core.errors import Unavailable
from core.uow import UnitOfWork
from core.utilities import utcnow


def resolve(q: RangeIn, default: str = "last_30_days") -> Range:
    tz = zone(q.time_zone)
    # Whole seconds, rounded up: ranges echo back readably, and "up to now" includes an event
    # sent a moment ago.
    now = (utcnow() + dt.timedelta(seconds=1)).replace(microsecond=0)
    return resolve_range(tz, period=q.period, start=q.start, end=q.end, now=now, default=default)


_TIMEOUT_SQL = text("SELECT set_config('statement_timeout', :v, true)")


async def limit_time(uow: UnitOfWork) -> None:
    """The analytics statement timeout (`query_timeout`) for the rest of the transaction."""
    ms = int(uow.db.settings.analytics_query_timeout_seconds * 1000)
    # On the driver's connection, in the transaction the session opened to bind the context:
    # one simple-protocol message, without the ORM's handling of a statement and its result
    # (~0.5 ms of CPU, a tenth of a 90-day trend's Python). Were the transaction not open yet,
    # or the message to fail, the session's own statement does it, or reports the failure as
    # every statement does (a lost connection is a 503).
    driver = (await (await uow.session.connection()).get_raw_connection()).driver_connection
    if driver is not None and driver.is_in_transaction():
        with contextlib.suppress(Exception):  # reported by the statement below, in its words
            await driver.execute(f"SET LOCAL statement_timeout = {ms}")
            return
    await uow.session.execute(_TIMEOUT_SQL, {"v": f"{ms}ms"})


_MINUTE = dt.timedelta(minutes=1)


# Lists go to PostgreSQL as one text each, cast there: the driver checks and encodes a list
# element by element (~1 us each; a 90-day Paris trend passed ~1,000), a text in one copy.
def int_array(values: Iterable[int]) -> str:
    """Integers as one text parameter, read in SQL by `ints(name)`."""
    return "{" + ",".join(map(str, values)) + "}"


def ints(name: str) -> str:
    """The SQL of the `int_array` parameter `name`, as an int[]."""
    return f"CAST(CAST(:{name} AS text) AS int[])"


def minutes(t: dt.datetime) -> int:
    """`t` (on the minute) in whole minutes since EPOCH."""
    return (t - EPOCH) // _MINUTE


def at_minute(expr: str) -> str:
    """The SQL instant `expr` minutes after EPOCH (exact: integer minutes)."""
    return f"(TIMESTAMPTZ '{EPOCH.isoformat()}' + make_interval(mins => {expr}))"


# The bucket starts, parameter `th` (`int_array` of their `minutes`), as a timestamptz[] for
# width_bucket: computed once per statement (an uncorrelated subquery).
THRESHOLDS = f"ARRAY(SELECT {at_minute('m')} FROM unnest({ints('th')}) AS m)"


def th_param(th: list[dt.datetime]) -> str:
    """The parameter `th` of THRESHOLDS."""
    return int_array(map(minutes, th))


# A statement's text parsed for its parameters once, not on every execution.
_text = functools.lru_cache(maxsize=256)(text)


async def fetch_rows(
    uow: UnitOfWork, sql: str | Executable, params: dict[str, Any] | None = None
) -> list[Any]:
    """The rows of `sql` (SQL text with `params`, or a built statement)."""
    try:
        return list((await uow.session.execute(_text(sql) if isinstance(sql, str) else sql, params)).all())
    except DBAPIError as err:
        if getattr(err.orig, "sqlstate", None) == "57014":
            raise Unavailable(
                "this analytics query took too long and was stopped",
                code="query_timeout",
                hint="narrow the range, use fewer filters or a coarser interval",
            ) from err
        raise


async def members(uow: UnitOfWork, ids: set[str]) -> dict[str, MemberRef]:
    """Slugs of the members named by the tenant's own rows (persons the viewer may see)."""
    parsed = [uuid.UUID(i) for i in ids if i]
    refs = {str(i): MemberRef(id=i) for i in parsed}
    if parsed:
        found = await fetch_rows(
            uow,
            "SELECT id, slug, display_name FROM platform.persons WHERE id = ANY(CAST(:ids AS uuid[]))",
            {"ids": parsed},
        )
        for row in found:
            refs[str(row.id)] = MemberRef(id=row.id, slug=row.slug, display_name=row.display_name)
    return refs
