"""Inputs and results of the identity component's actions."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from core.identity import polyseme
from core.validation import Input


def _blank(value: str | None) -> str | None:
    return value if value is not None and value.strip() else None


class PersonQuery(Input):
    """Normalized on validation (so a bad email is a 422 before any credit is held)."""

    email: str | None = Field(default=None, max_length=254, description="e.g. Ada@Example.com")
    phone: str | None = Field(default=None, max_length=40, description="E.164 or local (default region).")
    handle: str | None = Field(default=None, max_length=101, description="e.g. @ada.lovelace")

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return polyseme.email(value) if value and _blank(value) else None

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value or not _blank(value):
            return None
        if info.context is None:
            # Local numbers need the platform's default region: the job validates again with it.
            return value
        return polyseme.phone(value, str(info.context.get("default_phone_region") or "US"))

    @field_validator("handle")
    @classmethod
    def _handle(cls, value: str | None) -> str | None:
        return polyseme.handle(value) if value and _blank(value) else None

    @model_validator(mode="after")
    def _one(self) -> PersonQuery:
        if not (self.email or self.phone or self.handle):
            raise ValueError("give at least one of `email`, `phone` or `handle`")
        return self


class CompanyQuery(Input):
    domain: str | None = Field(default=None, max_length=500, description="A domain, URL or email address.")
    name: str | None = Field(default=None, max_length=200, description="e.g. Cocotte S.A.S.")

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        return polyseme.domain(value) if value and _blank(value) else None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return polyseme.company_name(value) if value and _blank(value) else None

    @model_validator(mode="after")
    def _one(self) -> CompanyQuery:
        if not (self.domain or self.name):
            raise ValueError("give at least one of `domain` or `name`")
        return self


class PersonResolved(BaseModel):
    polyseme_id: uuid.UUID = Field(
        description="Stable id of this person in this context: the same from every component."
    )
    matched_on: Literal["email", "phone", "handle"] = Field(description="The identifier the id comes from.")
    normalized: dict[str, str] = Field(
        description="The identifiers as normalized (email, E.164 phone, handle)."
    )
    ids: dict[str, uuid.UUID] = Field(description="The id each identifier alone gives.")
    client_ids: list[uuid.UUID] = Field(
        description="Clients of this context with this email, phone or polyseme id (at most 20)."
    )


class CompanyResolved(BaseModel):
    polyseme_id: uuid.UUID
    matched_on: Literal["domain", "name"]
    normalized: dict[str, str]
    ids: dict[str, uuid.UUID]


class DedupeIn(Input):
    fill_missing: bool = Field(
        default=True, description="Store each client's polyseme id where it is missing or stale."
    )


class DuplicateGroup(BaseModel):
    matched_on: Literal["phone", "polyseme_id"]
    client_ids: list[uuid.UUID]


class DedupeOut(BaseModel):
    rows: int = Field(description="Clients examined.")
    updated: int = Field(description="Clients whose polyseme id was stored or corrected.")
    groups: list[DuplicateGroup] = Field(
        description="Clients that look like one person (at most 100 groups)."
    )


class PersonResolution(PersonResolved):
    job_id: uuid.UUID = Field(description="The job that did it (its trace id); see jobs_get.")
    credits_charged: int


class CompanyResolution(CompanyResolved):
    job_id: uuid.UUID
    credits_charged: int
