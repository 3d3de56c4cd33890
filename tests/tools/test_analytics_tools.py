"""The `analytics` toolset: honest annotations, quotable answers, errors with code and hint."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
from mcp import Client

from core.uow import Database
from servers.mcp import build_server
from tests.conftest import join_org, make_org, signup
from tests.support.mcp import tool_error
from tests.support.registry import install


def text_of(result: Any) -> str:
    return " ".join(getattr(b, "text", "") for b in result.content)


async def test_the_toolset_is_opt_in_and_annotated(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    async with Client(build_server(db, static_token=a.token)) as c:
        default = {t.name for t in (await c.list_tools()).tools}
    assert not {n for n in default if n.startswith("analytics_")}
    await install(client, a, "analytics")
    async with Client(build_server(db, static_token=a.token, toolset_names=["analytics"])) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
    assert set(tools) >= {
        "analytics_summary",
        "analytics_trends",
        "analytics_funnel",
        "analytics_events_list",
        "analytics_track",
    }
    for name in ("analytics_summary", "analytics_trends", "analytics_funnel", "analytics_events_list"):
        ann = tools[name].annotations
        # The spec defines destructive/idempotent hints only for writes: tools/list leaves them out.
        assert ann is not None and ann.read_only_hint is True and ann.destructive_hint is None, name
    track = tools["analytics_track"].annotations
    assert track is not None and track.read_only_hint is False and track.destructive_hint is False
    assert not track.idempotent_hint  # only with an event_id; the description says so
    assert tools["analytics_trends"].input_schema["required"] == ["events"]
    assert "org" in tools["analytics_trends"].input_schema["properties"]
    async with Client(
        build_server(db, static_token=a.token, toolset_names=["analytics"], read_only=True)
    ) as c:
        names = {t.name for t in (await c.list_tools()).tools}
    assert "analytics_track" not in names and "analytics_trends" in names


async def test_track_then_ask_how_it_is_going(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    org = await make_org(client, a)
    await install(client, a, "analytics", org=org)
    await install(client, a, "analytics")
    # An event is identified by its id and timestamp: a retry repeats both.
    at = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(microsecond=0).isoformat()
    async with Client(build_server(db, static_token=a.token, toolset_names=["analytics"])) as c:
        for i in range(3):
            r = await c.call_tool(
                "analytics_track",
                {
                    "name": "lead_captured",
                    "event_id": f"lead-{i}",
                    "timestamp": at,
                    "properties": json.dumps({"channel": "ig"}),
                    "org": org,
                },
            )
            assert not r.is_error, text_of(r)
            assert r.structured_content["accepted"] == 1 and r.structured_content["id"]
        again = await c.call_tool(
            "analytics_track", {"name": "lead_captured", "event_id": "lead-0", "timestamp": at, "org": org}
        )
        assert again.structured_content["accepted"] == 0 and again.structured_content["duplicates"] == 1

        trends = await c.call_tool(
            "analytics_trends",
            {"events": ["lead_captured"], "period": "last_7_days", "time_zone": "Europe/Paris",
             "filters": ["channel = ig"], "breakdown": "channel", "compare": True, "org": org},
        )  # fmt: skip
        assert not trends.is_error, text_of(trends)
        out = trends.structured_content
        assert out["series"][0]["total"] == 3 and out["series"][0]["untrusted_breakdown_value"] == "ig"
        assert out["query"]["range"]["time_zone"] == "Europe/Paris" and out["query"]["filters"] == [
            'channel = "ig"'
        ]
        assert out["context"] == {"kind": "org", "org": org, "role": "owner"}
        assert "lead_captured: 3 events (previous period 0)" in out["text"]
        assert "Europe/Paris" in out["text"] and 'channel = "ig"' in out["text"] and org in out["text"]
        # Text content is the same JSON, compact (cheap for agents).
        assert json.loads(text_of(trends)) == out

        personal = await c.call_tool("analytics_trends", {"events": ["lead_captured"]})
        assert personal.structured_content["series"][0]["total"] == 0
        # `filters: null` is "no filters", as before the tool took the model's fields flat.
        unfiltered = await c.call_tool(
            "analytics_trends", {"events": ["lead_captured"], "filters": None, "org": org}
        )
        assert not unfiltered.is_error, text_of(unfiltered)
        assert unfiltered.structured_content["series"][0]["total"] == 3

        # A funnel step may also be an object, as over REST (its schema is spelled out inline).
        stepped = await c.call_tool(
            "analytics_funnel",
            {"steps": [{"event": "lead_captured", "filters": ["channel = ig"]}, "bookings/booking.confirmed"],
             "org": org},
        )  # fmt: skip
        assert not stepped.is_error, text_of(stepped)

        summary = await c.call_tool("analytics_summary", {"period": "this_month", "org": org})
        assert not summary.is_error and summary.structured_content["members"] is not None
        assert summary.structured_content["text"].startswith("From ")

        funnel = await c.call_tool(
            "analytics_funnel",
            {"steps": ["lead_captured", "bookings/booking.confirmed"], "window": "7d", "org": org},
        )
        assert not funnel.is_error, text_of(funnel)
        # No client ids were sent: nobody can enter a per-client funnel.
        assert funnel.structured_content["steps"][0]["clients"] == 0

        listed = await c.call_tool("analytics_events_list", {"name": "lead_captured", "limit": 2, "org": org})
        page = listed.structured_content
        assert len(page["items"]) == 2 and page["next_cursor"]
        assert page["items"][0]["untrusted_properties"] == {"channel": "ig"}
        rest = await c.call_tool(
            "analytics_events_list", {"name": "lead_captured", "cursor": page["next_cursor"], "org": org}
        )
        assert len(rest.structured_content["items"]) == 1


async def test_tool_errors_carry_code_and_hint(client: httpx.AsyncClient, db: Database) -> None:
    owner, member = await signup(client), await signup(client)
    org = await make_org(client, owner)
    await join_org(client, org, owner, member)
    await install(client, owner, "analytics", org=org)
    await install(client, member, "analytics")
    async with Client(build_server(db, static_token=member.token, toolset_names=["analytics"])) as c:
        cases: list[tuple[str, dict[str, Any], str]] = [
            ("analytics_trends", {"events": ["x"], "filters": ["amount >> 3"]}, "invalid_filter"),
            ("analytics_trends", {"events": ["x"], "filters": ["amount = NaN"]}, "invalid_filter"),
            ("analytics_trends", {"events": ["x"], "filters": ["plan in [1e999]"]}, "invalid_filter"),
            ("analytics_trends", {"events": ["x"], "breakdown": "$member", "org": org}, "insufficient_role"),
            ("analytics_trends", {"events": ["x"], "time_zone": "Nowhere/Land"}, "invalid_time_zone"),
            ("analytics_funnel", {"steps": ["a", "b"], "window": "1y"}, "invalid_window"),
            ("analytics_track", {"name": "bookings/booking.confirmed"}, "reserved_name"),
            ("analytics_track", {"name": "x", "properties": "{nope"}, "invalid_properties"),
            ("analytics_track", {"name": "x", "properties": "[1]"}, "invalid_properties"),
            ("analytics_summary", {"org": "not-my-org"}, "not_a_member"),
        ]
        for tool, args, code in cases:
            r = await c.call_tool(tool, args)
            error = tool_error(r)
            assert error["code"] == code and error["hint"], (tool, error)
        # The hint names the field itself: MCP lists field issues in `fields`, not REST's `errors`.
        r = await c.call_tool("analytics_track", {"name": "x", "timestamp": "yesterday"})
        error = tool_error(r)
        assert error["code"] == "invalid_timestamp" and error["fields"][0]["path"] == "timestamp", error
        assert error["hint"] == "fix the event's `timestamp` and send it again", error
        # A member sees the org's totals, without per-member numbers.
        ok = await c.call_tool("analytics_summary", {"org": org})
        assert not ok.is_error and ok.structured_content["members"] is None
