"""Reusable field types: slugs, emails, phones, hostnames, bounded JSON."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field

# No look-around: the same pattern serves pydantic-core (Rust regex) for path parameters.
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$"
SLUG_RE = re.compile(SLUG_PATTERN)
RESERVED_SLUGS = frozenset(
    {
        "admin", "api", "app", "auth", "docs", "health", "help", "login", "logout", "me", "mcp",
        "new", "null", "personal", "platform", "root", "settings", "signup", "support", "system",
        "www", "atlilith",
    }
)  # fmt: skip
HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9-]{1,63}(?<!-))+$")

# Input models refuse unknown fields and trim strings: a typo is an error, not silently dropped.
STRICT_INPUT = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _slug(value: str) -> str:
    value = value.strip().lower()
    if not SLUG_RE.fullmatch(value) or "--" in value:
        raise ValueError(
            "3-40 characters: lowercase letters, digits and single hyphens, starting and ending alphanumeric"
        )
    if value in RESERVED_SLUGS:
        raise ValueError(f"{value!r} is reserved")
    return value


def _slug_ref(value: str) -> str:
    """A reference to an existing slug: normalized but not checked against reserved words."""
    value = value.strip().lower()
    if not SLUG_RE.fullmatch(value):
        raise ValueError("not a valid slug")
    return value


def normalize_email(value: str) -> str:
    try:
        info = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from exc
    return info.normalized.lower()


def normalize_phone(value: str, region: str) -> str:
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError("not a phone number") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number; include the country code, e.g. +33 6 12 34 56 78")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _hostname(value: str) -> str:
    value = value.strip().lower().rstrip(".")
    try:
        value = value.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError("not a valid domain name") from exc
    if not HOSTNAME_RE.match(value):
        raise ValueError("not a valid domain name (e.g. cocotte.maison)")
    return value


def bounded_json(max_bytes: int) -> AfterValidator:
    def check(value: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        if size > max_bytes:
            raise ValueError(f"is {size} bytes once encoded; the limit is {max_bytes}")
        return value

    return AfterValidator(check)


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


Slug = Annotated[str, Field(min_length=3, max_length=40), AfterValidator(_slug)]
SlugRef = Annotated[str, Field(min_length=3, max_length=40), AfterValidator(_slug_ref)]
Email = Annotated[str, Field(min_length=3, max_length=254), AfterValidator(normalize_email)]
Hostname = Annotated[str, Field(min_length=3, max_length=253), AfterValidator(_hostname)]
Name = Annotated[str, BeforeValidator(_strip), Field(min_length=1, max_length=200)]
Notes = Annotated[str, Field(max_length=10_000)]
Password = Annotated[str, Field(min_length=10, max_length=256)]
