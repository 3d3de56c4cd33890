"""Realistic data across every feature: the bootstrap seed, the portal's demo data
(`core.demo`: threads, drafts, bookings, analytics events), then each `core/<feature>/seed.py`
that defines `async def seed_demo(db)`. A new feature plugs in by adding that file."""

from __future__ import annotations

import importlib

from core.demo import seed_demo_data
from core.features import feature_names
from core.seed import seed
from core.uow import Database

SEED_PASSWORD = "drill-seed-password"


async def seed_everything(db: Database) -> list[str]:
    """Returns the features whose demo data was added."""
    await seed(db, SEED_PASSWORD)
    await seed_demo_data(db)
    seeded = []
    for name in feature_names():
        try:
            module = importlib.import_module(f"core.{name}.seed")
        except ModuleNotFoundError as exc:
            if exc.name != f"core.{name}.seed":
                raise
            continue
        hook = getattr(module, "seed_demo", None)
        if hook is not None:
            await hook(db)
            seeded.append(name)
    return seeded
