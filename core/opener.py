"""The one context opener of every door (REST, MCP, CLI): a credential, the org asked for and
whether the component must be installed -> a live `TenantContext` bound to the unit of work.

A door that already authenticated the credential earlier in the same request (the MCP token
verifier) hands over its `Verified` result: the call's own transaction is then bound from the
signed ticket instead of reading the credential a second time. Liveness is exactly as fresh as
before -- checked at the start of this very request; the next request checks again, so a revoked
key or session is refused there."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeAlias, TypeVar

from core.auth import Binding, resolve_binding
from core.context import TenantContext
from core.credentials import parse_credential
from core.errors import PermissionDenied
from core.registry.gate import require_installed

if TYPE_CHECKING:
    from core.uow import UnitOfWork

__all__ = ["Operation", "Verified", "call_in", "open_context", "verify_credential"]

P = ParamSpec("P")
R = TypeVar("R")
# A core operation as every door calls it: `operation(ctx, uow, ...)`.
Operation: TypeAlias = Callable[Concatenate[TenantContext, "UnitOfWork", P], Awaitable[R]]

# The `org` value that asks for the personal context.
PERSONAL = "personal"


@dataclass(frozen=True)
class Verified:
    """A credential authenticated once for a whole request. `ctx`: the context it acts in by
    default (token claim, key binding or OAuth grant), else personal -- or the org the request
    announced it will act in (`asked`). `reusable`: that context with its ticket, for the
    request's later transactions; None when it was refused (the person left the token's org) --
    every call then resolves on its own."""

    ctx: TenantContext
    reusable: Binding | None
    asked: str | None = None


async def verify_credential(
    uow: UnitOfWork, raw: str | None, *, resource: str | None = None, org: str | None = None
) -> Verified:
    """Authenticate a bearer credential for a request that will open contexts later (MCP over
    HTTP): refused (`Unauthenticated`) if it is unknown, revoked, expired or its person is
    suspended. Membership of the token's own org is not part of that: a token whose org the
    person left still authenticates, and only its calls in that org are refused. `org`: the org
    (slug, or "personal") the request's one call says it acts in; bound here when the person
    may act there, so the call needs no second resolution; else ignored (the call itself is
    then refused in its own words)."""
    credential = parse_credential(raw, uow.db.tokens)
    if org is not None:
        try:
            binding = await resolve_binding(uow, credential, org, resource=resource, with_toolsets=True)
            return Verified(binding.ctx, binding, asked=org)
        except PermissionDenied:
            pass
    try:
        # The toolsets of the context come in the same statement: a gated tool call that
        # continues in this transaction needs no statement of its own for the gate.
        binding = await resolve_binding(uow, credential, None, resource=resource, with_toolsets=True)
    except PermissionDenied:
        binding = await resolve_binding(uow, credential, None, use_token_org=False, resource=resource)
        return Verified(binding.ctx, None)
    return Verified(binding.ctx, binding)


async def open_context(
    uow: UnitOfWork,
    credential: str | None,
    org: str | uuid.UUID | None = None,
    *,
    person_level: bool = False,
    toolset: str | None = None,
    gates: bool = False,
    resource: str | None = None,
    verified: Verified | None = None,
) -> TenantContext:
    """Bind `uow` to the caller's live context and return it.

    `org`: a slug or id to act in, or "personal"; None = the credential's own org (token claim,
    key binding, OAuth grant). `person_level`: the operation concerns the person whatever the
    context (sign-out, keys, own orgs, platform admin), so the credential's org does not apply;
    an `org` naming an org is still checked for membership (403 `not_a_member`), so a mistaken one
    is never silently dropped. `toolset`: the component whose tool is called -- refused unless
    installed in the chosen context (MCP passes it for every installable toolset; REST feature
    routes never do: see `core.registry.gate`). `gates`: the operation gates components itself
    (it runs or quotes an action: `core.billing.catalogue.prepare`), so what the context may use
    is read with the binding and its gate needs no statement of its own. `resource`: where OAuth
    tokens are accepted (the MCP endpoint). `verified`: this request's earlier authentication
    of the same credential."""
    with_toolsets = gates or toolset is not None
    if person_level:
        if org is not None and org != PERSONAL:
            # Only the membership rule applies; the next resolve rebinds at person level.
            await _resolve(uow, credential, org, resource=resource, verified=verified, with_toolsets=False)
        ctx = await _resolve(
            uow,
            credential,
            None,
            use_token_org=False,
            resource=resource,
            verified=None,
            with_toolsets=with_toolsets,
        )
    else:
        ctx = await _resolve(
            uow, credential, org, resource=resource, verified=verified, with_toolsets=with_toolsets
        )
    if toolset is not None:
        # Gated in the call's own transaction, in the context it acts in: never stale. The
        # statement that bound the context usually answered already; the gate itself reads
        # again when it did not, and words the refusal.
        await require_installed(ctx, uow, toolset=toolset)
    return ctx


async def _resolve(
    uow: UnitOfWork,
    credential: str | None,
    org: str | uuid.UUID | None,
    *,
    use_token_org: bool = True,
    resource: str | None,
    verified: Verified | None,
    with_toolsets: bool,
) -> TenantContext:
    """The context, bound to `uow`; `with_toolsets`: with what it may use, read in the same
    statement (`UnitOfWork.available_to`) when the credential is resolved here."""
    reusable = verified.reusable if verified is not None and use_token_org else None
    # A context bound for an org the request asked for is no default: reused only when asked.
    asked_only = verified is not None and verified.asked is not None and org is None
    if reusable is not None and not asked_only and _same_context(reusable.ctx, org):
        if uow.bound_to(reusable.ctx):
            # The verification's own unit of work, still in the transaction it bound (with the
            # toolsets that statement read).
            return reusable.ctx
        ctx = dataclasses.replace(reusable.ctx, trace_id=uow.trace_id)
        # The verifier's toolsets were read in another transaction: not fresh enough to gate.
        uow.bind(ctx, reusable.ticket)
        # `platform.bind_ticket` checks the signature the verifier's `resolve_context` made.
        await uow.apply_settings()
        return ctx
    binding = await resolve_binding(
        uow,
        parse_credential(credential, uow.db.tokens),
        org,
        use_token_org=use_token_org,
        resource=resource,
        with_toolsets=with_toolsets,
    )
    return binding.ctx


def _same_context(ctx: TenantContext, org: str | uuid.UUID | None) -> bool:
    """Whether asking for `org` resolves to `ctx`, the credential's default context: the same
    person and principal, and the org (or personal context) `ctx` already is."""
    if org is None:
        return True
    if isinstance(org, uuid.UUID):
        return ctx.org_id == org
    if org == PERSONAL:
        return ctx.org_id is None
    return bool(org.strip()) and ctx.org_slug is not None and org.strip().lower() == ctx.org_slug


async def call_in(
    opened: AbstractAsyncContextManager[tuple[TenantContext, UnitOfWork]],
    operation: Operation[P, R],
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> R:
    """`operation(ctx, uow, *args, **kwargs)` in a door's opened context (a route's
    `caller.context()`, a tool's `rt.context(org)`): most route and tool bodies are that call."""
    async with opened as (ctx, uow):
        return await operation(ctx, uow, *args, **kwargs)
