"""Tables of the `platform` schema. Row-level security for them is in the migration."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Computed,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, Timestamped, created_at, one_of, updated_at, uuid_pk

SCHEMA = "platform"
TENANT_ID = "COALESCE(org_id, person_id)"


class Person(Timestamped, Base):
    __tablename__ = "persons"
    __table_args__ = (
        one_of("status", ("active", "suspended")),
        Index("uq_persons_slug", "slug", unique=True),
        Index("uq_persons_email", text("lower(email)"), unique=True),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    slug: Mapped[str] = mapped_column(Text)
    email: Mapped[str] = mapped_column(Text)
    display_name: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default="active")
    is_platform_admin: Mapped[bool] = mapped_column(server_default=text("false"))
    # Set by a platform admin (core.admin); a suspended person is refused everywhere at once.
    suspended_at: Mapped[dt.datetime | None]
    suspension_reason: Mapped[str | None] = mapped_column(Text)


class PersonCredential(Base):
    __tablename__ = "person_credentials"
    __table_args__ = {"schema": SCHEMA}

    person_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("platform.persons.id", ondelete="CASCADE"), primary_key=True
    )
    password_hash: Mapped[str] = mapped_column(Text)
    failed_logins: Mapped[int] = mapped_column(server_default=text("0"))
    locked_until: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = updated_at()


class AuthSession(Base):
    """A signed-in device. Access tokens name it (`sid`); revoking it signs the device out at once."""

    __tablename__ = "auth_sessions"
    __table_args__ = (Index("ix_auth_sessions_person_id", "person_id"), {"schema": SCHEMA})

    id: Mapped[uuid.UUID] = uuid_pk()
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("platform.persons.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(Text)
    user_agent: Mapped[str | None] = mapped_column(Text)
    # The context the device last switched to; refreshed tokens keep it while membership lasts.
    org_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("platform.orgs.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = created_at()
    last_refreshed_at: Mapped[dt.datetime | None]
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(Text)


class RefreshToken(Base):
    """Opaque, hashed, single use. Presenting a used one again revokes its whole session."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (
        Index("uq_refresh_tokens_token_hash", "token_hash", unique=True),
        Index("ix_refresh_tokens_session_id", "session_id"),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("platform.auth_sessions.id", ondelete="CASCADE"))
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("platform.persons.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = created_at()
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]


class Org(Timestamped, Base):
    __tablename__ = "orgs"
    __table_args__ = (
        Index("uq_orgs_slug", "slug", unique=True),
        Index("ix_orgs_owner_id", "owner_id"),
        # The owner named here must hold the owner row in org_members: the database, not the code,
        # keeps `owner_id` and the members table consistent (checked at commit).
        ForeignKeyConstraint(
            ["id", "owner_id", "owner_role"],
            ["platform.org_members.org_id", "platform.org_members.person_id", "platform.org_members.role"],
            name="fk_orgs_owner_membership",
            deferrable=True,
            initially="DEFERRED",
            use_alter=True,
        ),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    slug: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("platform.persons.id", ondelete="RESTRICT"))
    owner_role: Mapped[str] = mapped_column(Text, Computed("'owner'::text", persisted=True))
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    # The member the owner offered the org to, until they accept or decline (`core.tenancy.orgs`).
    offered_owner_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("platform.persons.id", ondelete="SET NULL")
    )
    offered_at: Mapped[dt.datetime | None]


