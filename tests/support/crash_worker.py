"""Run in a subprocess by the event tests: emit and commit an event, then die hard — either
before the relay touches it (`commit-then-die`) or in the middle of its delivery (`die-mid-delivery`)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from core.config import Settings
from core.relay import Relay
from core.uow import Database
from tests.support import handlers  # noqa: F401


async def main(mode: str, marker: str) -> None:
    db = Database(Settings())
    async with db.system() as uow:
        uow.emit("test/probe.crash", {"marker": marker})
    print("committed", flush=True)
    if mode == "commit-then-die":
        os.kill(os.getpid(), signal.SIGKILL)
    os.environ["ATLILITH_TEST_CRASH"] = "1"
    await Relay(db).drain()
    print("survived", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
