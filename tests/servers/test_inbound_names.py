"""A message's sender name is the sender's choice: the client it creates gets it cleaned of
text-direction overrides ("\u202egnp.exe" showed reversed in the inbox) and, when it shows
nothing, the sender's email or phone instead; the message itself is never refused for it."""

from __future__ import annotations

from typing import Any

import httpx

from core.uow import Database
from tests.conftest import signup
from tests.support.messaging import inbound


async def _client_name(mc: httpx.AsyncClient, h: dict[str, str], **fields: Any) -> str:
    item = (await inbound(mc, h, **fields))["results"][0]
    assert item["outcome"] == "created" and item["client_created"], item
    got = await mc.get(f"/v1/clients/{item['client_id']}", headers=h)
    assert got.status_code == 200, got.text
    return str(got.json()["name"])


async def test_inbound_sender_names_are_stored_clean(mc: httpx.AsyncClient, mdb: Database) -> None:
    h = (await signup(mc)).h()
    spoof = await _client_name(mc, h, client_email="spam@example.com", client_name="\u202egnp.exe")
    assert spoof == "gnp.exe"
    blank = await _client_name(mc, h, client_email="blank@example.com", client_name="\u200b\u202e ")
    assert blank == "blank@example.com"
    by_phone = await _client_name(
        mc, h, channel="sms", client_email="", client_phone="+14155550123", client_name="\u2060"
    )
    assert by_phone == "+14155550123"
    wrapped = await _client_name(mc, h, client_email="ada@example.com", client_name="\u2068Ada\u2069")
    assert wrapped == "\u2068Ada\u2069"  # an isolate around the name is sound: kept as sent
