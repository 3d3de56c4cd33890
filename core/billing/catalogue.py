"""What can run and what it costs: built-in and peer actions, their input and price, and the
data entities components serve."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from core.billing import ledger
from core.billing.components import ActionSpec, builtin_action, builtin_actions, data_entities
from core.billing.models import Peer
from core.billing.policy import JOBS_READ, OWN_FIELDS_HINT, input_error
from core.billing.schemas import ActionOut, DataPage, QuoteOut, RunIn
from core.context import TenantContext
from core.errors import NotFound, PermissionDenied
from core.pagination import Page, PageRequest, decode_cursor, page_of
from core.registry.gate import require_installed
from core.scoping import in_context_of, keyset_tag
from core.uow import UnitOfWork


@dataclass(frozen=True)
class Target:
    component: str
    action: str
    executor: str
    summary: str
    price: int
    unit: str
    overage: str
    spec: ActionSpec[Any] | None = None
    peer: Peer | None = None


# The gate's refusal: a component this context has not installed.
NOT_INSTALLED = "component_not_installed"


def _unknown_action(component: str, action: str) -> NotFound:
    return NotFound(
        f"no action {action!r} in component {component!r}",
        code="unknown_action",
        hint="list the actions you can run with [[billing.list_actions]]",
    )


async def _target(uow: UnitOfWork, component: str, action: str) -> Target:
    spec = builtin_action(component, action)
    if spec is not None:
        return Target(
            component, action, "builtin", spec.summary, spec.price, spec.unit, spec.overage, spec=spec
        )
    peer = (
        await uow.session.execute(select(Peer).where(Peer.slug == component, Peer.enabled.is_(True)))
    ).scalar_one_or_none()
    found = next((a for a in (peer.actions if peer else []) if a.get("name") == action), None)
    if peer is None or found is None:
        raise _unknown_action(component, action)
    return Target(
        component,
        action,
        "peer",
        str(found.get("summary") or ""),
        int(found.get("price", 0)),
        "call",
        str(found.get("overage") or "cap"),
        peer=peer,
    )


def _validate(
    uow: UnitOfWork, target: Target, raw: dict[str, Any], *, flat: bool
) -> tuple[BaseModel | None, dict[str, Any]]:
    """The input as the action will see it (normalized), or a 422 before anything is held.
    `flat`: `raw` is the caller's own arguments, not an `input` object of theirs."""
    if target.spec is None:
        return None, raw
    try:
        model = target.spec.input.model_validate(raw, context=target.spec.input_context(uow))
    except ValidationError as exc:
        raise (input_error(exc, None, OWN_FIELDS_HINT) if flat else input_error(exc)) from exc
    return model, model.model_dump(mode="json")


async def _price(ctx: TenantContext, uow: UnitOfWork, target: Target, model: BaseModel | None) -> int:
    if target.spec is not None and target.spec.quote is not None:
        return max(0, await target.spec.quote(ctx, uow, model))
    return target.price


async def prepare(
    ctx: TenantContext,
    uow: UnitOfWork,
    component: str,
    action: str,
    raw: dict[str, Any],
    *,
    flat: bool = False,
) -> tuple[Target, BaseModel | None, dict[str, Any], int]:
    """The action, its validated input, the payload to record and the price. `flat`: `raw` is
    the caller's own arguments (a synchronous door), so an invalid field is named as they did."""
    target = await _target(uow, component, action)
    # Every door runs actions through here: `jobs_run`, `POST /v1/run`, the CLI.
    await require_installed(ctx, uow, component=component)
    if target.spec is not None and target.spec.scope:
        ctx.require(target.spec.scope)
    model, payload = _validate(uow, target, raw, flat=flat)
    return target, model, payload, await _price(ctx, uow, target, model)


async def list_actions(ctx: TenantContext, uow: UnitOfWork, page: PageRequest) -> Page[ActionOut]:
    """Every action this context (and credential: an action's own scope) can run: built-in ones,
    then enabled peer components', of the components available here (installed in this context,
    or always on). Others are found in
    the registry ([[registry.search_components]]) and run once installed ([[registry.install]])."""
    ctx.require(JOBS_READ)
    items = [
        ActionOut(
            component=s.component,
            action=s.name,
            executor="builtin",
            summary=s.summary,
            price=s.price,
            unit=s.unit,
            overage=s.overage,
            input_schema=s.input.model_json_schema(),
            output_schema=s.output.model_json_schema(),
        )
        for s in builtin_actions().values()
        # An action the credential could not run (its own scope besides jobs:write) is not offered.
        if s.scope is None or ctx.can(s.scope)
    ]
    for peer in (await uow.session.execute(select(Peer).where(Peer.enabled.is_(True)))).scalars():
        items += [
            ActionOut(
                component=peer.slug,
                action=str(a["name"]),
                executor="peer",
                summary=str(a.get("summary") or ""),
                price=int(a.get("price", 0)),
                unit="call",
                overage=a.get("overage") or "cap",
                input_schema={"type": "object"},
            )
            for a in peer.actions
        ]
    runnable = await _runnable(ctx, uow, {a.component for a in items})
    items = sorted((a for a in items if a.component in runnable), key=lambda a: (a.component, a.action))
    # What a context may run is its own: a cursor pages on only in the context it was made in.
    tag = keyset_tag(under=in_context_of(ctx.tenant_id, "actions"))
    if page.cursor:
        after = tuple(decode_cursor(page.cursor, 2, tag))
        items = [a for a in items if (a.component, a.action) > after]
    # The catalogue is built in memory (built-in and peer actions), so it is paged in memory.
    return page_of(items, page.limit, lambda a: (a.component, a.action), tag)


async def _runnable(ctx: TenantContext, uow: UnitOfWork, components: set[str]) -> set[str]:
    """The `components` a run in `ctx` would pass the installation gate with. Asked of the gate
    itself, so the list and the run can never disagree; a context bound with `gates=True`
    answers built-ins from its binding, and each peer costs the gate's one statement."""
    runnable: set[str] = set()
    for component in sorted(components):
        try:
            await require_installed(ctx, uow, component=component)
        except PermissionDenied as exc:
            if exc.code != NOT_INSTALLED:
                raise
        else:
            runnable.add(component)
    return runnable


async def quote(ctx: TenantContext, uow: UnitOfWork, component: str, action: str, data: RunIn) -> QuoteOut:
    """What running the action with this input would hold, and whether the context can afford it."""
    ctx.require(JOBS_READ)
    target, _, _, price = await prepare(ctx, uow, component, action, data.input)
    acct = await ledger.read_account(uow, ctx.tenant_id)
    avail = ledger.available(acct) if acct else 0
    return QuoteOut(
        component=component,
        action=action,
        credits=price,
        available=avail,
        sufficient=avail >= price,
        overage=target.overage,
    )


async def get_data(ctx: TenantContext, uow: UnitOfWork, entity: str, page: PageRequest) -> DataPage:
    """GET /v1/data/{entity}: what a component serves about the current context."""
    spec = data_entities().get(entity)
    if spec is None:
        raise NotFound(
            f"no data entity {entity!r}",
            code="unknown_entity",
            hint="entities: " + ", ".join(data_entities()),
        )
    ctx.require(spec.scope)
    items, cursor = await spec.fn(ctx, uow, page)
    return DataPage(entity=entity, items=items, next_cursor=cursor)
