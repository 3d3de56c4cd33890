"""Who may do what in messaging: the scopes, agent versus person, the per-thread agent mode,
and which channels can deliver to a client."""

from __future__ import annotations

from typing import Any, Literal, Protocol

from core.context import PrincipalKind, TenantContext, register_scopes
from core.errors import Conflict, DomainError, FieldIssue, PermissionDenied, ValidationFailed
from core.uow import UnitOfWork

READ = "messaging:read"
WRITE = "messaging:write"
INGEST = "messaging:ingest"
register_scopes(
    {
        READ: "read threads, messages and drafts",
        WRITE: "send messages, manage threads, create and decide drafts",
        INGEST: "deliver inbound messages from a channel peer (mail sync, iMessage sync)",
    }
)

# Channels whose delivery peer needs the client's email / phone.
_NEEDS_EMAIL = {"email"}
_NEEDS_PHONE = {"sms", "imessage", "whatsapp"}


class PeerSettings(Protocol):
    """What the delivery rules read of a context's settings: a `MessagingSettings` row, or the
    send's one-row read (`queries.thread_for_send`)."""

    @property
    def channel_peers(self) -> dict[str, Any] | None: ...


class Reachable(Protocol):
    """What the delivery rules read of a client: a `Client` row, or the send's one-row read."""

    @property
    def email(self) -> str | None: ...

    @property
    def phone(self) -> str | None: ...


class BadGateway(DomainError):
    status = 502
    default_code = "bad_gateway"
    title = "Bad gateway"


def is_agent(ctx: TenantContext) -> bool:
    # An MCP host connected through OAuth is as much an agent as one holding an API key.
    return ctx.principal.kind in (PrincipalKind.API_KEY, PrincipalKind.OAUTH)


def require_person(ctx: TenantContext, what: str, code: str) -> None:
    if not ctx.principal.is_human:
        raise PermissionDenied(
            f"{what} is a person's decision; an API key (agent) cannot do it",
            code=code,
            hint="a signed-in person does this in the portal (session token)",
        )


def agent_may(ctx: TenantContext, mode: str, action: Literal["send", "draft"]) -> None:
    """The per-thread agent mode, enforced for agents on every door."""
    if not is_agent(ctx):
        return
    if mode == "off":
        raise PermissionDenied(
            "agents are switched off for this thread: they may neither draft nor send",
            code="agent_mode_off",
            hint="leave this thread to a person; only a person can change its agent mode",
            extra={"agent_mode": mode},
        )
    if action == "send" and mode != "auto":
        raise PermissionDenied(
            "this thread is in draft_only mode: agents may draft replies but not send them",
            code="agent_mode_draft_only",
            hint="create a draft instead ([[messaging.create_draft]]); a person approves and sends it",
            extra={"agent_mode": mode},
        )


def check_channel(uow: UnitOfWork, channel: str, field: str = "channel") -> str:
    allowed = uow.db.settings.messaging_channels
    if channel not in allowed:
        raise ValidationFailed(
            f"the channel {channel!r} is not configured on this platform",
            code="unknown_channel",
            hint=f"use one of: {', '.join(allowed)}",
            errors=[FieldIssue(field, "unknown channel", "unknown_channel")],
        )
    return channel


def peer_for(uow: UnitOfWork, cfg: PeerSettings | None, channel: str) -> tuple[str | None, str]:
    """The delivery peer URL of a channel for this context, and where it comes from."""
    own = (cfg.channel_peers or {}).get(channel) if cfg else None
    if own:
        return str(own), "context"
    platform = uow.db.settings.messaging_channel_peers.get(channel)
    if platform:
        return platform, "platform"
    return None, "none"


def require_deliverable(uow: UnitOfWork, cfg: PeerSettings | None, channel: str, client: Reachable) -> None:
    if channel != "portal" and peer_for(uow, cfg, channel)[0] is None:
        raise Conflict(
            f"no delivery peer is configured for the {channel!r} channel",
            code="channel_not_configured",
            hint="configure its peer (`channel_peers` in [[messaging.update_settings]], or the platform's "
            "ATLILITH_MESSAGING_CHANNEL_PEERS), or use the `portal` channel",
        )
    if channel in _NEEDS_EMAIL and not client.email:
        raise Conflict(
            "this client has no email address",
            code="client_unreachable",
            hint="add an email to the client ([[tenancy.update_client]]) or use another channel",
        )
    if channel in _NEEDS_PHONE and not client.phone:
        raise Conflict(
            "this client has no phone number",
            code="client_unreachable",
            hint="add a phone number to the client ([[tenancy.update_client]]) or use another channel",
        )
