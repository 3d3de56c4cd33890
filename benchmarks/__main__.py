"""`./run bench [name ...]`: run the benchmarks (all by default) and print their tables."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import sys
import time

import benchmarks
from benchmarks.common import scoreboard
from core.config import Settings
from core.observability import configure_logging


def available() -> list[str]:
    return sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules(benchmarks.__path__)
        if m.name.startswith("bench_")
    )


async def main(names: list[str]) -> None:
    configure_logging(Settings(log_level="warning", log_format="json"))
    chosen = names or available()
    unknown = set(chosen) - set(available())
    if unknown:
        sys.exit(f"unknown benchmarks {sorted(unknown)}; available: {available()}")
    for name in chosen:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        started = time.perf_counter()
        print(f"» {name}: {module.__doc__.strip().splitlines()[0] if module.__doc__ else ''}", flush=True)
        print(await module.run(), flush=True)
        print(f"  ({time.perf_counter() - started:.0f} s)\n", flush=True)
    print(scoreboard(), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
