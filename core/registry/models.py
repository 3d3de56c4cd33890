"""Tables of the `registry` schema: components (built-in and peer), their version history and the
installations of each context. Row-level security is in the migration."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import CheckConstraint, Computed, ForeignKey, Index, Text, text
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, Timestamped, created_at, one_of, uuid_pk
from core.tenancy.models import TenantOwned

SCHEMA = "registry"
KINDS = ("builtin", "peer")
# install: a context installs it; always: served to everyone (tenancy, registry);
# platform: platform operators only, never installable.
AVAILABILITIES = ("install", "always", "platform")

# Weighted full-text document: name (A) > description (B) > actions and tools (C).
SEARCH_EXPRESSION = (
    "setweight(to_tsvector('english'::regconfig, coalesce(name, '')), 'A')"
    " || setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'B')"
    " || setweight(to_tsvector('english'::regconfig, coalesce(search_text, '')), 'C')"
)


class Component(Timestamped, Base):
    """One installable (or always-available) component. Built-ins are written by the start-up
    sync from what the server serves; peers by platform admins."""

    __tablename__ = "components"
    __table_args__ = (
        one_of("kind", KINDS),
        one_of("availability", AVAILABILITIES),
        CheckConstraint("kind = 'builtin' OR base_url IS NOT NULL", name="peer_has_url"),
        # The installation gate reads tools and actions from one list (core.registry.gate).
        CheckConstraint("toolset IS NULL OR toolset = slug", name="toolset_is_slug"),
        Index("uq_components_slug", "slug", unique=True),
        Index("ix_components_search", "search", postgresql_using="gin"),
        Index(
            "ix_components_name_trgm",
            "name",
            postgresql_using="gin",
            postgresql_ops={"name": "gin_trgm_ops"},
        ),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    slug: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    version: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    availability: Mapped[str] = mapped_column(Text, server_default="install")
    description: Mapped[str] = mapped_column(Text, server_default="")
    toolset: Mapped[str | None] = mapped_column(Text)
    # [{name, summary, price, unit, input_schema, output_schema}]
    actions: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    # [{name, title, description, annotations}] as served in tools/list
    tools: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    scopes: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    skill_name: Mapped[str | None] = mapped_column(Text)
    skill_text: Mapped[str | None] = mapped_column(Text)
    base_url: Mapped[str | None] = mapped_column(Text)
    health_url: Mapped[str | None] = mapped_column(Text)
    tools_hash: Mapped[str] = mapped_column(Text)
    # Action and tool names and summaries: the third tier of the search document.
    search_text: Mapped[str] = mapped_column(Text, server_default="")
    search: Mapped[Any] = mapped_column(TSVECTOR, Computed(SEARCH_EXPRESSION, persisted=True))
    # A built-in the running code no longer serves: hidden, not deleted (installations stay).
    retired_at: Mapped[dt.datetime | None]
    # The package version of the process that last wrote a built-in: an older process leaves
    # the entry alone during a rolling deploy. NULL: written before versions were recorded.
    written_by: Mapped[str | None] = mapped_column(Text)


class ComponentVersion(Base):
    """A row per distinct (version, tools_hash) a component has had: agents compare hashes to
    know when the tools they learned changed."""

    __tablename__ = "component_versions"
    __table_args__ = (
        Index(
            "uq_component_versions_component_id_version_tools_hash",
            "component_id",
            "version",
            "tools_hash",
            unique=True,
        ),
        Index("ix_component_versions_component_id_created_at", "component_id", "created_at"),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    component_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("registry.components.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(Text)
    tools_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = created_at()


class Installation(TenantOwned, Timestamped, Base):
    """A component installed in one context (a person's personal context, or an org)."""

    __tablename__ = "installations"
    __table_args__ = (
        Index("uq_installations_tenant_id_component_id", "tenant_id", "component_id", unique=True),
        Index("ix_installations_component_id", "component_id"),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    component_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("registry.components.id", ondelete="CASCADE"))
    config: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
