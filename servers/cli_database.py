"""What the operator commands say, in one line, when the database cannot be used: a malformed
DATABASE_URL, a server that cannot be reached, a database that was never migrated."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy.exc import ArgumentError

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


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, the driver's error SQLAlchemy wraps, and their causes (a few levels at most)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 8:
        item = todo.pop(0)
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        orig = getattr(item, "orig", None)
        todo += [orig if isinstance(orig, BaseException) else None, item.__cause__, item.__context__]


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def database_problem(exc: BaseException) -> str | None:
    """One line saying what to do when `exc` means the database cannot be used; None when it is
    some other failure (which keeps its traceback: that is a bug to report)."""
    for item in _chain(exc):
        # asyncpg's own error carries the SQLSTATE and the server's words.
        state = getattr(item, "sqlstate", None)
        if state in _UNMIGRATED or (state == "28000" and "does not exist" in str(item)):
            return f"cannot use the database ({_first_line(item)}): {NOT_MIGRATED}"
        if state in _REFUSED:
            return f"cannot connect to the database ({_first_line(item)}): {NOT_REACHED}"
        if isinstance(item, OSError):  # refused, unknown host, timed out
            return f"cannot connect to the database ({_first_line(item)}): {NOT_REACHED}"
    return None


def domain_line(err: DomainError) -> str:
    """A domain error as an operator command says it: `code: message`, or, when core could not
    reach the database, what to check."""
    found = database_problem(err) if err.code == "database_unavailable" else None
    return found or f"{err.code}: {err.message}"
