"""Pure helpers with no dependencies inside Atlilith: the clock, hashing and comparison every
feature and the kernel share. Kept apart so that importing the time or a hash never pulls in
credentials, the database or the event spine."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
