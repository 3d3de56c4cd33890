"""A world in which every MCP tool can succeed, and for every tool one call that succeeds and
one that fails — for the validating-client tests (tests/tools/test_validating_client.py), which
replay the same calls in-process and through the official TypeScript SDK.

A success case may prepare what it needs (its own booking to cancel, its own draft to approve),
so the cases do not depend on each other's order; `plan` runs every preparation first and
returns the calls, which can then be made by any client. A call is completed with the world's
org when the tool takes `org` and the case does not say otherwise."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from mcp import Client
from sqlalchemy import text

from core.uow import Database
from tests.conftest import Account, make_org, signup, slug
from tests.core.bookings.helpers import at, day_ahead
from tests.support.registry import install

UNKNOWN_ORG = "no-such-org-zz"


@dataclass
class World:
    rest: httpx.AsyncClient
    mcp: Client
    db: Database
    owner: Account
    org: str
    schemas: dict[str, dict[str, Any]]  # tool name -> inputSchema
    ids: dict[str, str] = field(default_factory=dict)
    _slots: itertools.count[int] = field(default_factory=lambda: itertools.count())

    async def call(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """A preparation step through MCP: it must succeed."""
        result = await self.mcp.call_tool(name, self.complete(name, args))
        assert not result.is_error, (name, result.content)
        assert result.structured_content is not None
        return dict(result.structured_content)

    def complete(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        if "org" in self.schemas[name].get("properties", {}) and "org" not in args:
            return {**args, "org": self.org}
        return args

    def slot(self) -> str:
        """A start time no other case uses: the hours of the days ahead, one by one."""
        n = next(self._slots)
        return at(day_ahead(3 + n // 8), f"{9 + n % 8:02d}:00")

    async def person(self, prefix: str = "p") -> Account:
        return await signup(self.rest, prefix)

    async def sql(self, statement: str, **params: Any) -> None:
        async with self.db.system() as uow:
            await uow.session.execute(text(statement), params)

    async def booking(self, *, confirmed: bool = True) -> str:
        held = await self.call("bookings_hold", {"service_id": self.ids["service"], "start_at": self.slot()})
        if confirmed:
            await self.call("bookings_confirm", {"booking_id": held["id"], "client_id": self.ids["client"]})
        return str(held["id"])

    async def thread(self) -> str:
        made = await self.call("messaging_thread_create", {"client_id": self.ids["client"], "subject": "Hi"})
        return str(made["thread"]["id"])

    async def draft(self) -> str:
        made = await self.call("messaging_draft_create", {"thread_id": await self.thread(), "body": "Hello!"})
        return str(made["id"])

    async def member(self) -> str:
        someone = await self.person("member")
        invited = await self.call("org_members_invite", {"person": someone.slug})
        accepted = await self.rest.post(f"/v1/invitations/{invited['id']}/accept", headers=someone.h())
        assert accepted.status_code == 200, accepted.text
        return someone.slug


async def build(rest: httpx.AsyncClient, mcp: Client, db: Database, owner: Account) -> World:
    """The owner (a platform admin, whose token `mcp` carries) with an org that installed every
    built-in, a client, a service with hours, a thread with an inbound message, events, credits;
    and an org of someone else."""
    org = await make_org(rest, owner, "every")
    await install(rest, owner, org=org)
    schemas = {t.name: t.input_schema for t in (await mcp.list_tools()).tools}
    w = World(rest, mcp, db, owner, org, schemas)
    email = f"{slug('ada')}@example.com"
    w.ids["client_email"] = email
    w.ids["client"] = (await w.call("clients_create", {"name": "Ada", "email": email}))["id"]
    await w.call(
        "bookings_availability_set", {"time_zone": "Europe/Paris", "weekly": ["mon-sun 08:00-18:00"]}
    )
    service = await w.call("bookings_service_upsert", {"name": "Massage", "duration_minutes": 60})
    w.ids["service"] = service["id"]
    r = await rest.post(
        "/v1/messaging/inbound",
        json={
            "channel": "portal",
            "client_email": email,
            "body": "Can I come on Tuesday?",
            "external_id": "m1",
        },
        headers=owner.h(org=org),
    )
    assert r.status_code == 200, r.text
    w.ids["thread"] = r.json()["results"][0]["thread_id"]
    w.ids["message"] = r.json()["results"][0]["message_id"]
    for name in ("lead_captured", "booked"):
        await w.call("analytics_track", {"name": name, "client_id": "c-1"})
    await w.call("admin_credits_grant", {"credits": 100, "to_org": org})
    w.ids["foreign_org"] = await make_org(rest, await w.person("stranger"), "foreign")
    return w


Args = dict[str, Any]
Ok = Callable[[World], Awaitable[Args]]


def _fixed(args: Args) -> Ok:
    async def make(w: World) -> Args:
        return args

    return make


def _with(fn: Callable[[World], Args]) -> Ok:
    async def make(w: World) -> Args:
        return fn(w)

    return make


async def _newcomer(w: World) -> Args:
    return {"person": (await w.person("newcomer")).slug}


async def _rejected(w: World) -> Args:
    return {"draft_id": await w.draft(), "reason": "Too short"}


async def _member_role(w: World) -> Args:
    return {"person": await w.member(), "role": "admin"}


async def _member_gone(w: World) -> Args:
    return {"person": await w.member()}


async def _uninstall(w: World) -> Args:
    await install(w.rest, w.owner, "identity")
    return {"component": "identity", "org": None}


async def _job(w: World) -> Args:
    run = await w.call(
        "jobs_run",
        {"component": "identity", "action": "resolve-person", "input_json": '{"email": "bo@example.com"}'},
    )
    return {"job_id": run["job_id"]}


async def _request(w: World) -> Args:
    return {"service_id": w.ids["service"], "start_at": w.slot(), "client_id": w.ids["client"]}


async def _requested(w: World) -> Args:
    made = await w.call("bookings_request", await _request(w))
    return {"booking_id": made["id"], "reason": "Fully booked that day"}


async def _hold(w: World) -> Args:
    return {"booking_id": await w.booking(confirmed=False), "client_id": w.ids["client"]}


async def _booking(w: World) -> Args:
    return {"booking_id": await w.booking()}


async def _reschedule(w: World) -> Args:
    return {"booking_id": await w.booking(), "start_at": w.slot()}


async def _move_times(w: World) -> Args:
    return {"booking_id": await w.booking(), "from_date": str(day_ahead(3)), "to_date": str(day_ahead(4))}


async def _past(w: World) -> Args:
    booking = await w.booking()
    await w.sql(
        "UPDATE bookings.bookings SET start_at = now() - interval '2 hours', end_at = now() - interval '1 hour'"
        " WHERE id = :b",
        b=uuid.UUID(booking),
    )
    return {"booking_id": booking, "outcome": "completed"}


async def _failed_message(w: World) -> Args:
    # No relay runs in these tests, so nothing delivers the message behind the failure set here.
    sent = await w.call("messaging_send", {"thread_id": await w.thread(), "body": "See you then"})
    await w.sql(
        "UPDATE messaging.messages SET delivery_status = 'failed', failure_reason = 'test' WHERE id = :m",
        m=uuid.UUID(sent["id"]),
    )
    return {"message_id": sent["id"]}


async def _draft(w: World) -> Args:
    return {"draft_id": await w.draft()}


async def _suspended(w: World) -> Args:
    someone = await w.person("suspended")
    await w.call("admin_person_suspend", {"person": someone.slug, "reason": "testing reactivation"})
    return {"person": someone.slug}


async def _victim(w: World) -> Args:
    return {"person": (await w.person("victim")).slug, "reason": "testing suspension"}


def _range(w: World) -> Args:
    return {"from_date": str(day_ahead(3)), "to_date": str(day_ahead(4)), "service_id": w.ids["service"]}


# tool -> what a call that succeeds needs. Every tool in tools/list must be here.
OK: dict[str, Ok] = {
    "whoami": _fixed({}),
    "orgs_list": _fixed({}),
    "orgs_create": _with(lambda w: {"slug": slug("org"), "name": "Another"}),
    "org_members_list": _fixed({}),
    "org_members_invite": _newcomer,
    "org_members_update": _member_role,
    "org_members_remove": _member_gone,
    "brands_list": _fixed({}),
    "clients_list": _fixed({"q": "ada"}),
    "clients_get": _with(lambda w: {"client_id": w.ids["client"]}),
    "clients_create": _with(
        lambda w: {"name": "Bo", "email": f"{slug('bo')}@example.com", "phone": "+33612345678"}
    ),
    "clients_update": _with(lambda w: {"client_id": w.ids["client"], "notes": "Prefers mornings"}),
    "registry_search": _fixed({"q": "book appointments"}),
    "registry_get": _fixed({"slug": "bookings"}),
    "registry_install": _fixed({"component": "bookings"}),
    "registry_configure": _fixed({"component": "analytics", "config": "{}"}),
    "registry_installations": _fixed({}),
    "registry_uninstall": _uninstall,
    "credits_balance": _fixed({}),
    "credits_ledger": _fixed({}),
    "identity_resolve_person": _fixed({"email": "Ada.Lovelace@Example.com"}),
    "identity_resolve_company": _fixed({"domain": "https://www.example.com/about"}),
    "jobs_actions_list": _fixed({}),
    "jobs_quote": _fixed(
        {"component": "identity", "action": "resolve-person", "input_json": '{"email": "a@b.co"}'}
    ),
    "jobs_run": _fixed(
        {"component": "identity", "action": "resolve-company", "input_json": '{"name": "Acme"}'}
    ),
    "jobs_get": _job,
    "jobs_list": _fixed({}),
    "jobs_cancel": _job,
    "bookings_services_list": _fixed({}),
    "bookings_service_upsert": _with(lambda w: {"service_id": w.ids["service"], "description": "Relaxing"}),
    "bookings_availability_get": _fixed({}),
    "bookings_availability_set": _fixed({"time_zone": "Europe/Paris", "weekly": ["mon-sun 08:00-18:00"]}),
    "bookings_slots": _with(_range),
    "bookings_reschedule_slots": _move_times,
    "bookings_hold": _with(lambda w: {"service_id": w.ids["service"], "start_at": w.slot()}),
    "bookings_request": _request,
    "bookings_confirm": _hold,
    "bookings_decline": _requested,
    "bookings_cancel": _booking,
    "bookings_reschedule": _reschedule,
    "bookings_list": _fixed({}),
    "bookings_get": _booking,
    "bookings_manage_link": _booking,
    "bookings_record_outcome": _past,
    "messaging_threads_list": _fixed({}),
    "messaging_threads_count": _fixed({"unread": True}),
    "messaging_thread_get": _with(lambda w: {"thread_id": w.ids["thread"]}),
    "messaging_client_link": _with(lambda w: {"thread_id": w.ids["thread"]}),
    "messaging_client_link_revoke": _with(lambda w: {"thread_id": w.ids["thread"]}),
    "messaging_thread_create": _with(lambda w: {"client_id": w.ids["client"], "subject": "Welcome"}),
    "messaging_thread_update": _with(lambda w: {"thread_id": w.ids["thread"], "add_labels": ["vip"]}),
    "messaging_thread_mark_read": _with(lambda w: {"thread_id": w.ids["thread"]}),
    "messaging_send": _with(lambda w: {"thread_id": w.ids["thread"], "body": "Tuesday works."}),
    "messaging_message_retry": _failed_message,
    "messaging_drafts_list": _fixed({}),
    "messaging_draft_create": _with(lambda w: {"thread_id": w.ids["thread"], "body": "Tuesday at 3?"}),
    "messaging_draft_generate": _with(lambda w: {"thread_id": w.ids["thread"], "instructions": "offer 3pm"}),
    "messaging_draft_approve": _draft,
    "messaging_draft_reject": _rejected,
    "messaging_settings_get": _fixed({}),
    "analytics_summary": _fixed({"period": "last_7_days"}),
    "analytics_trends": _fixed({"events": ["lead_captured"], "interval": "day"}),
    "analytics_funnel": _fixed({"steps": ["lead_captured", "booked"]}),
    "analytics_events_list": _fixed({}),
    "analytics_track": _fixed({"name": "milestone", "properties": '{"plan": "pro"}'}),
    "admin_persons": _fixed({}),
    "admin_person_get": _with(lambda w: {"person": w.owner.slug}),
    "admin_person_suspend": _victim,
    "admin_person_reactivate": _suspended,
    "admin_orgs": _fixed({}),
    "admin_audit": _fixed({}),
    "admin_dead_letters": _fixed({}),
    "admin_dead_letters_redrive": _fixed({"handler": "tests.nothing_dead"}),
    "admin_credits_grant": _with(lambda w: {"credits": 5, "to_org": w.org, "memo": "thanks"}),
}


def _missing() -> str:
    return str(uuid.uuid4())


# tool -> (a call that fails, the error code it must carry). Every tool in tools/list must be here.
BAD: dict[str, tuple[Callable[[World], Args], str]] = {
    "whoami": (lambda w: {"org": UNKNOWN_ORG}, "not_a_member"),
    "orgs_list": (lambda w: {"limit": 0}, "invalid_arguments"),
    "orgs_create": (lambda w: {"slug": w.org, "name": "Again"}, "slug_taken"),
    "org_members_list": (lambda w: {"org": w.ids["foreign_org"]}, "not_a_member"),
    "org_members_invite": (lambda w: {"person": "nobody-" + uuid.uuid4().hex[:8]}, "person_not_found"),
    "org_members_update": (lambda w: {"person": w.owner.slug, "role": "member"}, "cannot_change_owner"),
    "org_members_remove": (lambda w: {"person": w.owner.slug}, "owner_cannot_leave"),
    "brands_list": (lambda w: {"limit": "many"}, "invalid_arguments"),
    "clients_list": (lambda w: {"org": UNKNOWN_ORG}, "not_a_member"),
    "clients_get": (lambda w: {"client_id": _missing()}, "client_not_found"),
    "clients_create": (lambda w: {"name": "Ada again", "email": w.ids["client_email"]}, "client_exists"),
    "clients_update": (lambda w: {"client_id": _missing(), "name": "X"}, "client_not_found"),
    "registry_search": (lambda w: {"kind": "plugin"}, "invalid_arguments"),
    "registry_get": (lambda w: {"slug": "no-such-component"}, "component_not_found"),
    "registry_install": (lambda w: {"component": "no-such-component"}, "component_not_found"),
    "registry_configure": (lambda w: {"component": "analytics", "config": "[1]"}, "invalid_config"),
    "registry_uninstall": (lambda w: {"component": "no-such-component"}, "not_installed"),
    "registry_installations": (lambda w: {"limit": 1000}, "invalid_arguments"),
    "credits_balance": (lambda w: {"org": UNKNOWN_ORG}, "not_a_member"),
    "credits_ledger": (lambda w: {"job_id": "not-a-uuid"}, "invalid_arguments"),
    "identity_resolve_person": (lambda w: {}, "invalid_arguments"),
    "identity_resolve_company": (lambda w: {}, "invalid_arguments"),
    "jobs_actions_list": (lambda w: {"cursor": "garbage"}, "invalid_cursor"),
    "jobs_quote": (lambda w: {"component": "identity", "action": "no-such-action"}, "unknown_action"),
    "jobs_run": (
        lambda w: {"component": "identity", "action": "resolve-person", "input_json": "{"},
        "invalid_json",
    ),
    "jobs_get": (lambda w: {"job_id": _missing()}, "job_not_found"),
    "jobs_list": (lambda w: {"status": "sleeping"}, "invalid_arguments"),
    "jobs_cancel": (lambda w: {"job_id": _missing()}, "job_not_found"),
    "bookings_services_list": (lambda w: {"active": "maybe"}, "invalid_arguments"),
    "bookings_service_upsert": (lambda w: {"service_id": _missing(), "name": "X"}, "service_not_found"),
    "bookings_availability_get": (lambda w: {"provider": "nobody-zz"}, "provider_not_found"),
    "bookings_availability_set": (lambda w: {"time_zone": "Mars/Olympus", "weekly": []}, "invalid_arguments"),
    "bookings_slots": (lambda w: {**_range(w), "service_id": _missing()}, "service_not_found"),
    "bookings_hold": (lambda w: {"service_id": w.ids["service"], "start_at": "tuesday"}, "invalid_arguments"),
    "bookings_request": (lambda w: {"service_id": _missing(), "start_at": w.slot()}, "service_not_found"),
    "bookings_confirm": (lambda w: {"booking_id": _missing()}, "booking_not_found"),
    "bookings_decline": (lambda w: {"booking_id": _missing(), "reason": "no"}, "booking_not_found"),
    "bookings_cancel": (lambda w: {"booking_id": _missing()}, "booking_not_found"),
    "bookings_reschedule": (lambda w: {"booking_id": _missing(), "start_at": w.slot()}, "booking_not_found"),
    "bookings_reschedule_slots": (
        lambda w: {"booking_id": _missing(), "from_date": str(day_ahead(3)), "to_date": str(day_ahead(4))},
        "booking_not_found",
    ),
    "bookings_list": (lambda w: {"status": ["lost"]}, "invalid_arguments"),
    "bookings_get": (lambda w: {"booking_id": _missing()}, "booking_not_found"),
    "bookings_manage_link": (lambda w: {"booking_id": _missing()}, "booking_not_found"),
    "bookings_record_outcome": (
        lambda w: {"booking_id": _missing(), "outcome": "completed"},
        "booking_not_found",
    ),
    "messaging_threads_list": (lambda w: {"status": "lost"}, "invalid_arguments"),
    "messaging_threads_count": (lambda w: {"q": "!!!"}, "invalid_query"),
    "messaging_thread_get": (lambda w: {"thread_id": _missing()}, "thread_not_found"),
    "messaging_client_link": (lambda w: {"thread_id": _missing()}, "thread_not_found"),
    "messaging_client_link_revoke": (lambda w: {"thread_id": _missing()}, "thread_not_found"),
    "messaging_thread_create": (lambda w: {"client_id": _missing()}, "client_not_found"),
    "messaging_thread_update": (lambda w: {"thread_id": _missing(), "add_labels": ["x"]}, "thread_not_found"),
    "messaging_thread_mark_read": (lambda w: {"thread_id": _missing()}, "thread_not_found"),
    "messaging_send": (lambda w: {"thread_id": _missing(), "body": "Hi"}, "thread_not_found"),
    "messaging_message_retry": (lambda w: {"message_id": w.ids["message"]}, "message_not_failed"),
    "messaging_drafts_list": (lambda w: {"status": "lost"}, "invalid_arguments"),
    "messaging_draft_create": (lambda w: {"thread_id": _missing(), "body": "Hi"}, "thread_not_found"),
    "messaging_draft_generate": (lambda w: {"thread_id": _missing()}, "thread_not_found"),
    "messaging_draft_approve": (lambda w: {"draft_id": _missing()}, "draft_not_found"),
    "messaging_draft_reject": (lambda w: {"draft_id": _missing(), "reason": "no"}, "draft_not_found"),
    "messaging_settings_get": (lambda w: {"org": UNKNOWN_ORG}, "not_a_member"),
    "analytics_summary": (lambda w: {"time_zone": "Mars/Olympus"}, "invalid_time_zone"),
    "analytics_trends": (lambda w: {"events": []}, "invalid_arguments"),
    "analytics_funnel": (lambda w: {"steps": ["only_one"]}, "invalid_arguments"),
    "analytics_events_list": (lambda w: {"start": "someday"}, "invalid_range"),
    "analytics_track": (lambda w: {"name": "x", "properties": "{"}, "invalid_properties"),
    "admin_persons": (lambda w: {"status": "sleeping"}, "invalid_arguments"),
    "admin_person_get": (lambda w: {"person": "nobody-zz"}, "person_not_found"),
    "admin_person_suspend": (lambda w: {"person": w.owner.slug, "reason": "myself"}, "cannot_suspend_self"),
    "admin_person_reactivate": (lambda w: {"person": "nobody-zz"}, "person_not_found"),
    "admin_orgs": (lambda w: {"limit": 0}, "invalid_arguments"),
    "admin_audit": (lambda w: {"since": "last week"}, "invalid_arguments"),
    "admin_dead_letters": (lambda w: {"limit": 0}, "invalid_arguments"),
    "admin_dead_letters_redrive": (
        lambda w: {"handler": "tests.poison", "event_id": _missing()},
        "delivery_not_found",
    ),
    "admin_credits_grant": (lambda w: {"credits": 5}, "invalid_arguments"),
}


async def plan_ok(w: World) -> list[tuple[str, Args]]:
    """Every success call, its preparations done."""
    return [(name, w.complete(name, await make(w))) for name, make in OK.items()]


def plan_bad(w: World) -> list[tuple[str, Args, str]]:
    return [(name, w.complete(name, make(w)), code) for name, (make, code) in BAD.items()]


def error_object(result: Any) -> dict[str, Any]:
    """What every client must be able to read from a tool error: no structured content (a
    validating client would check it against the success schema), one text block holding one
    JSON object {code, message, hint?, fields?} (an error may add context of its own, such as
    the `delivery_status` of a message that cannot be retried). `result` is a CallToolResult
    as JSON."""
    assert result.get("isError") is True, result
    assert result.get("structuredContent") is None, result
    content = result["content"]
    assert len(content) == 1 and content[0]["type"] == "text", content
    body = json.loads(content[0]["text"])
    assert isinstance(body, dict), body
    assert isinstance(body["code"], str) and body["code"], body
    assert isinstance(body["message"], str) and body["message"], body
    assert isinstance(body.get("hint", ""), str), body
    for item in body.get("fields", []):
        assert set(item) == {"path", "problem"} and all(isinstance(v, str) for v in item.values()), body
    return body
