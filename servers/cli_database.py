"""What the operator commands say, in one line, when the database cannot be used: a malformed
DATABASE_URL, a server that cannot be reached, a database that was never migrated."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy.exc import ArgumentError, DBAPIError

from core.errors import DomainError

__all__ = ["NOT_MIGRATED", "NOT_REACHED", "URL_FORM", "check_url", "database_problem", "domain_line"]

URL_FORM = "postgresql://USER:PASSWORD@HOST:5432/DATABASE"
NOT_MIGRATED = "run ./run migrate first, or set DATABASE_URL or ATLILITH_DATA_DIR to the server's data dir"
NOT_REACHED = "check DATABASE_URL and that PostgreSQL is running there"

# SQLSTATEs of a database that exists but holds no Atlilith yet: a table, a schema, or one of
# the roles migrate creates is missing.
_UNMIGRATED = {"42P01", "3F000", "42704"}
# The server answered but refused the connection: no such database, wrong password, no such role.
_REFUSED = {"3D000", "28P01", "28000", "57P03", "53300"}


def check_url(name: str, url: str) -> str | None:
    """Why `url` (the value of setting `name`) is not a PostgreSQL URL, in one line; None if
    it is one. The URL itself is never repeated: it may carry a password."""
    from core.db import asyncpg_url

    try:
        asyncpg_url(url)
    except ArgumentError:
        return f"{name} is not a database URL: write it as {URL_FORM}"
    except ValueError as exc:  # a URL, of another database
        return f"{name}: {exc}; write it as {URL_FORM}"
    return None


def _chain(exc: BaseException) -> Iterator[tuple[BaseException, BaseException | None]]:
    """`exc`, the driver's error SQLAlchemy wraps, and their causes (a few levels at most), each
    with the error it is the cause of. Not `__context__`: an error raised while handling a
    database error is another failure, not the database's."""
    seen: set[int] = set()
    todo: list[tuple[BaseException | None, BaseException | None]] = [(exc, None)]
    while todo and len(seen) < 8:
        item, effect = todo.pop(0)
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item, effect
        orig = getattr(item, "orig", None)
        todo += [(orig if isinstance(orig, BaseException) else None, item), (item.__cause__, item)]


# The database drivers, and SQLAlchemy's adaptation of asyncpg's errors to DB-API ones.
_DRIVERS = ("asyncpg", "psycopg", "psycopg2", "sqlalchemy.dialects")


def _from_driver(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in _DRIVERS)


def _driver_error(item: BaseException | None) -> bool:
    return isinstance(item, DBAPIError) or (item is not None and _from_driver(type(item).__module__))


def _raised_by_driver(exc: BaseException) -> bool:
    """Whether `exc` was raised while the driver ran (connecting: asyncpg opens the socket itself
    and lets the OSError through unwrapped), not by the command's own files or output."""
    tb = exc.__traceback__
    while tb is not None:
        if _from_driver(str(tb.tb_frame.f_globals.get("__name__", ""))):
            return True
        tb = tb.tb_next
    return False


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def database_problem(exc: BaseException, *, reads_schema: bool = False) -> str | None:
    """One line saying what to do when `exc` means the database cannot be used; None when it is
    some other failure (which keeps its traceback: that is a bug to report). `reads_schema`: the
    command reads Atlilith's tables without migrating first, so one missing means "migrate"; in
    any other command it is a bug."""
    for item, effect in _chain(exc):
        # asyncpg's own error carries the SQLSTATE and the server's words.
        state = getattr(item, "sqlstate", None) if _driver_error(item) else None
        missing = state in _UNMIGRATED or (state == "28000" and "does not exist" in str(item))
        if reads_schema and missing:
            return f"cannot use the database ({_first_line(item)}): {NOT_MIGRATED}"
        if state in _REFUSED:
            return f"cannot connect to the database ({_first_line(item)}): {NOT_REACHED}"
        # Refused, unknown host, timed out: from the driver, or what its error wraps.
        if isinstance(item, OSError) and (_driver_error(effect) or _raised_by_driver(item)):
            return f"cannot connect to the database ({_first_line(item)}): {NOT_REACHED}"
    return None


def domain_line(err: DomainError, *, reads_schema: bool = True) -> str:
    """A domain error as an operator command says it: `code: message`, or, when core could not
    reach the database, what to check. Its callers (token, admin) read the schema at start."""
    found = database_problem(err, reads_schema=reads_schema) if err.code == "database_unavailable" else None
    return found or f"{err.code}: {err.message}"
