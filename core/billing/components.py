"""The built-in components: their actions (input and output models, price, handler) and the data
they serve at GET /v1/data/{entity}. Features register theirs in `core/<feature>/actions.py`:

    @action("identity", "resolve-person", price=1, input=PersonQuery, output=PersonResolved,
            summary="...")
    async def resolve_person(run: ActionRun, data: PersonQuery) -> ActionResult: ...

Peer components are registered at run time (table `billing.peers`); the full registry with
search and installations is a later feature.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel

from core.context import TenantContext
from core.pagination import Page, PageRequest
from core.uow import UnitOfWork

In = TypeVar("In", bound=BaseModel)
R = TypeVar("R")


@dataclass(frozen=True)
class ActionRun:
    """What an action's handler gets: the job's context (acting for the person who ran it, in
    their context), the unit of work its writes go through, and the job."""

    ctx: TenantContext
    uow: UnitOfWork
    job_id: uuid.UUID
    trace_id: str
    credits_held: int


@dataclass(frozen=True)
class ActionResult:
    output: BaseModel
    # Usage metrics (rows processed, lookups, ...): recorded on the job and in the ledger memo.
    usage: dict[str, int | float] = field(default_factory=dict)
    # Credits to charge; None = the quoted price. Capped at the hold unless overage is allowed.
    credits: int | None = None


ActionFn = Callable[[ActionRun, Any], Awaitable[ActionResult]]
QuoteFn = Callable[[TenantContext, UnitOfWork, Any], Awaitable[int]]
# What a data entity answers: one page of plain rows, and the cursor to the next (None: the last).
DataRows = tuple[list[dict[str, Any]], str | None]
DataFn = Callable[[TenantContext, UnitOfWork, PageRequest], Awaitable[DataRows]]


@dataclass(frozen=True)
class ActionSpec(Generic[In]):
    component: str
    name: str
    summary: str
    input: type[In]
    output: type[BaseModel]
    price: int
    unit: str
    fn: ActionFn
    quote: QuoteFn | None = None
    overage: Literal["cap", "allow"] = "cap"
    scope: str | None = None  # scope the caller needs besides jobs:write
    # Quick: the relay runs and settles it inside its delivery's transaction (the job's row
    # stays locked while it runs), so it must not commit or `release` its unit of work. False
    # for an action that may run long (a whole context's rows) or must let go of the
    # transaction: it runs in transactions of its own and can be cancelled while it runs.
    quick: bool = True

    @property
    def key(self) -> str:
        return f"{self.component}/{self.name}"

    def input_context(self, uow: UnitOfWork) -> dict[str, Any]:
        """Validation context of the input model (e.g. the default phone region)."""
        return {"default_phone_region": uow.db.settings.default_phone_region}


@dataclass(frozen=True)
class DataSpec:
    entity: str  # "<component>.<name>"
    summary: str
    fn: DataFn
    scope: str


_actions: dict[str, ActionSpec[Any]] = {}
_data: dict[str, DataSpec] = {}
_loaded = False


def action(
    component: str,
    name: str,
    *,
    price: int,
    input: type[In],
    output: type[BaseModel],
    summary: str,
    unit: str = "call",
    quote: QuoteFn | None = None,
    overage: Literal["cap", "allow"] = "cap",
    scope: str | None = None,
    quick: bool = True,
) -> Callable[[ActionFn], ActionFn]:
    def decorator(fn: ActionFn) -> ActionFn:
        spec = ActionSpec(
            component=component,
            name=name,
            summary=" ".join(summary.split()),
            input=input,
            output=output,
            price=price,
            unit=unit,
            fn=fn,
            quote=quote,
            overage=overage,
            scope=scope,
            quick=quick,
        )
        _actions[spec.key] = spec
        return fn

    return decorator


def data_entity(component: str, name: str, *, summary: str, scope: str) -> Callable[[DataFn], DataFn]:
    def decorator(fn: DataFn) -> DataFn:
        entity = f"{component}.{name}"
        _data[entity] = DataSpec(entity, " ".join(summary.split()), fn, scope)
        return fn

    return decorator


def data_rows(page: Page[R], present: Callable[[R], dict[str, Any]]) -> DataRows:
    """A data entity's answer from a page of rows: each row presented, the page's cursor kept."""
    return [present(row) for row in page.items], page.next_cursor


def per_unit(count: int, per: int, price: int = 1) -> int:
    """Price of `count` units sold by the `per` (at least one block)."""
    return max(1, math.ceil(count / per)) * price


def load_actions() -> None:
    """Import every `core.<feature>.actions` module so its decorators register."""
    global _loaded
    if _loaded:
        return
    from core.features import import_feature_modules

    import_feature_modules("actions")
    _loaded = True


def builtin_actions() -> dict[str, ActionSpec[Any]]:
    load_actions()
    return dict(sorted(_actions.items()))


def builtin_action(component: str, name: str) -> ActionSpec[Any] | None:
    load_actions()
    return _actions.get(f"{component}/{name}")


def data_entities() -> dict[str, DataSpec]:
    load_actions()
    return dict(sorted(_data.items()))
