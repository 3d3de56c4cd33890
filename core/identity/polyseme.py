"""Deterministic normalization and tenant-keyed stable ids (pure functions, no database).

One real-world person or company gets one id per tenant, whichever component asks: the id is
HMAC-SHA256(platform identity secret, tenant id + kind + normalized value), folded into a UUID
(version 8). Without the secret nothing can be learnt from an id, and the same email in two
tenants gives unrelated ids, so ids never correlate data across tenants.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import tldextract

from core.config import Settings
from core.validation import normalize_email, normalize_phone

PERSON_KINDS = ("email", "phone", "handle")  # priority order: the first present names the person
COMPANY_KINDS = ("domain", "name")

_HANDLE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
# Legal forms dropped from the end of company names (casefolded, punctuation removed).
LEGAL_SUFFIXES = frozenset(
    {
        "inc", "incorporated", "llc", "llp", "lp", "ltd", "limited", "corp", "corporation", "co",
        "company", "plc", "gmbh", "ag", "kg", "sa", "sas", "sasu", "sarl", "eurl", "sci", "snc",
        "bv", "nv", "srl", "spa", "oy", "ab", "as", "aps", "kk", "pty", "pte", "sl", "sro", "se",
    }
)  # fmt: skip
# The suffix list bundled with tldextract: never fetched at run time.
_extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def email(value: str) -> str:
    return normalize_email(value)


def phone(value: str, region: str) -> str:
    return normalize_phone(value, region)


def handle(value: str) -> str:
    cleaned = value.strip().lstrip("@").strip().lower()
    if not _HANDLE.fullmatch(cleaned):
        raise ValueError(
            "a handle is 1-100 letters, digits, dots, underscores or hyphens (a leading @ is fine)"
        )
    return cleaned


def domain(value: str) -> str:
    """The registrable domain of a host, URL or email address: `https://www.Cocotte.maison/x`,
    `ada@cocotte.maison` and `shop.cocotte.maison` all give `cocotte.maison`."""
    raw = value.strip().lower()
    if "@" in raw and "/" not in raw:
        raw = raw.rsplit("@", 1)[1]
    host = urlsplit(raw if "//" in raw else f"//{raw}").hostname or ""
    host = host.rstrip(".")
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError("not a valid domain name") from exc
    parts = _extract(host)
    if not parts.suffix or not parts.domain:
        raise ValueError("not a public domain name (e.g. cocotte.maison)")
    return f"{parts.domain}.{parts.suffix}"


def company_name(value: str) -> str:
    """Casefolded, accents and punctuation removed, legal forms dropped from the end:
    `Cocotte S.A.S.` and `cocotte sas` and `Cocotte` are one company."""
    folded = unicodedata.normalize("NFKD", value.casefold())
    plain = "".join(c for c in folded if not unicodedata.combining(c))
    plain = plain.replace("&", " and ")
    # "S.A.S." -> "sas": dots between single letters join them, other punctuation separates.
    plain = re.sub(r"\b(\w)\.(?=\w\b)", r"\1", plain).replace(".", " ")
    words = re.sub(r"[^\w\s]", " ", plain).split()
    while len(words) > 1 and words[-1] in LEGAL_SUFFIXES:
        words.pop()
    if not words:
        raise ValueError("a company name needs at least one letter or digit")
    return " ".join(words)


def stable_id(secret: str, tenant_id: uuid.UUID, kind: str, value: str) -> uuid.UUID:
    mac = hmac.new(secret.encode(), f"{tenant_id}\x1f{kind}\x1f{value}".encode(), hashlib.sha256).digest()
    raw = bytearray(mac[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80  # version 8: a custom, vendor-defined UUID
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 9562 variant
    return uuid.UUID(bytes=bytes(raw))


_secrets: dict[tuple[str | None, str, str], str] = {}


def secret_for(settings: Settings) -> str:
    """The identity key, read once per configuration (a dev key lives in a file)."""
    # Not `data_dir.resolve()` on every call (a syscall per path component, on every job and
    # client write): an absolute directory is its own key, a relative one is keyed with the
    # working directory it is relative to.
    data_dir = settings.data_dir
    where = str(data_dir if data_dir.is_absolute() else Path.cwd() / data_dir)
    key = (settings.identity_secret, settings.env, where)
    if key not in _secrets:
        _secrets[key] = settings.resolved_identity_secret()
    return _secrets[key]


def ids_for(secret: str, tenant_id: uuid.UUID, normalized: dict[str, str | None]) -> dict[str, uuid.UUID]:
    return {kind: stable_id(secret, tenant_id, kind, value) for kind, value in normalized.items() if value}


def primary(normalized: dict[str, str | None], kinds: tuple[str, ...]) -> tuple[str, str] | None:
    for kind in kinds:
        value = normalized.get(kind)
        if value:
            return kind, value
    return None


def client_person_id(
    settings: Settings, tenant_id: uuid.UUID, email_value: str | None, phone_value: str | None
) -> uuid.UUID | None:
    """The polyseme id of a client from its (already normalized) email or phone: the same id
    identity/resolve-person gives for that email (or, without one, that phone)."""
    found = primary({"email": email_value, "phone": phone_value}, PERSON_KINDS)
    if found is None:
        return None
    return stable_id(secret_for(settings), tenant_id, *found)
