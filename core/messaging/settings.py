"""The context's messaging settings: agent default, provider profile and tone, delivery peers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func

from core.context import Role, TenantContext
from core.errors import FieldIssue, ValidationFailed
from core.messaging import peers
from core.messaging.models import MessagingSettings
from core.messaging.policy import READ, WRITE, check_channel, peer_for, require_person
from core.messaging.queries import settings_row
from core.messaging.schemas import ChannelOut, ProfileIn, SettingsIn, SettingsOut
from core.preconditions import lock_resource, require_match
from core.presenting import context_kind
from core.scoping import new_in_context
from core.uow import UnitOfWork


def _settings_out(uow: UnitOfWork, ctx: TenantContext, cfg: MessagingSettings | None) -> SettingsOut:
    channels = []
    for name in uow.db.settings.messaging_channels:
        url, source = peer_for(uow, cfg, name)
        channels.append(ChannelOut(name=name, deliverable=name == "portal" or url is not None, peer=source))
    draft_url = (cfg.draft_peer_url if cfg else None) or uow.db.settings.messaging_draft_peer_url
    return SettingsOut(
        default_agent_mode=cfg.default_agent_mode if cfg else "draft_only",
        profile=ProfileIn.model_validate(cfg.profile if cfg else {}),
        channel_peers=dict(cfg.channel_peers or {}) if cfg else {},
        draft_peer_url=cfg.draft_peer_url if cfg else None,
        channels=channels,
        draft_peer_configured=draft_url is not None,
        context=context_kind(ctx.org_id),
        updated_at=cfg.updated_at if cfg else None,
    )


async def get_settings(ctx: TenantContext, uow: UnitOfWork) -> SettingsOut:
    """The context's messaging settings: agent default, provider profile and tone, peers."""
    ctx.require(READ)
    return _settings_out(uow, ctx, await settings_row(ctx, uow))


async def update_settings(
    ctx: TenantContext, uow: UnitOfWork, data: SettingsIn, if_match: str | None = None
) -> SettingsOut:
    """Replace the context's settings (a person; in an org, an owner or admin). `if_match`: the
    ETag the change is based on (core.preconditions); None = last write wins."""
    ctx.require(WRITE)
    require_person(ctx, "changing messaging settings", "session_required")
    if ctx.org_id is not None:
        ctx.require_role(Role.OWNER, Role.ADMIN)
    # The settings may have no row yet, so writers queue on the context itself.
    await lock_resource(uow, "messaging.settings", ctx.tenant_id)
    if if_match is not None:
        require_match(if_match, _settings_out(uow, ctx, await settings_row(ctx, uow)), what="settings")
    allowed = uow.db.settings.messaging_peer_allowed_hosts
    urls = {f"channel_peers.{k}": v for k, v in data.channel_peers.items()}
    if data.draft_peer_url:
        urls["draft_peer_url"] = data.draft_peer_url
    for channel in data.channel_peers:
        check_channel(uow, channel, f"channel_peers.{channel}")
        if channel == "portal":
            raise ValidationFailed(
                "the portal channel needs no peer",
                code="portal_has_no_peer",
                hint="the portal delivers its own messages: leave `portal` out of `channel_peers`",
                errors=[FieldIssue("channel_peers.portal", "not allowed")],
            )
    refused = [field for field, url in urls.items() if not peers.host_allowed(url, allowed)]
    if refused:
        raise ValidationFailed(
            "this platform does not allow contexts to send data to these peer hosts",
            code="peer_url_not_allowed",
            hint="use the platform's peers (leave these empty) or ask the operator to allow the host "
            "(ATLILITH_MESSAGING_PEER_ALLOWED_HOSTS)",
            errors=[FieldIssue(f, "host not allowed", "peer_url_not_allowed") for f in refused],
        )
    values: dict[str, Any] = {
        "default_agent_mode": data.default_agent_mode,
        "profile": data.profile.model_dump(exclude_none=True),
        "channel_peers": dict(data.channel_peers),
        "draft_peer_url": data.draft_peer_url,
    }
    cfg = (
        await uow.session.execute(
            new_in_context(MessagingSettings, ctx, **values)
            .on_conflict_do_update(
                index_elements=[MessagingSettings.tenant_id], set_={**values, "updated_at": func.now()}
            )
            .returning(MessagingSettings),
            execution_options={"populate_existing": True},
        )
    ).scalar_one()
    uow.emit("messaging/settings.updated", {"default_agent_mode": data.default_agent_mode})
    return _settings_out(uow, ctx, cfg)
