"""Feature discovery: every `core/<feature>/` package with models registers them on import."""

from __future__ import annotations

import importlib
import pkgutil


def feature_names() -> list[str]:
    import core

    return sorted(m.name for m in pkgutil.iter_modules(core.__path__) if m.ispkg)


def load_models() -> None:
    # Platform-wide tables that are not a feature's
    importlib.import_module("core.outbox")
    importlib.import_module("core.idempotency")
    importlib.import_module("core.audit")
    for name in feature_names():
        try:
            importlib.import_module(f"core.{name}.models")
        except ModuleNotFoundError as exc:
            if exc.name != f"core.{name}.models":
                raise
