"""Pure helpers with no dependencies inside Atlilith: the clock, hashing and comparison every
feature and the kernel share. Kept apart so that importing the time or a hash never pulls in
credentials, the database or the event spine."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def lazy_exports(package: str, names: Sequence[str], modules: Sequence[str]) -> Callable[[str], Any]:
    """A package's module-level `__getattr__` that imports its operation modules on first use
    and publishes `names` from them. For packages the kernel reaches while it is still being
    imported, whose operations need the kernel complete."""

    def load(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace = vars(sys.modules[package])
        for module_name in modules:
            module = importlib.import_module(f"{package}.{module_name}")
            namespace.update({n: getattr(module, n) for n in names if hasattr(module, n)})
        return namespace[name]

    return load
