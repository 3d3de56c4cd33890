"""Conditional writes: an entity tag per editable resource, and `If-Match` honoured race-free.

The tag is a digest of the resource's canonical representation — exactly what a read returns —
so it changes whenever anything the caller saw changes, including parts kept in other rows (a
service's providers, a brand's domains), which a version column on the main row would miss.
A write that is given the tag it was based on compares it with the resource *as it is under
the write's own lock*, in the write's transaction: two writers holding the same tag cannot both
pass, since the second one reads the first one's committed result. Without `If-Match` a write
behaves as before (last write wins).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import TYPE_CHECKING

from pydantic import BaseModel
from sqlalchemy import text

from core.errors import DomainError

if TYPE_CHECKING:
    from core.uow import UnitOfWork

__all__ = ["PreconditionFailed", "etag", "lock_resource", "require_match"]


class PreconditionFailed(DomainError):
    status = 412
    default_code = "precondition_failed"
    title = "Precondition failed"


def etag(representation: BaseModel) -> str:
    """A strong entity tag (RFC 9110 §8.8.3) of what a read of the resource returns."""
    canonical = json.dumps(
        representation.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return '"' + hashlib.sha256(canonical.encode()).hexdigest()[:32] + '"'


def _matches(if_match: str, current: str) -> bool:
    # RFC 9110 §13.1.1: "*" matches any current representation; otherwise a list of tags
    # compared strongly, so a weak tag (W/"...") never matches.
    candidates = [tag.strip() for tag in if_match.split(",")]
    return "*" in candidates or current in candidates


def require_match(if_match: str | None, current: BaseModel, *, what: str) -> None:
    """Refuse the write unless `if_match` names the current representation. Call it after the
    resource is locked (`with_for_update`, `lock_resource`) and before writing anything."""
    if if_match is None:
        return
    if not _matches(if_match, etag(current)):
        raise PreconditionFailed(
            f"the {what} changed since you read it (If-Match does not match its ETag)",
            hint="re-read it (its ETag comes with it), apply your change to what it is now, and retry "
            "with the new ETag in If-Match",
        )


async def lock_resource(uow: UnitOfWork, kind: str, *parts: uuid.UUID | str | None) -> None:
    """Serialize writers of a resource that may not have a row yet (a context's settings, a
    provider's hours) until this transaction ends: a row lock cannot hold what does not exist."""
    key = ":".join([kind, *(str(p) if p is not None else "" for p in parts)])
    await uow.session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key})
