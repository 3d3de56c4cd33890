"""The victim's analytics: events in their personal context and in their org, whose property
values, client ids and ids must never reach anyone else — not even as breakdown values."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx

from tests.support.world import Victim

# Generic names: an attacker asks for these, and the echo of a query must not look like a leak.
EVENTS = ["page_view", "signup"]


def _events(v: Victim, scope: str) -> list[dict[str, Any]]:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    out = []
    for i in range(6):
        eid = str(uuid.uuid4())
        v.ids.add(uuid.UUID(eid))
        out.append(
            {
                "id": eid,
                "name": EVENTS[i % 2],
                "timestamp": (now - dt.timedelta(hours=i * 5)).isoformat(),
                "client_id": f"client-{scope}-{v.secret}-{i % 3}",
                "properties": {
                    "plan": f"plan-{scope}-{v.secret}",
                    "amount": 100 + i,
                    "note": f"n-{v.secret}",
                },
            }
        )
    return out


async def build(client: httpx.AsyncClient, v: Victim) -> None:
    a = v.person
    for scope, headers in (("personal", a.h()), ("org", a.h(org=v.org))):
        events = _events(v, scope)
        r = await client.post("/v1/analytics/events", json={"events": events}, headers=headers)
        assert r.status_code == 200 and r.json()["accepted"] == len(events), r.text
        v.markers |= {e["client_id"] for e in events} | {e["properties"]["plan"] for e in events}
        v.markers.add(events[0]["id"])


async def snapshot(client: httpx.AsyncClient, v: Victim) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for scope, headers in (("personal", v.person.h()), ("org", v.person.h(org=v.org))):
        trends = await client.post(
            "/v1/analytics/trends",
            json={"events": EVENTS, "period": "last_7_days", "breakdown": "plan"},
            headers=headers,
        )
        state[scope] = sorted(
            (s["event"], s["untrusted_breakdown_value"], s["total"]) for s in trends.json()["series"]
        )
        listed = await client.get("/v1/analytics/events", params={"limit": 100}, headers=headers)
        state[f"{scope}-events"] = sorted(e["id"] for e in listed.json()["items"])
    return state


BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/analytics/events"): lambda v: {
        "events": [{"name": "page_view", "client_id": "mallory", "properties": {"plan": "pwned"}}]
    },
    ("POST", "/v1/analytics/trends"): lambda v: {
        "events": EVENTS,
        "period": "last_30_days",
        "breakdown": "plan",
        "compare": True,
    },
    ("POST", "/v1/analytics/funnel"): lambda v: {"steps": EVENTS, "period": "last_30_days"},
}

ARGS: dict[str, Any] = {
    "events": lambda v: EVENTS,
    "steps": lambda v: EVENTS,
    "breakdown": lambda v: "plan",
    "compare": lambda v: True,
    "filters": lambda v: ["amount >= 0"],
}
