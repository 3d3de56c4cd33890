"""OAuth tables (schema `platform`, next to sessions and API keys). Row-level security is in
the migration: requests and grants are their person's rows; clients, codes and tokens are read
and written by the authorization server only (system mode, or the SECURITY DEFINER resolver)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, created_at, one_of, uuid_pk
from core.tenancy.models import Delegation

SCHEMA = "platform"


class OAuthClient(Base):
    """A client registered dynamically (RFC 7591) or known by its metadata document URL."""

    __tablename__ = "oauth_clients"
    __table_args__ = (
        one_of("kind", ("registered", "document")),
        Index("uq_oauth_clients_client_id", "client_id", unique=True),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    client_id: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    # sha256 of the secret a confidential client was given; public clients have none.
    secret_hash: Mapped[str | None] = mapped_column(Text)
    client_name: Mapped[str | None] = mapped_column(Text)
    # The registered (or fetched) metadata, without the secret.
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB)
    created_at: Mapped[dt.datetime] = created_at()
    # Documents are fetched again once this passes.
    refresh_after: Mapped[dt.datetime | None]


class OAuthRequest(Base):
    """An authorization request waiting for a person to sign in and consent. Its id is the
    secret the consent page carries; the first signed-in person to open it claims it."""

    __tablename__ = "oauth_requests"
    __table_args__ = (
        one_of("status", ("pending", "approved", "denied")),
        Index("ix_oauth_requests_expires_at", "expires_at"),
        {"schema": SCHEMA},
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("platform.oauth_clients.client_id", ondelete="CASCADE", onupdate="CASCADE")
    )
    client_name: Mapped[str | None] = mapped_column(Text)
    client_uri: Mapped[str | None] = mapped_column(Text)
    logo_uri: Mapped[str | None] = mapped_column(Text)
    redirect_uri: Mapped[str] = mapped_column(Text)
    redirect_uri_explicit: Mapped[bool]
    state: Mapped[str | None] = mapped_column(Text)
    code_challenge: Mapped[str] = mapped_column(Text)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    resource: Mapped[str] = mapped_column(Text)
    person_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("platform.persons.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(Text, server_default=text("'pending'"))
    created_at: Mapped[dt.datetime] = created_at()
    expires_at: Mapped[dt.datetime]


class OAuthGrant(Delegation, Base):
    """A connection: a person let a client act for them in one context (personal or an org)."""

    __tablename__ = "oauth_grants"
    __table_args__ = {"schema": SCHEMA}

    id: Mapped[uuid.UUID] = uuid_pk()
    client_id: Mapped[str] = mapped_column(
        ForeignKey("platform.oauth_clients.client_id", ondelete="CASCADE", onupdate="CASCADE")
    )
    client_name: Mapped[str | None] = mapped_column(Text)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    resource: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = created_at()
    last_used_at: Mapped[dt.datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(Text)


class OAuthCode(Base):
    __tablename__ = "oauth_codes"
    __table_args__ = (Index("ix_oauth_codes_grant_id", "grant_id"), {"schema": SCHEMA})

    code_hash: Mapped[str] = mapped_column(Text, primary_key=True)
    grant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("platform.oauth_grants.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(Text)
    redirect_uri: Mapped[str] = mapped_column(Text)
    redirect_uri_explicit: Mapped[bool]
    code_challenge: Mapped[str] = mapped_column(Text)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    resource: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]


class OAuthToken(Base):
    """Access and refresh tokens, stored as sha256 hashes. A refresh token is single use: a
    second use means it leaked, and the whole grant is revoked."""

    __tablename__ = "oauth_tokens"
    __table_args__ = (
        one_of("kind", ("access", "refresh")),
        Index("ix_oauth_tokens_grant_id", "grant_id"),
        {"schema": SCHEMA},
    )

    token_hash: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    grant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("platform.oauth_grants.id", ondelete="CASCADE"))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    resource: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = created_at()
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
