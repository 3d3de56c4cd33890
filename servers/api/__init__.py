"""The REST door: one router per feature module."""

from __future__ import annotations

import importlib
import pkgutil

from fastapi import APIRouter


def api_routers() -> list[APIRouter]:
    """Every `servers/api/<module>.py` that defines `router`, in name order."""
    found: list[APIRouter] = []
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        router = getattr(importlib.import_module(f"{__name__}.{module.name}"), "router", None)
        if isinstance(router, APIRouter):
            found.append(router)
    return found
