"""A token's signature is checked once per token (`core.credentials.Tokens.decode` remembers
what it proved); expiry is still checked on every use."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from core.config import Settings
from core.credentials import Tokens
from core.errors import Unauthenticated


def _tokens() -> Tokens:
    return Tokens(Settings(env="test", jwt_secret="decode-test-" + "k" * 40))


def test_a_remembered_token_is_refused_once_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = _tokens()
    person = uuid.uuid4()
    token, expires = tokens.issue(
        person_id=person, session_id=uuid.uuid4(), device_id="d", org_id=None, org_role=None
    )
    assert tokens.decode(token).person_id == person
    assert tokens.decode(token).person_id == person  # remembered
    later = expires + dt.timedelta(seconds=6)  # past PyJWT's 5 s leeway
    monkeypatch.setattr("core.credentials.utcnow", lambda: later)
    with pytest.raises(Unauthenticated) as refused:
        tokens.decode(token)
    assert refused.value.code == "token_expired"


def test_a_forged_token_is_refused_every_time() -> None:
    tokens = _tokens()
    token, _ = tokens.issue(
        person_id=uuid.uuid4(), session_id=uuid.uuid4(), device_id="d", org_id=None, org_role=None
    )
    tokens.decode(token)
    head, body, signature = token.split(".")
    forged = f"{head}.{body}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    for _ in range(2):
        with pytest.raises(Unauthenticated) as refused:
            tokens.decode(forged)
        assert refused.value.code == "token_invalid"
    # Another server's secret does not share what this one remembered.
    other = Tokens(Settings(env="test", jwt_secret="another-secret-" + "q" * 40))
    with pytest.raises(Unauthenticated):
        other.decode(token)
