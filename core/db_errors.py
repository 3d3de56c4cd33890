"""What a database failure means to a caller: the server gone (a 503 to retry), a transaction
lost to a concurrent one (a 503 to retry), a constraint the domain names (its own error), or a
bug. Every door and the unit of work translate with these, so a caller never sees SQL."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from core.errors import Conflict, DomainError, Unavailable, error_for_constraint
from core.observability import get_logger

__all__ = ["connection_lost", "describe_db_error", "transaction_conflict", "translate_db_error"]

log = get_logger("atlilith.uow")


# SQLSTATE classes that mean the server went away: connection exceptions, and operator
# intervention (admin shutdown, crash shutdown, "the database system is starting up").
_LOST_SQLSTATES = ("08", "57P")


def connection_lost(err: BaseException) -> bool:
    """Whether a database error means "the database is unreachable right now" (a clear 503 the
    caller may retry) rather than a bug. A restart of PostgreSQL surfaces as any of these."""
    if isinstance(err, OperationalError | InterfaceError | OSError):
        return True
    if not isinstance(err, DBAPIError):
        return False
    if err.connection_invalidated:
        return True
    import asyncpg

    for candidate in (err.orig, getattr(err.orig, "__cause__", None)):
        if isinstance(
            candidate,
            asyncpg.exceptions.ConnectionDoesNotExistError | asyncpg.exceptions._base.InternalClientError,
        ):
            # A connection that died mid-operation leaves asyncpg's protocol in a broken state.
            return True
        state = getattr(candidate, "sqlstate", None)
        if isinstance(state, str) and state.startswith(_LOST_SQLSTATES):
            return True
    return False


# SQLSTATEs of a transaction PostgreSQL aborted because of concurrent ones, not because of
# what it asked: deadlock_detected and serialization_failure. Run again, it may well succeed.
_CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})


def transaction_conflict(err: BaseException) -> str | None:
    """The SQLSTATE when a database error means "this transaction lost a race with another
    and was aborted" (a deadlock, a serialization failure): a retryable 503, not a bug. Both
    SQLAlchemy's wrapped errors and the driver's own (a COPY on the driver's connection) count."""
    candidates: tuple[object, ...] = (err,)
    if isinstance(err, DBAPIError):
        candidates = (err.orig, getattr(err.orig, "__cause__", None))
    for candidate in candidates:
        state = getattr(candidate, "sqlstate", None)
        if state in _CONFLICT_SQLSTATES:
            return str(state)
    return None


def describe_db_error(err: BaseException) -> str | None:
    """A database error as an operator may read it wherever it is stored or shown (a delivery's
    `last_error`, the dead letters of the admin API): its class, SQLSTATE and the objects it
    names. Never the statement, its parameters or PostgreSQL's message, which quote the data
    (`invalid input syntax for type uuid: "..."`, a key's values). None: not a database error."""
    import asyncpg

    if isinstance(err, DBAPIError):
        candidates: tuple[object, ...] = (err.orig, getattr(err.orig, "__cause__", None))
    elif isinstance(err, asyncpg.PostgresError | asyncpg.exceptions._base.InterfaceError):
        candidates = (err,)
    else:
        return None
    parts = [type(err).__name__]
    found = next((c for c in candidates if isinstance(c, asyncpg.PostgresError)), None)
    if found is None:
        # The driver's own error (an argument it could not encode quotes the argument).
        client = next((c for c in candidates if isinstance(c, BaseException) and c is not err), None)
        return parts[0] if client is None else f"{parts[0]}, {type(client).__name__}"
    if found is not err:
        parts.append(type(found).__name__)
    parts[-1] += f" (SQLSTATE {getattr(found, 'sqlstate', None)})"
    for label in ("schema", "table", "column", "constraint"):
        name = getattr(found, f"{label}_name", None)
        if name:
            parts.append(f"{label} {name}")
    return ", ".join(parts)


def _constraint_name(err: BaseException) -> str | None:
    orig = getattr(err, "orig", None)
    for candidate in (orig, getattr(orig, "__cause__", None)):
        name = getattr(candidate, "constraint_name", None)
        if name:
            return str(name)
    return None


def translate_db_error(err: BaseException, *, saved_before: bool = False) -> DomainError:
    """Map a database failure to a domain error without leaking SQL or data. `saved_before`:
    an earlier transaction of the same unit of work committed (the hint must not claim that
    nothing was saved)."""
    state = transaction_conflict(err)
    if state is not None:
        # Expected under load, and the caller's to retry: a warning naming the SQLSTATE, no
        # stack trace (the error is not a bug of ours).
        log.warning("transaction_conflict", sqlstate=state, error=type(err).__name__)
        return Unavailable(
            "the request conflicted with concurrent work on the same data and was rolled back",
            code="transaction_conflict",
            hint=(
                "retry the request; what it did before its last step was saved, the last step was undone"
                if saved_before
                else "retry the request; nothing was saved"
            ),
            extra={"retry_after": 1},
        )
    if isinstance(err, IntegrityError):
        mapped = error_for_constraint(_constraint_name(err))
        if mapped is not None:
            return mapped
        log.warning("unmapped_integrity_error", constraint=_constraint_name(err))
        return Conflict(
            "the change conflicts with existing data",
            code="conflict",
            hint="reload the resource and try again",
        )
    log.error("database_unavailable", error=type(err).__name__)
    return Unavailable(
        "the database is unavailable",
        code="database_unavailable",
        hint="retry in a few seconds",
    )
