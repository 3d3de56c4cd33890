"""Driving the relay from a test: deliver until what the test waits for has happened."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from core.relay import Relay


async def drain_until(relay: Relay, check: Callable[[], Awaitable[object]], timeout: float = 10.0) -> None:
    """Drains the outbox again and again until `check()` answers truthy; fails after `timeout`
    seconds (handlers retry with backoff, so one drain may not be enough)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        await relay.drain()
        if await check():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)
