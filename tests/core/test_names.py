"""A name someone else reads is refused when it would show nothing (a zero-width space stored as
a client's name showed the provider a blank) or when a text-direction control would make it
read as something else (a brand name with U+202E)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ValidationError

from core.billing.schemas import PeerIn
from core.bookings.public import PublicBookIn
from core.bookings.schemas.catalogue import ServiceIn
from core.tenancy.schemas import BrandIn, ClientIn, OrgIn, PersonUpdateIn
from core.validation import DIRECTION_CONTROL, INVISIBLE_NAME, clean_name, issue_message
from tests.conftest import make_org, signup, slug

INVISIBLE = [
    "\u200b",
    "\u2068\u200b\u2069",
    "\u200b\u200c\u200d",
    "\ufeff",
    "\u2800",
    "\u3164",
    "\u00ad",
    "\u2060 \u200b",
]
DIRECTION = [
    "Cocotte\u202e",
    "\u202aA",
    "ab\u202bc",
    "ab\u202cc",
    "a\u202dc",
    "a\u2066b",
    "a\u2067b",
    "a\u2068b",
    "x\u2069",
    "\u2067\u2066gnp\u2069.\u2066exe\u2069\u2069",  # nested isolates reverse the words' order
]
# Invisible characters between visible ones are part of real names and emoji sequences.
KEPT = [
    "Zoë",
    "👩\u200d👩\u200d👧 Family",
    "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian, with a zero-width non-joiner
    "Jean\u00adLuc",
    "李小龍",
    "\u2068Ada Lovelace\u2069",  # as apps wrap a name they copy: a first-strong isolate
    "\u2067\u05e9\u05e8\u05d4\u2069 & \u2066Sam\u2069",
    "\U0001fae8",  # an emoji newer than Python 3.11's Unicode data (unassigned there)
    "\ue000 Studio",  # private use: a logo glyph in some fonts
]


def _refusal(model: type[BaseModel], field: str, value: str, **others: Any) -> dict[str, Any]:
    with pytest.raises(ValidationError) as refused:
        model.model_validate({field: value, **others})
    errors = [e for e in refused.value.errors() if e["loc"][:1] == (field,)]
    assert len(errors) == 1, refused.value.errors()
    return dict(errors[0])


MODELS: list[tuple[type[BaseModel], str, dict[str, Any]]] = [
    (ClientIn, "name", {}),
    (BrandIn, "name", {"slug": "brand-x"}),
    (OrgIn, "name", {"slug": "org-x"}),
    (PersonUpdateIn, "display_name", {}),
    (ServiceIn, "name", {"slug": "svc-x", "duration_minutes": 30}),
    (PublicBookIn, "name", {}),
    (PeerIn, "name", {}),
]


@pytest.mark.parametrize(("model", "field", "others"), MODELS, ids=lambda m: getattr(m, "__name__", ""))
def test_every_name_refuses_invisible_names_and_direction_controls(
    model: type[BaseModel], field: str, others: dict[str, Any]
) -> None:
    for value in INVISIBLE:
        error = _refusal(model, field, value, **others)
        assert error["type"] == INVISIBLE_NAME, (value, error)
    for value in DIRECTION:
        error = _refusal(model, field, value, **others)
        assert error["type"] == DIRECTION_CONTROL, (value, error)


def test_the_messages_say_what_is_wrong_and_what_to_do() -> None:
    blank = issue_message(_refusal(ClientIn, "name", "\u200b"))
    assert blank == (
        "shows nothing: it holds only invisible characters (U+200B); write the name in visible letters or digits"
    )
    spoof = issue_message(_refusal(BrandIn, "name", "Coco\u202ette", slug="brand-x"))
    assert spoof == (
        "contains the text-direction control U+202E at position 4, which makes a name display"
        " in a misleading order; remove it"
    )


def test_visible_names_with_joiners_and_accents_are_kept() -> None:
    for value in KEPT:
        assert ClientIn.model_validate({"name": value}).name == value


async def test_the_rest_door_refuses_them_and_stores_nothing(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    org = await make_org(client, a)
    r = await client.post("/v1/clients", json={"name": "\u200b"}, headers=a.h(org=org))
    assert r.status_code == 422, r.text
    assert [(e["field"], e["code"]) for e in r.json()["errors"]] == [("name", INVISIBLE_NAME)], r.text
    r = await client.post(
        "/v1/brands", json={"slug": slug("b"), "name": "Cocotte\u202e"}, headers=a.h(org=org)
    )
    assert r.status_code == 422, r.text
    assert [(e["field"], e["code"]) for e in r.json()["errors"]] == [("name", DIRECTION_CONTROL)], r.text
    listed = await client.get("/v1/clients", headers=a.h(org=org))
    assert listed.status_code == 200 and listed.json()["items"] == [], listed.text


def test_isolates_are_accepted_as_wrappers_and_overrides_never() -> None:
    wrapped = "\u2068Ada\u2069"
    assert ClientIn.model_validate({"name": wrapped}).name == wrapped
    override = _refusal(ClientIn, "name", "\u202egnp.exe")
    assert (override["type"], override["ctx"]["char"]) == (DIRECTION_CONTROL, "U+202E")
    # An isolate left open is named where it opens.
    unclosed = _refusal(ClientIn, "name", "Ada \u2068Lovelace")
    assert unclosed["ctx"] == {"char": "U+2068", "position": 4}


def test_a_name_of_one_newer_emoji_is_visible_and_a_zero_width_space_is_not() -> None:
    assert ClientIn.model_validate({"name": "\U0001fae8"}).name == "\U0001fae8"
    assert _refusal(ClientIn, "name", "\u200b")["type"] == INVISIBLE_NAME


def test_clean_name_keeps_what_shows_and_drops_what_misleads() -> None:
    assert clean_name("\u202egnp.exe") == "gnp.exe"
    assert clean_name("\u2068Ada\u2069") == "\u2068Ada\u2069"
    assert clean_name("Ada \u2067Lovelace") == "Ada Lovelace"  # left open: the isolates go
    assert clean_name(" \u200b\u202e ") is None
    assert clean_name("\U0001fae8") == "\U0001fae8"
