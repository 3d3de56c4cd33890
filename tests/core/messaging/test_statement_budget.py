"""What sending a message costs in SQL statements (issue 19): the context, the thread with its
client and settings, ONE statement for the message, the read markers, the thread's counters and
the outbox row -- three, with or without unread messages to mark. A regression guard."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from core.uow import Database
from tests.conftest import signup
from tests.support.messaging import inbound, thread_detail
from tests.support.statements import counting_client, statements

SEND_BUDGET = 3


@pytest.fixture
async def counting(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with counting_client(db) as c:
        yield c


async def test_a_reply_takes_three_statements_and_reads_the_thread(counting: httpx.AsyncClient) -> None:
    owner = await signup(counting)
    h = owner.h()
    first = (await inbound(counting, h, external_id="budget-0", body="hello"))["results"][0]
    portal = await counting.post(
        "/v1/messaging/threads", json={"client_id": first["client_id"], "channel": "portal"}, headers=h
    )
    tid = portal.json()["thread"]["id"]
    for i in range(2):
        await inbound(counting, h, channel="portal", external_id=f"budget-p{i}", thread_id=tid, body=f"q{i}")
    before = await thread_detail(counting, h, tid)
    assert before["thread"]["unread_count"] == 2
    sent = await counting.post(f"/v1/messaging/threads/{tid}/messages", json={"body": "On it"}, headers=h)
    assert sent.status_code == 201, sent.text
    assert statements(sent) <= SEND_BUDGET, statements(sent)
    after = await thread_detail(counting, h, tid)
    # The message, the thread's counters and the client's messages read, in that one statement.
    assert after["thread"]["unread_count"] == 0
    assert after["thread"]["message_count"] == before["thread"]["message_count"] + 1
    assert all(m["read_at"] for m in after["messages"] if m["direction"] == "in")
    assert sent.json()["id"] in [m["id"] for m in after["messages"]]
    again = await counting.post(f"/v1/messaging/threads/{tid}/messages", json={"body": "Done"}, headers=h)
    assert again.status_code == 201 and statements(again) <= SEND_BUDGET, again.text
