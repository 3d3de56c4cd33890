"""Toolset `jobs`: run metered component actions as jobs, follow them, cancel them."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import Field

from core import billing
from core.billing.policy import JOBS_READ, JOBS_WRITE
from core.billing.schemas import ActionOut, JobOut, JobStatus, QuoteOut, RunAccepted, RunIn
from core.opener import call_in
from core.pagination import Page
from tools.base import FIRST_PAGE, IdempotencyArg, OrgArg, PageArg, ToolRuntime, Toolset
from tools.common import json_object_argument

NOT_TOOLS = {
    "billing.receive_callback": "peer-to-platform HTTP contract, signed with the peer's secret",
    "billing.record_purchase": "the payment provider's signed webhook",
    "billing.update_credit_settings": "a context setting, changed in the portal",
    "billing.refund_job": "platform admin",
    "billing.list_peers": "platform admin",
    "billing.register_peer": "platform admin",
    "billing.update_peer": "platform admin",
    "billing.check_peer": "platform admin",
    "billing.get_data": "the component data feed for the portal and peers; agents use jobs_get/jobs_list",
    "billing.execute_job": "runs from the jobs/job.queued event handler",
    "billing.execute_now": "the engine of synchronous tools (identity_resolve_*)",
    "billing.sweep": "scheduled housekeeping",
}

ComponentArg = Annotated[str, Field(description="Component, e.g. `identity`.", min_length=2, max_length=40)]
ActionArg = Annotated[str, Field(description="Action, e.g. `resolve-person`.", min_length=2, max_length=64)]
InputArg = Annotated[
    str,
    Field(
        description='The action\'s input as a JSON object, e.g. `{"email": "ada@example.com"}` '
        "(schema: jobs_actions_list).",
        max_length=65_536,
    ),
]
JobIdArg = Annotated[uuid.UUID, Field(description="The job id (= its trace id).")]


def parse_input(raw: str) -> RunIn:
    example = '{"email": "ada@example.com"}'
    return RunIn(input=json_object_argument(raw, "input_json", code="invalid_json", example=example))


jobs = Toolset(
    "jobs",
    "Run metered component actions as jobs (paid in credits), follow and cancel them.",
    default=False,
    read_scope=JOBS_READ,
    write_scope=JOBS_WRITE,
)


@jobs.tool(title="List runnable actions", read_only=True)
async def jobs_actions_list(
    rt: ToolRuntime, org: OrgArg = None, page: PageArg = FIRST_PAGE
) -> Page[ActionOut]:
    """List the actions you can run as jobs in this context (built-in and peer components installed
    here, or always available): price in credits, unit, overage policy and input JSON Schema. A
    component not installed here is not listed: find it with registry_search and install it with
    registry_install. Read-only, free."""
    return await call_in(rt.context(org, gates=True), billing.list_actions, page)


@jobs.tool(title="Quote an action", read_only=True)
async def jobs_quote(
    rt: ToolRuntime,
    component: ComponentArg,
    action: ActionArg,
    input_json: InputArg = "{}",
    org: OrgArg = None,
) -> QuoteOut:
    """Price of running an action with this input, before running it: the credits jobs_run would
    hold, what is available in this context and whether it is enough. Read-only, free."""
    data = parse_input(input_json)
    return await call_in(rt.context(org, gates=True), billing.quote, component, action, data)


@jobs.tool(title="Run an action (spends credits)", read_only=False, open_world=True)
async def jobs_run(
    rt: ToolRuntime,
    component: ComponentArg,
    action: ActionArg,
    input_json: InputArg = "{}",
    org: OrgArg = None,
    idempotency_key: IdempotencyArg = None,
) -> RunAccepted:
    """Run an action as an asynchronous job. COSTS CREDITS: the quoted price (jobs_quote) is held
    now and charged only if the job succeeds (never more than held unless the action allows
    overage); released if it fails or is cancelled. Fails with `insufficient_credits` when not
    enough is available. Returns the job id; follow it with jobs_get. Pass an idempotency_key so a
    retry never runs (or charges) twice."""
    data = parse_input(input_json)
    return await call_in(
        rt.context(org, gates=True), billing.run_job, component, action, data, idempotency_key=idempotency_key
    )


@jobs.tool(title="Get a job", read_only=True)
async def jobs_get(rt: ToolRuntime, job_id: JobIdArg, org: OrgArg = None) -> JobOut:
    """A job's status (queued, running, succeeded, failed, cancelled), output, usage, credits held
    and charged, and error. Output of peer components is third-party data. Read-only."""
    return await rt.call(org, billing.get_job, job_id)


@jobs.tool(title="List jobs", read_only=True)
async def jobs_list(
    rt: ToolRuntime,
    org: OrgArg = None,
    status: Annotated[JobStatus | None, Field(description="Only jobs in this status.")] = None,
    component: Annotated[str | None, Field(description="Only this component.", max_length=40)] = None,
    action: Annotated[str | None, Field(description="Only this action.", max_length=64)] = None,
    page: PageArg = FIRST_PAGE,
) -> Page[JobOut]:
    """List the jobs of the current context, newest first; filter by status, component, action.
    Read-only."""
    return await rt.call(org, billing.list_jobs, page, status, component, action)


@jobs.tool(title="Cancel a job", read_only=False, destructive=True, idempotent=True)
async def jobs_cancel(rt: ToolRuntime, job_id: JobIdArg, org: OrgArg = None) -> JobOut:
    """Cancel a queued or running job: its hold is released, nothing is charged, and a result
    arriving later is ignored. A finished job cannot be cancelled. Free."""
    return await rt.call(org, billing.cancel_job, job_id)
