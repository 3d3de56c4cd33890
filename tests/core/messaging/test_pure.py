"""Messaging's pure pieces: the prompt budget, search queries and peer hosts."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from core.errors import ValidationFailed
from core.messaging import peers
from core.messaging.drafting import _history
from core.messaging.models import Message
from core.messaging.threads import _tsquery


def _msg(body: str, direction: str = "in", minutes: int = 0) -> Message:
    return Message(
        id=uuid.uuid4(),
        direction=direction,
        author_kind="client" if direction == "in" else "person",
        body=body,
        attachments=[],
        occurred_at=dt.datetime(2026, 11, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=minutes),
    )


def test_history_keeps_the_newest_messages_that_fit_the_budget_oldest_first() -> None:
    newest_first = [_msg("c" * 40, "in", 3), _msg("b" * 40, "out", 2), _msg("a" * 40, "in", 1)]
    history, truncated = _history(newest_first, budget=100)
    assert [h["text"][0] for h in history] == ["b", "c"] and truncated
    assert [h["role"] for h in history] == ["provider", "client"]
    everything, truncated = _history(newest_first, budget=1000)
    assert [h["text"][0] for h in everything] == ["a", "b", "c"] and not truncated
    # A newest message longer than the whole budget is cut, keeping its end.
    only, truncated = _history([_msg("x" * 50 + "END", "in")], budget=10)
    assert only[0]["text"] == "x" * 7 + "END"


def test_search_terms_become_a_safe_prefix_query() -> None:
    assert _tsquery("Tuesday  MORNING") == "tuesday:* & morning:*"
    assert _tsquery("a'b & c|d !e") == "a:* & b:* & c:* & d:* & e:*"
    assert _tsquery("réservation à 10h") == "réservation:* & à:* & 10h:*"
    with pytest.raises(ValidationFailed) as info:
        _tsquery("&|!:*")
    assert info.value.code == "invalid_query"


def test_peer_hosts() -> None:
    allowed = ["127.0.0.1:*", "*.peers.example.com"]
    assert peers.host_allowed("http://127.0.0.1:8080/x", allowed)
    assert peers.host_allowed("https://draft.peers.example.com/v1", allowed)
    assert not peers.host_allowed("https://peers.example.com.evil.io/", allowed)
    assert not peers.host_allowed("http://user:pw@127.0.0.1:80/", allowed)
    assert not peers.host_allowed("ftp://127.0.0.1/", allowed)
    assert not peers.host_allowed("http://169.254.169.254/latest", allowed)
    assert not peers.host_allowed("http://127.0.0.1:8080/x", [])
    assert peers.peer_label("https://u:p@h.example:8443/draft?token=s") == "h.example:8443/draft"
    body = peers.canonical_json({"b": 1, "a": "é"})
    assert body == '{"a":"é","b":1}'.encode()
