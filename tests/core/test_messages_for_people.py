"""Refusals a person reads (in the portal) as well as an agent: worded in the domain's words
(a handle, not a slug), naming what is wrong once, and saying what to do."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import ValidationError

from core.analytics.timebuckets import resolve_range
from core.errors import ValidationFailed
from core.messaging.schemas import ThreadUpdateIn
from core.messaging.threads import _snooze_problem
from core.tenancy.schemas import BrandIn
from core.validation import issue_message
from tests.conftest import make_org, signup, slug


def _messages(exc: ValidationError) -> list[str]:
    return [issue_message(e) for e in exc.errors()]


async def test_inviting_an_unknown_handle_says_handle(client: httpx.AsyncClient) -> None:
    owner = await signup(client)
    org = await make_org(client, owner)
    r = await client.post(f"/v1/orgs/{org}/invitations", json={"person": "nobody-here"}, headers=owner.h())
    assert r.status_code == 404, r.text
    body = r.json()
    assert body["code"] == "person_not_found"
    assert body["detail"] == "no one has the handle 'nobody-here'", body
    assert "slug" not in body["detail"] + body["hint"], body


def test_a_snooze_end_is_explained_in_words() -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    assert _snooze_problem(past) == "the snooze end has already passed; it must be in the future"
    assert _snooze_problem(None) == "say until when the thread stays snoozed (snoozed_until)"
    assert (
        _snooze_problem(dt.datetime(2999, 1, 1))
        == "the snooze end needs a time zone, e.g. Z for UTC or +02:00"
    )
    assert _snooze_problem(dt.datetime.now(dt.UTC) + dt.timedelta(days=1)) is None


def test_each_wrong_label_is_named() -> None:
    with pytest.raises(ValidationError) as refused:
        ThreadUpdateIn.model_validate({"add_labels": ["Bad Label", "ok", "also bad!"]})
    said = _messages(refused.value)
    assert said == [
        "'bad label' is not a label: use 1-40 lowercase letters, digits and _ : / -, starting with a letter or digit",
        "'also bad!' is not a label: use 1-40 lowercase letters, digits and _ : / -, starting with a letter or digit",
    ]


def test_a_sentence_given_as_domains_is_one_message() -> None:
    with pytest.raises(ValidationError) as refused:
        BrandIn.model_validate({"slug": slug("b"), "name": "B", "domains": ["not", "a", "domain!"]})
    assert _messages(refused.value) == [
        "'not', 'a' and 'domain!' are not domain names: give one domain per entry, e.g. cocotte.maison"
    ]
    with pytest.raises(ValidationError) as one:
        BrandIn.model_validate({"slug": slug("b"), "name": "B", "domains": ["cocotte.maison", "a"]})
    assert _messages(one.value) == ["'a' is not a domain name (e.g. cocotte.maison)"]
    fine = BrandIn.model_validate({"slug": slug("b"), "name": "B", "domains": ["Cocotte.Maison."]})
    assert fine.domains == ["cocotte.maison"]


def test_an_end_before_the_start_is_said_once() -> None:
    now = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    with pytest.raises(ValidationFailed) as refused:
        resolve_range(ZoneInfo("UTC"), period=None, start="2026-03-10", end="2026-03-01", now=now)
    err = refused.value
    assert err.message == "the end date must be after the start date"
    assert [(e.field, e.message) for e in err.errors] == [
        ("end", "the end date must be after the start date")
    ]
    assert err.hint and "end date after the start date" in err.hint and "pass" not in err.hint
