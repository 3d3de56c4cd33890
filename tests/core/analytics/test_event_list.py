"""The raw event list pages newest first by keyset, narrows by name and client, and refuses a
cursor it did not hand out (or handed out in another context)."""

from __future__ import annotations

import datetime as dt

import httpx

from tests.conftest import make_org, signup


async def test_the_event_list_pages_newest_first_and_filters(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    sent = [
        {
            "name": "page_view" if i % 2 else "signup",
            "client_id": f"c{i % 3}",
            "timestamp": (now - dt.timedelta(minutes=i)).isoformat(),
        }
        for i in range(7)
    ]
    assert (await client.post("/v1/analytics/events", json=sent, headers=a.h())).json()["accepted"] == 7

    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 3}
    while True:
        page = (await client.get("/v1/analytics/events", params=params, headers=a.h())).json()
        seen += [item["timestamp"] for item in page["items"]]
        if not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
    stamps = [dt.datetime.fromisoformat(s) for s in seen]
    assert stamps == sorted(stamps, reverse=True) and len(stamps) == 7

    views = (await client.get("/v1/analytics/events", params={"name": "page_view"}, headers=a.h())).json()[
        "items"
    ]
    assert len(views) == 3 and {v["name"] for v in views} == {"page_view"}
    one_client = (await client.get("/v1/analytics/events", params={"client_id": "c0"}, headers=a.h())).json()[
        "items"
    ]
    assert sorted(v["client_id"] for v in one_client) == ["c0", "c0", "c0"]

    bad = await client.get("/v1/analytics/events", params={"cursor": "not-a-cursor"}, headers=a.h())
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_cursor"
    # A cursor of the personal events is no position among an org's.
    org = await make_org(client, a)
    first = (await client.get("/v1/analytics/events", params={"limit": 1}, headers=a.h())).json()
    elsewhere = await client.get(
        "/v1/analytics/events", params={"cursor": first["next_cursor"]}, headers=a.h(org=org)
    )
    assert elsewhere.status_code == 422 and elsewhere.json()["code"] == "invalid_cursor"
