"""The clock the rate limiter reads, pinned for tests that count requests against a small quota.

`limits`' sliding-window counter keeps one counter per whole window of the wall clock (a minute
starts at :00) and weighs the previous window's count by how much of it is still inside the
sliding window. A test whose requests straddle a window boundary sees part of its spent quota
come back (three hits at 14:05:59.9 count as 2.99 at 14:06:00.1, so a fourth is allowed): a
test of "the fourth request is refused" would then depend on the second it runs at. Pinning the
clock one second into a window makes every request of the test count in that one window.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from types import SimpleNamespace
from unittest import mock

# Every module that reads the wall clock on the limiter's path (the in-memory storages, the
# strategies' window stats, our Retry-After arithmetic and sweep): the default in-memory
# storage runs `limits`' synchronous storage and strategy, a shared one the async ones.
_READERS = (
    "limits.storage.memory",
    "limits.strategies",
    "limits.aio.storage.memory",
    "limits.aio.strategies",
    "core.ratelimit",
)


@contextmanager
def limiter_clock_at_window_start(window_seconds: int = 60) -> Iterator[float]:
    """Pin the limiter's `time.time()` one second into the current window; yields that instant."""
    import core.ratelimit  # noqa: F401  (imports the limits modules patched below)

    pinned = (time.time() // window_seconds) * window_seconds + 1
    clock = SimpleNamespace(time=lambda: pinned)
    with ExitStack() as stack:
        for module in _READERS:
            stack.enter_context(mock.patch(f"{module}.time", clock))
        yield pinned
