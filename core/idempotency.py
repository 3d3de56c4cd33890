"""Idempotency keys: a retried write returns the first result instead of acting twice.

The key row is inserted in the same transaction as the work, so the work and the record of it
commit together: a crash leaves neither, a concurrent retry waits on the key's unique index and
then reads the committed result.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import inspect
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, get_type_hints

from pydantic import BaseModel
from pydantic_core import to_jsonable_python
from sqlalchemy import Index, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.context import TenantContext
from core.db import Base, created_at, uuid_pk
from core.errors import Conflict, FieldIssue, ValidationFailed
from core.uow import UnitOfWork

T = TypeVar("T", bound=BaseModel)
P = ParamSpec("P")
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,200}$")


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (
        Index("uq_idempotency_keys_person_id_key", "person_id", "key", unique=True),
        Index("ix_idempotency_keys_created_at", "created_at"),
        {"schema": "platform"},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    person_id: Mapped[uuid.UUID]
    key: Mapped[str] = mapped_column(Text)
    operation: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(Text)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[dt.datetime] = created_at()


def check_key(key: str) -> str:
    if not _KEY_RE.fullmatch(key):
        raise ValidationFailed(
            "the idempotency key must be 1-200 visible ASCII characters",
            code="invalid_idempotency_key",
            hint="use a UUID per logical operation",
            errors=[FieldIssue("Idempotency-Key", "1-200 visible ASCII characters")],
        )
    return key


def _stable(value: Any) -> Any:
    """A value pydantic cannot walk names its own stable form (a pre-validated batch hashes its
    bytes rather than have ten thousand events walked)."""
    named = getattr(value, "idempotency_fingerprint", None)
    if callable(named):
        return named()
    raise TypeError(f"no stable form for {type(value).__name__} in an idempotent request")


def fingerprint(operation: str, ctx: TenantContext, payload: Any) -> str:
    stable = to_jsonable_python(payload, fallback=_stable)
    canonical = json.dumps(
        {"op": operation, "tenant": str(ctx.tenant_id), "payload": stable},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


# Fixed statements of the request path, run on the driver's connection (`UnitOfWork.fetch`):
# an idempotent write then needs no ORM session, and each costs a fraction of a session's
# execution. `response` comes back decoded (the engine's jsonb codec).
_CLAIM = (
    "INSERT INTO platform.idempotency_keys (id, person_id, key, operation, fingerprint)"
    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (person_id, key) DO NOTHING RETURNING id"
)
_EXISTING = (
    "SELECT operation, fingerprint, response FROM platform.idempotency_keys WHERE person_id = $1 AND key = $2"
)
# A key met by the claim and gone by the read (purged) is claimed again, this many times at most.
_CLAIM_ATTEMPTS = 3
_STORE = "UPDATE platform.idempotency_keys SET response = CAST($1 AS jsonb) WHERE id = $2"


async def replay(
    ctx: TenantContext, uow: UnitOfWork, key: str | None, operation: str, payload: Any, out: type[T]
) -> T | None:
    """The stored result of an earlier request with this key, without claiming it: for an
    operation that calls a slow service before it writes (see `UnitOfWork.released`), so a
    retry after success costs no second call. None when there is none yet; a key used for
    another request is refused here as in `idempotent`."""
    if key is None:
        return None
    key = check_key(key)
    rows = await uow.fetch(_EXISTING, ctx.person_id, key)
    if not rows or rows[0]["response"] is None:
        return None
    row = rows[0]
    if row["operation"] != operation or row["fingerprint"] != fingerprint(operation, ctx, payload):
        raise _reused()
    return out.model_validate(row["response"])


def _reused() -> ValidationFailed:
    return ValidationFailed(
        "this idempotency key was used for a different request",
        code="idempotency_key_reused",
        hint="use a new key for a new operation; reuse a key only to retry the same request",
    )


async def idempotent(
    ctx: TenantContext,
    uow: UnitOfWork,
    key: str | None,
    operation: str,
    payload: Any,
    out: type[T],
    work: Callable[[], Awaitable[T]],
) -> T:
    """Run `work` once per (person, key). A retry with the same key and the same request gets the
    stored result; the same key with a different request is refused. A concurrent retry waits
    on the claim (a unique index entry) until the first commits, then gets its result."""
    if key is None:
        return await work()
    key = check_key(key)
    fp = fingerprint(operation, ctx, payload)
    for _ in range(_CLAIM_ATTEMPTS):
        claimed = await uow.fetch(_CLAIM, uuid.uuid4(), ctx.person_id, key, operation, fp)
        if claimed:
            break
        # Each statement reads what is committed when it starts: the key the claim met may be
        # purged (expired) before this read, and is then claimed afresh.
        existing = await uow.fetch(_EXISTING, ctx.person_id, key)
        if existing:
            row = existing[0]
            if row["operation"] != operation or row["fingerprint"] != fp or row["response"] is None:
                raise _reused()
            return out.model_validate(row["response"])
    else:
        raise Conflict(
            "this idempotency key changed while the request ran",
            code="idempotency_key_busy",
            hint="retry the request with the same key",
        )
    result = await work()
    await uow.fetch(_STORE, json.dumps(result.model_dump(mode="json"), ensure_ascii=False), claimed[0]["id"])
    return result


def _binder(signature: inspect.Signature) -> Callable[[tuple[Any, ...], dict[str, Any]], dict[str, Any]]:
    """The call's arguments by name, defaults applied, as `signature.bind` gives them. A call
    of plain parameters passed in order or by name is matched here (binding through `inspect`
    cost more than the rest of the wrapper on every call); anything else -- a missing or
    unexpected argument, a parameter of another kind -- goes to `signature.bind`, which
    answers or raises as before."""
    names = tuple(signature.parameters)
    defaults = {n: p.default for n, p in signature.parameters.items() if p.default is not p.empty}
    plain = all(p.kind is p.POSITIONAL_OR_KEYWORD for p in signature.parameters.values())
    # The names a call with i positional arguments may still pass by name.
    by_name = [frozenset(names[i:]) for i in range(len(names) + 1)]

    def bound(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        given = dict(zip(names, args, strict=False))
        if plain and len(args) <= len(names) and kwargs.keys() <= by_name[len(args)]:
            for name in names[len(args) :]:
                if name in kwargs:
                    given[name] = kwargs[name]
                elif name in defaults:
                    given[name] = defaults[name]
                else:
                    break
            else:
                return given
        arguments = signature.bind(*args, **kwargs)
        arguments.apply_defaults()
        return dict(arguments.arguments)

    return bound


def idempotent_operation(
    operation: str,
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Make a service operation retry-safe. The function takes `ctx`, `uow` and an
    `idempotency_key: str | None = None` parameter; its other arguments are the request whose
    fingerprint a reused key must match. Both doors just pass the caller's key through."""

    def decorator(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        signature = inspect.signature(fn)
        if not {"ctx", "uow", "idempotency_key"} <= set(signature.parameters):
            raise TypeError(f"{fn.__qualname__} needs ctx, uow and idempotency_key parameters")
        out = get_type_hints(fn)["return"]
        arguments = _binder(signature)

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            request = arguments(args, kwargs)
            ctx, uow, key = request.pop("ctx"), request.pop("uow"), request.pop("idempotency_key")
            return await idempotent(ctx, uow, key, operation, request, out, lambda: fn(*args, **kwargs))

        return wrapper

    return decorator


async def purge_expired(uow: UnitOfWork, older_than: dt.timedelta = dt.timedelta(hours=24)) -> int:
    result = await uow.session.execute(
        text("DELETE FROM platform.idempotency_keys WHERE created_at < now() - :age"), {"age": older_than}
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
