"""A send reads its thread, client and settings as one row of columns and answers the message
from the row its statement returns (no ORM objects: `queries.thread_for_send`,
`messages.append_outbound`). These check that the row answers and decides exactly as the ORM
objects did: the message as every other read presents it, the delivery rules on the client's
addresses and the context's own peers, and pending ORM changes flushed before such a row is read."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select

from core.messaging.models import Thread
from core.messaging.queries import thread_row
from core.opener import open_context
from core.uow import Database
from tests.conftest import make_org, signup
from tests.support.messaging import inbound, thread_detail

PEER = "http://127.0.0.1:1/deliver"


async def test_the_sent_message_is_answered_as_the_thread_presents_it(mc: httpx.AsyncClient) -> None:
    owner = await signup(mc)
    org = await make_org(mc, owner)
    h = owner.h(org)
    first = await inbound(mc, h, external_id="rows-1", client_email="row@example.com", body="hi")
    tid = first["results"][0]["thread_id"]
    # The thread's email channel has no peer yet: the settings read beside the thread decides.
    refused = await mc.post(f"/v1/messaging/threads/{tid}/messages", json={"body": "x"}, headers=h)
    assert refused.status_code == 409 and refused.json()["code"] == "channel_not_configured", refused.text
    put = await mc.put("/v1/messaging/settings", json={"channel_peers": {"email": PEER}}, headers=h)
    assert put.status_code == 200, put.text
    attachment = {
        "url": "https://files.example.com/a.pdf",
        "content_type": "application/pdf",
        "size_bytes": 42,
    }
    sent = await mc.post(
        f"/v1/messaging/threads/{tid}/messages",
        json={"body": "  Here   it is ", "attachments": [attachment], "status": "pending"},
        headers=h,
    )
    assert sent.status_code == 201, sent.text
    detail = await thread_detail(mc, h, tid)
    read_back = next(m for m in detail["messages"] if m["id"] == sent.json()["id"])
    assert sent.json() == read_back
    assert read_back["attachments"][0]["size_bytes"] == 42 and read_back["author"]["kind"] == "person"
    assert detail["thread"]["status"] == "pending" and detail["thread"]["unread_count"] == 0
    assert detail["thread"]["untrusted_preview"] == "Here it is"

    # An approved draft answers its message the same way.
    draft = await mc.post(f"/v1/messaging/threads/{tid}/drafts", json={"body": "Drafted"}, headers=h)
    assert draft.status_code == 201, draft.text
    approved = await mc.post(f"/v1/messaging/drafts/{draft.json()['id']}/approve", json={}, headers=h)
    assert approved.status_code == 200, approved.text
    message = approved.json()["message"]
    again = await thread_detail(mc, h, tid)
    assert message == next(m for m in again["messages"] if m["id"] == message["id"])
    assert approved.json()["draft"]["sent_message_id"] == message["id"]


async def test_a_client_without_the_channels_address_is_refused(mc: httpx.AsyncClient) -> None:
    owner = await signup(mc)
    h = owner.h()
    put = await mc.put("/v1/messaging/settings", json={"channel_peers": {"sms": PEER}}, headers=h)
    assert put.status_code == 200, put.text
    client_id = (await mc.post("/v1/clients", json={"name": "No Phone"}, headers=h)).json()["id"]
    made = await mc.post("/v1/messaging/threads", json={"client_id": client_id, "channel": "sms"}, headers=h)
    assert made.status_code == 201, made.text
    tid = made.json()["thread"]["id"]
    refused = await mc.post(f"/v1/messaging/threads/{tid}/messages", json={"body": "x"}, headers=h)
    assert refused.status_code == 409 and refused.json()["code"] == "client_unreachable", refused.text
    patched = await mc.patch(f"/v1/clients/{client_id}", json={"phone": "+1 415 555 0100"}, headers=h)
    assert patched.status_code == 200, patched.text
    sent = await mc.post(f"/v1/messaging/threads/{tid}/messages", json={"body": "x"}, headers=h)
    assert sent.status_code == 201, sent.text
    missing = await mc.post(f"/v1/messaging/threads/{uuid.uuid4()}/messages", json={"body": "x"}, headers=h)
    assert missing.status_code == 404 and missing.json()["code"] == "thread_not_found", missing.text


async def test_rows_read_on_the_connection_see_pending_orm_changes(
    mc: httpx.AsyncClient, mdb: Database
) -> None:
    owner = await signup(mc)
    tid = (await inbound(mc, owner.h(), external_id="rows-flush", body="hi"))["results"][0]["thread_id"]
    async with mdb.uow() as uow:
        ctx = await open_context(uow, owner.token, None)
        thread = (await thread_row(ctx, uow, uuid.UUID(tid)))[0]
        thread.subject = "changed in the session"
        subject = select(Thread.__table__.c.subject).where(Thread.__table__.c.id == thread.id)
        assert (await uow.rows(subject, {})).scalar_one() == "changed in the session"
        await uow.session.rollback()
