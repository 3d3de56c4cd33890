"""Reusable field types: text, slugs, emails, phones, hostnames, bounded JSON; the input base."""

from __future__ import annotations

import json
import re
import unicodedata
import zoneinfo
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Annotated, Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from core.errors import FieldIssue

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

# PostgreSQL text cannot hold NUL and UTF-8 cannot hold a lone surrogate (JSON's "\ud800"): the
# database would fail the write as a 500. Other C0 controls are refused too: they are never
# meant in a name, a note or a config value. Tab, line feed and carriage return are text.
_FORBIDDEN_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
CONTROL_CHARACTER = "control_character"
TEXT_HINT = "remove NUL and other control characters (tab and line breaks are fine)"


def check_text(value: str, where: str = "") -> str:
    """Refuse (never strip: the caller would believe it was saved as sent) what text cannot hold."""
    found = _FORBIDDEN_CHARS.search(value)
    if found is not None:
        at = f"{where}: " if where else ""
        # A stable error type, so every door reports `control_character` for this field.
        raise PydanticCustomError(
            CONTROL_CHARACTER,
            "{at}contains the control character {char} at position {position}; " + TEXT_HINT,
            {"at": at, "char": f"U+{ord(found.group()):04X}", "position": found.start()},
        )
    return value


def check_json_text(value: Any, where: str = "") -> Any:
    """The same for every key and string value of a JSON-like structure, naming the path."""
    if isinstance(value, str):
        check_text(value, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if isinstance(key, str):
                check_text(key, f"key {path!r}")
            check_json_text(item, path)
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            check_json_text(item, f"{where}[{index}]")
    return value


def text_issues(values: Iterable[tuple[str, Any]]) -> list[FieldIssue]:
    """The same check over a door's loose arguments (query parameters, MCP tool arguments that
    are not an input model): each offending argument, named."""
    issues: list[FieldIssue] = []
    for name, value in values:
        try:
            check_json_text(value)
        except PydanticCustomError as exc:
            issues.append(FieldIssue(name, exc.message(), CONTROL_CHARACTER))
    return issues


# The one text type: free text that a door passes to core outside an input model (a `q` search,
# a filter) is annotated with it; fields of `Input` models get the same check from the base.
Text = Annotated[str, AfterValidator(check_text)]


def issue_message(error: Mapping[str, Any]) -> str:
    """One pydantic error as a person reads it: without the "Value error, " pydantic puts before
    a validator's own words, "required" for a missing field. Every door words its field issues
    with this (REST problems, MCP tool errors, the public pages' forms)."""
    kind = error.get("type")
    if kind == "missing":
        return "required"
    if kind in _LENGTHS:
        return _length(kind, error)
    message = str(error.get("msg", "invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


# pydantic words a length bound on a validated string as "Value should have at least 1 item
# after validation, not 0": said here as what the person has to change.
_LENGTHS = {"too_short", "too_long", "string_too_short", "string_too_long"}
_COLLECTIONS = {"List", "Tuple", "Set", "Frozenset", "Dictionary", "Dict"}


def _length(kind: str, error: Mapping[str, Any]) -> str:
    ctx = error.get("ctx") or {}
    # A collection's bound counts items; a string's (its error may come without the input, as
    # MCP's do, and as `too_long` with field type "Value" when a validator ran first) characters.
    given = error.get("input")
    collection = ctx.get("field_type") in _COLLECTIONS or (given is not None and not isinstance(given, str))
    unit = "items" if collection else "characters"
    if kind.endswith("too_short"):
        least = ctx.get("min_length", 1)
        return "must not be empty" if least == 1 else f"must have at least {least} {unit}"
    return f"must have at most {ctx.get('max_length')} {unit}"


class Input(BaseModel):
    """Base of every input model (REST bodies, MCP arguments, query models): strict, and no
    field -- plain string, list, dict key or value at any depth -- lets NUL or another control
    character through, so a text field added later cannot forget (tests/core/test_text_input.py
    walks every input model)."""

    model_config = STRICT_INPUT

    @field_validator("*", mode="after")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        # Nested models are Inputs too and checked their own way; walk only plain data.
        return value if isinstance(value, BaseModel) else check_json_text(value)


# Files of the zone database that name no IANA zone: `localtime` is this server's own
# /etc/localtime (an answer would change with the machine), `posixrules` a template for POSIX
# TZ strings, `Factory` a placeholder for "not yet set".
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@cache
def time_zones() -> frozenset[str]:
    """The IANA time zone names a caller may give (`UTC` always among them)."""
    return frozenset(zoneinfo.available_timezones()) - _NOT_ZONES | {"UTC"}


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


PHONE_HINT = "write the number with its country code, e.g. +33 6 12 34 56 78"


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
        raise ValueError(f"{value!r} is not a domain name (e.g. cocotte.maison)") from exc
    if not HOSTNAME_RE.match(value):
        raise ValueError(f"{value!r} is not a domain name (e.g. cocotte.maison)")
    return value


def _hostname_list(value: Any) -> Any:
    """Every entry of a list of domains that is not one, named in one message: a sentence
    given where domains were asked for is one mistake, not one error per word."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return value  # the list type says what is wrong
    bad = []
    for item in value:
        try:
            _hostname(item)
        except ValueError:
            bad.append(repr(item.strip()))
    if len(bad) == 1:
        raise ValueError(f"{bad[0]} is not a domain name (e.g. cocotte.maison)")
    if bad:
        listed = ", ".join(bad[:-1]) + " and " + bad[-1]
        raise ValueError(f"{listed} are not domain names: give one domain per entry, e.g. cocotte.maison")
    return value


# Deeper than any settings document needs; past a few hundred levels, serializing the answer
# (pydantic) or the row fails after the write.
JSON_MAX_DEPTH = 32


# What a component's own data (an action's input, a peer's output) may nest to: deeper than any
# settings, within what answers serialize (pydantic stops at a few hundred levels).
PEER_JSON_MAX_DEPTH = 128


def bounded_json(max_bytes: int, *, max_depth: int = JSON_MAX_DEPTH) -> AfterValidator:
    """A JSON object stored as given: at most `max_bytes` encoded, `max_depth` levels deep, and
    JSON indeed (NaN and Infinity are not: PostgreSQL refuses them, after the fact)."""

    def check(value: dict[str, Any]) -> dict[str, Any]:
        if _depth(value, max_depth) > max_depth:
            raise ValueError(f"nests more than {max_depth} levels deep (objects and arrays)")
        try:
            encoded = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except ValueError:
            raise ValueError("holds NaN or Infinity, which are not JSON numbers") from None
        size = len(encoded.encode())
        if size > max_bytes:
            raise ValueError(f"is {size} bytes once encoded; the limit is {max_bytes}")
        return value

    return AfterValidator(check)


def _depth(value: Any, limit: int) -> int:
    """How deep objects and arrays nest in `value` (an object of scalars: 1), without recursion;
    past the limit, the first level found beyond it."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level > limit:
                return level  # enough to refuse; the rest need not be walked
            stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


# Embedding and override controls (U+202A-U+202E) reorder the text that follows, even past the
# name: in a name shown to someone else they make it read as something it is not ("\u202egnp.exe").
_OVERRIDES = re.compile("[\u202a-\u202e]")
# Isolates (LRI, RLI, FSI ... PDI) are the safe form Unicode recommends, and apps wrap names in
# them when they are copied. Accepted as wrappers only: each opened and closed before the next.
# Nested isolates can reverse the order of the words inside them (the "Trojan Source" trick) and
# one left open spills onto whatever is shown after the name.
_ISOLATE_OPENERS = frozenset("\u2066\u2067\u2068")
_ISOLATE_CLOSE = "\u2069"
# Letters and symbols that draw nothing, though not spaces or format characters by category.
_BLANKS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
# Only these categories draw nothing: controls, format characters (U+200B), separators. Not
# unassigned ones (Cn): an emoji newer than this Python's Unicode data (U+1FAE8) is visible.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
DIRECTION_CONTROL = "direction_control"
INVISIBLE_NAME = "invisible_name"


def _visible(char: str) -> bool:
    return unicodedata.category(char) not in _INVISIBLE_CATEGORIES and char not in _BLANKS


def _misplaced_direction(value: str) -> int | None:
    """Where the first direction control a name may not hold is: an embedding or override, an
    isolate opened inside another or never closed, a close with nothing open. None if none."""
    found = _OVERRIDES.search(value)
    if found is not None:
        return found.start()
    opened: int | None = None
    for position, char in enumerate(value):
        if char in _ISOLATE_OPENERS:
            if opened is not None:
                return position
            opened = position
        elif char == _ISOLATE_CLOSE:
            if opened is None:
                return position
            opened = None
    return opened


def clean_name(value: str) -> str | None:
    """A name received from elsewhere (a message's sender), made safe to show rather than
    refused: without the direction controls `check_name` refuses (all the isolates, when their
    wrapping is not sound), trimmed; None when nothing visible is left."""
    value = _OVERRIDES.sub("", value)
    if _misplaced_direction(value) is not None:
        value = "".join(c for c in value if c not in _ISOLATE_OPENERS and c != _ISOLATE_CLOSE)
    value = value.strip()
    return value if any(map(_visible, value)) else None


def check_name(value: str) -> str:
    """A name someone else reads: no misplaced direction controls, and something visible.
    Invisible characters between visible ones stay (a zero-width joiner is part of many names)."""
    position = _misplaced_direction(value)
    if position is not None:
        raise PydanticCustomError(
            DIRECTION_CONTROL,
            "contains the text-direction control {char} at position {position}, which makes a"
            " name display in a misleading order; remove it",
            {"char": f"U+{ord(value[position]):04X}", "position": position},
        )
    if not any(map(_visible, value)):
        shown = ", ".join(dict.fromkeys(f"U+{ord(c):04X}" for c in value))
        raise PydanticCustomError(
            INVISIBLE_NAME,
            "shows nothing: it holds only invisible characters ({chars}); write the name in"
            " visible letters or digits",
            {"chars": shown},
        )
    return value


Slug = Annotated[str, Field(min_length=3, max_length=40), AfterValidator(_slug)]
SlugRef = Annotated[str, Field(min_length=3, max_length=40), AfterValidator(_slug_ref)]
Email = Annotated[str, Field(min_length=3, max_length=254), AfterValidator(normalize_email)]
Hostname = Annotated[str, Field(min_length=3, max_length=253), AfterValidator(_hostname)]
Hostnames = Annotated[list[Hostname], BeforeValidator(_hostname_list)]
Name = Annotated[
    str, BeforeValidator(_strip), Field(min_length=1, max_length=200), AfterValidator(check_name)
]
Notes = Annotated[str, Field(max_length=10_000)]
Password = Annotated[str, Field(min_length=10, max_length=256)]
