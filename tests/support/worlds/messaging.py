"""The victim's messaging data: threads (org and personal) with inbound and outbound messages,
a pending draft, and org settings whose profile carries the secret."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.support.world import Victim


async def build(client: httpx.AsyncClient, v: Victim) -> None:
    a, org, secret = v.person, v.org, v.secret
    threads: dict[str, str] = {}
    for where, headers in (("org", a.h(org=org)), ("personal", a.h())):
        r = await client.post(
            "/v1/messaging/inbound",
            json={
                "channel": "email",
                "external_id": f"<{where}-{secret}@victim.example>",
                "client_email": f"msg-{where}-{secret}@victim.example",
                "client_name": f"Client {where} {secret}",
                "subject": f"Subject {where} {secret}",
                "body": f"Inbound {where} body {secret}",
                "thread_key": f"key-{where}-{secret}",
            },
            headers=headers,
        )
        assert r.status_code == 200, r.text
        item = r.json()["results"][0]
        threads[where] = item["thread_id"]
        v.add("thread_id", item["thread_id"])
        v.add("message_id", item["message_id"])
        v.ids.add(uuid.UUID(item["client_id"]))
        sent = await client.post(
            f"/v1/messaging/threads/{item['thread_id']}/messages",
            json={"body": f"Outbound {where} reply {secret}"},
            headers={**headers, "Idempotency-Key": f"send-{where}-{secret}"},
        )
        assert sent.status_code == 409, sent.text  # email has no delivery peer in tests
        portal = await client.post(
            "/v1/messaging/threads",
            json={
                "client_id": item["client_id"],
                "channel": "portal",
                "subject": f"Portal {where} {secret}",
                "body": f"Portal {where} hello {secret}",
            },
            headers=headers,
        )
        assert portal.status_code == 201, portal.text
        v.add("thread_id", portal.json()["thread"]["id"])
        v.add("message_id", portal.json()["messages"][0]["id"])
        draft = await client.post(
            f"/v1/messaging/threads/{item['thread_id']}/drafts",
            json={"body": f"Draft {where} {secret}"},
            headers=headers,
        )
        assert draft.status_code == 201, draft.text
        v.add("draft_id", draft.json()["id"])
    settings = await client.put(
        "/v1/messaging/settings",
        json={"default_agent_mode": "auto", "profile": {"tone": f"tone-{secret}"}},
        headers=a.h(org=org),
    )
    assert settings.status_code == 200, settings.text


async def snapshot(client: httpx.AsyncClient, v: Victim) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for where, headers in (("org", v.person.h(org=v.org)), ("personal", v.person.h())):
        threads = (await client.get("/v1/messaging/threads", headers=headers)).json()["items"]
        state[f"{where}_threads"] = sorted(
            (
                t["id"],
                t["status"],
                t["untrusted_subject"],
                tuple(t["labels"]),
                t["unread_count"],
                t["assignee"],
            )
            for t in threads
        )
        for t in threads:
            detail = (await client.get(f"/v1/messaging/threads/{t['id']}", headers=headers)).json()
            state[t["id"]] = (
                [(m["id"], m["body"], m["untrusted_body"], m["read_at"]) for m in detail["messages"]],
                [(d["id"], d["status"], d["body"]) for d in detail["pending_drafts"]],
            )
        drafts = (await client.get("/v1/messaging/drafts?status=any", headers=headers)).json()["items"]
        state[f"{where}_drafts"] = sorted((d["id"], d["status"]) for d in drafts)
        state[f"{where}_settings"] = (await client.get("/v1/messaging/settings", headers=headers)).json()
    return state


BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/messaging/threads"): lambda v: {
        "client_id": v.refs["client_id"][0],
        "channel": "portal",
        "body": "pwned",
    },
    ("PATCH", "/v1/messaging/threads/{thread_id}"): lambda v: {"status": "closed", "labels": ["pwned"]},
    ("POST", "/v1/messaging/threads/{thread_id}/messages"): lambda v: {"body": "pwned"},
    ("POST", "/v1/messaging/threads/{thread_id}/read"): lambda v: {},
    ("POST", "/v1/messaging/threads/{thread_id}/drafts"): lambda v: {"body": "pwned"},
    ("POST", "/v1/messaging/threads/{thread_id}/drafts/generate"): lambda v: {},
    ("POST", "/v1/messaging/drafts/{draft_id}/approve"): lambda v: {"body": "pwned"},
    ("POST", "/v1/messaging/drafts/{draft_id}/reject"): lambda v: {"reason": "pwned"},
    ("POST", "/v1/messaging/inbound"): lambda v: {
        "channel": "portal",
        "external_id": uuid.uuid4().hex,
        "client_email": f"m-{uuid.uuid4().hex[:8]}@example.com",
        "body": "hello from mallory's client",
    },
    ("PUT", "/v1/messaging/settings"): lambda v: {"default_agent_mode": "auto"},
}

ARGS: dict[str, Any] = {
    "body": lambda v: "pwned",
    "reason": lambda v: "pwned",
    "add_labels": lambda v: ["pwned"],
}