class OrgMember(Timestamped, Base):
    __tablename__ = "org_members"
    __table_args__ = (
        one_of("role", ("owner", "admin", "member")),
        UniqueConstraint("org_id", "person_id", "role", name="uq_org_members_org_id_person_id_role"),
        # At most one owner per org; with fk_orgs_owner_membership, exactly one.
        Index("uq_org_members_one_owner", "org_id", unique=True, postgresql_where=text("role = 'owner'")),
        Index("ix_org_members_person_id", "person_id"),
        {"schema": SCHEMA},
    )

    org_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("platform.orgs.id", ondelete="CASCADE"), primary_key=True
    )
    person_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("platform.persons.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(Text)


class Invitation(Base):
    __tablename__ = "invitations"
    __table_args__ = (
        one_of("role", ("admin", "member")),
        one_of("status", ("pending", "accepted", "declined", "revoked", "expired")),
        CheckConstraint("email IS NOT NULL OR invitee_person_id IS NOT NULL", name="invitee"),
        Index(
            "uq_invitations_pending_person",
            "org_id",
            "invitee_person_id",
            unique=True,
            postgresql_where=text("status = 'pending' AND invitee_person_id IS NOT NULL"),
        ),
        Index(
            "uq_invitations_pending_email",
            "org_id",
            text("lower(email)"),
            unique=True,
            postgresql_where=text("status = 'pending' AND email IS NOT NULL"),
        ),
        Index("ix_invitations_invitee_person_id", "invitee_person_id"),
        Index("ix_invitations_email", text("lower(email)")),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("platform.orgs.id", ondelete="CASCADE"))
    email: Mapped[str | None] = mapped_column(Text)
    invitee_person_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("platform.persons.id", ondelete="CASCADE")
    )
    role: Mapped[str] = mapped_column(Text)
    invited_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("platform.persons.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(Text, server_default="pending")
    expires_at: Mapped[dt.datetime]
    created_at: Mapped[dt.datetime] = created_at()
    responded_at: Mapped[dt.datetime | None]


class TenantOwned:
    """Columns every tenant table carries: the owner, the org (NULL = personal) and the
    derived tenant id row-level security compares against the transaction's context."""

    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("platform.persons.id", ondelete="RESTRICT"))
    org_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("platform.orgs.id", ondelete="CASCADE"))
    tenant_id: Mapped[uuid.UUID] = mapped_column(Computed(TENANT_ID, persisted=True))


class Brand(TenantOwned, Timestamped, Base):
    __tablename__ = "brands"
    __table_args__ = (
        Index("uq_brands_slug", "slug", unique=True),  # names the public site: /site/{slug}
        Index("ix_brands_tenant_id_created_at", "tenant_id", "created_at"),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    slug: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    config: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))


class BrandDomain(TenantOwned, Base):
    """A hostname belongs to exactly one brand on the whole platform."""

    __tablename__ = "brand_domains"
    __table_args__ = (Index("ix_brand_domains_brand_id", "brand_id"), {"schema": SCHEMA})

    domain: Mapped[str] = mapped_column(Text, primary_key=True)
    brand_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("platform.brands.id", ondelete="CASCADE"))


class Client(TenantOwned, Timestamped, Base):
    __tablename__ = "clients"
    __table_args__ = (
        Index(
            "uq_clients_tenant_id_email",
            "tenant_id",
            text("lower(email)"),
            unique=True,
            postgresql_where=text("email IS NOT NULL"),
        ),
        Index("ix_clients_tenant_id_created_at", "tenant_id", "created_at", "id"),
        Index("ix_clients_tenant_id_phone", "tenant_id", "phone"),
        Index("ix_clients_tenant_id_polyseme_person_id", "tenant_id", "polyseme_person_id"),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[str | None] = mapped_column(Text)
    # The person's stable id in this tenant (core.identity), shared by every component.
    polyseme_person_id: Mapped[uuid.UUID | None]


class Delegation:
    """Something a person lets act for them in one of their contexts (an API key, an OAuth
    connection): the person's row, bound to their personal context (org NULL) or one org, until
    revoked. It ends when the person leaves that org (`members.revoke_delegations_of_leaver`)."""

    person_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("platform.persons.id", ondelete="CASCADE"), index=True
    )
    org_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("platform.orgs.id", ondelete="CASCADE"))
    revoked_at: Mapped[dt.datetime | None]


class ApiKey(Delegation, Base):
    __tablename__ = "api_keys"
    __table_args__ = (Index("uq_api_keys_prefix", "prefix", unique=True), {"schema": SCHEMA})

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(Text)
    prefix: Mapped[str] = mapped_column(Text)
    secret_hash: Mapped[str] = mapped_column(Text)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    created_at: Mapped[dt.datetime] = created_at()
    last_used_at: Mapped[dt.datetime | None]
    expires_at: Mapped[dt.datetime | None]
