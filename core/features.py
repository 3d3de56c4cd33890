"""Feature discovery: every `core/<feature>/` package with models registers them on import."""

from __future__ import annotations

import importlib
import pkgutil


def feature_names() -> list[str]:
    import core

    return sorted(m.name for m in pkgutil.iter_modules(core.__path__) if m.ispkg)


def import_feature_modules(module: str) -> None:
    """Import `core.<feature>.<module>` for every feature that has one, so that what it declares
    registers. A feature without that module is skipped; an import failing inside one is not."""
    for name in feature_names():
        qualified = f"core.{name}.{module}"
        try:
            importlib.import_module(qualified)
        except ModuleNotFoundError as exc:
            if exc.name != qualified:
                raise


def load_models() -> None:
    # Platform-wide tables that are not a feature's
    importlib.import_module("core.outbox")
    importlib.import_module("core.idempotency")
    importlib.import_module("core.audit")
    import_feature_modules("models")
