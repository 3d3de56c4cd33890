"""Run in a subprocess by the inline-job tests: deliver pending events with a relay whose quick
job (`tests/write-then-die`, marked by argv[1]) kills the process before its delivery commits."""

from __future__ import annotations

import asyncio
import os
import sys

from core.config import Settings
from core.relay import Relay
from core.uow import Database
from tests.support import billing  # noqa: F401  (registers the test actions)


async def main(marker: str) -> None:
    os.environ["ATLILITH_TEST_KILL_JOB"] = marker
    db = Database(Settings())
    await Relay(db).drain()
    print("survived", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
