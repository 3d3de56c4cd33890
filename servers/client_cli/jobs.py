"""jobs list / get / run: component actions run as jobs, and following them."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from typing import Annotated, Any

import typer
from rich.table import Table

from servers.client_cli.api import Api, connect
from servers.client_cli.errors import EXIT_FAILED, EXIT_NETWORK, EXIT_TIMEOUT, EXIT_USAGE, CliError
from servers.client_cli.options import CursorOpt, JsonOpt, LimitOpt, OrgOpt, ServerOpt, parse_object
from servers.client_cli.output import Output, escape_markup, handled, show_page, when

FINAL_JOB_STATES = frozenset({"succeeded", "failed", "cancelled"})


jobs_app = typer.Typer(help="Run component actions as jobs and follow them.", no_args_is_help=True)


@jobs_app.command("list")
@handled
def jobs_list(
    status: Annotated[
        str | None, typer.Option("--status", help="queued, running, succeeded, failed or cancelled.")
    ] = None,
    component: Annotated[str | None, typer.Option("--component")] = None,
    action: Annotated[str | None, typer.Option("--action")] = None,
    limit: LimitOpt = 20,
    cursor: CursorOpt = None,
    org: OrgOpt = None,
    server: ServerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Jobs of the current context, newest first."""
    out = Output(json_output)
    params = {"status": status, "component": component, "action": action, "limit": limit, "cursor": cursor}
    with connect(server, org) as api:
        page = api.get_json("/v1/jobs", params)
    table = Table()
    for col in ("id", "action", "status", "held", "charged", "created"):
        table.add_column(col, no_wrap=col != "action")
    show_page(out, page, table, _job_row, empty="No jobs.")


def _job_row(j: dict[str, Any]) -> list[str]:
    return [
        j["id"],
        f"{j['component']} {j['action']}",
        _status_text(j["status"]),
        str(j["credits_held"]),
        str(j["credits_captured"]),
        when(j.get("created_at")),
    ]


def _status_text(status: str) -> str:
    color = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}.get(status)
    return f"[{color}]{status}[/]" if color else status


@jobs_app.command("get")
@handled
def jobs_get(
    job_id: Annotated[str, typer.Argument(help="The job id.")],
    org: OrgOpt = None,
    server: ServerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """One job: status, input, output or error, credits."""
    out = Output(json_output)
    job_uuid = _job_uuid(job_id)
    with connect(server, org) as api:
        job = api.get_json(f"/v1/jobs/{job_uuid}")
    if out.json:
        out.document(job)
        return
    _show_job(out, job)


def _job_uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError as exc:
        raise CliError(
            f"{text!r} is not a job id", EXIT_USAGE, hint="job ids are UUIDs; see `atlilith jobs list`"
        ) from exc


def _show_job(out: Output, job: dict[str, Any]) -> None:
    out.say(f"job      {job['id']}")
    out.say(f"action   {job['component']} {job['action']} ({job.get('executor', '')})")
    out.say(f"status   {_status_text(job['status'])}")
    out.say(
        f"credits  quoted {job['credits_quoted']} · held {job['credits_held']} · "
        f"charged {job['credits_captured']} · hold {job.get('hold_status', '')}"
    )
    out.say(
        f"created  {when(job.get('created_at'))}"
        + (f" · finished {when(job['finished_at'])}" if job.get("finished_at") else "")
    )
    if job.get("error"):
        code, message = escape_markup(job["error"]["code"]), escape_markup(job["error"]["message"])
        out.say(f"[red]error[/]    {code}: {message}")
    if job.get("output") is not None:
        out.say("output")
        out.out.print_json(json.dumps(job["output"], default=str))


@jobs_app.command("run")
@handled
def jobs_run(
    component: Annotated[str, typer.Argument(help="e.g. `identity`.")],
    action: Annotated[str, typer.Argument(help="e.g. `resolve-person`; see GET /v1/actions.")],
    input_json: Annotated[
        str, typer.Option("--input", help="The action's input: a JSON object, @file or - (stdin).")
    ] = "{}",
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job until it finishes.")] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="With --wait: give up after this many seconds.")
    ] = 300.0,
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", help="Reuse a key to retry safely; one is generated otherwise."),
    ] = None,
    org: OrgOpt = None,
    server: ServerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Run an action as a job (its price is held now); --wait follows it to the end."""
    out = Output(json_output)
    data = parse_object(input_json, "--input")
    key = idempotency_key or str(uuid.uuid4())
    with connect(server, org) as api:
        try:
            accepted = api.request(
                "POST",
                f"/v1/run/{component}/{action}",
                json_body={"input": data},
                headers={"Idempotency-Key": key},
            ).json()
        except CliError as err:
            err.extra["idempotency_key"] = key
            if err.exit_code == EXIT_NETWORK or (err.status or 0) >= 500:
                # The job may have been accepted before the failure: the same key cannot run it twice.
                err.hint = f"{err.hint + '; ' if err.hint else ''}retry safely with --idempotency-key {key}"
            raise
        if not out.json:
            held = accepted["credits_held"]
            out.say(f"Job {accepted['job_id']} {accepted['status']}, {held} credits held.")
            out.say(f"[dim]Idempotency-Key: {key}  (retry with --idempotency-key {key})[/]")
        job = _wait_for(api, out, accepted["job_id"], timeout, key) if wait else None
    if out.json:
        out.document({"idempotency_key": key, "accepted": accepted, **({"job": job} if job else {})})
    elif job is not None:
        _show_job(out, job)
    if job is not None and job["status"] != "succeeded":
        raise typer.Exit(EXIT_FAILED)


def _wait_for(api: Api, out: Output, job_id: str, timeout: float, key: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    delay = 0.2
    # The spinner goes to stderr, and only for humans: stdout stays one document with --json.
    spinner = out.err.status(f"job {job_id}: queued") if not out.json else contextlib.nullcontext()
    with spinner as status:
        while True:
            job: dict[str, Any] = api.get_json(f"/v1/jobs/{job_id}")
            if job["status"] in FINAL_JOB_STATES:
                return job
            if status is not None:
                status.update(f"job {job_id}: {job['status']}")
            if time.monotonic() >= deadline:
                raise CliError(
                    f"job {job_id} is still {job['status']} after {timeout:g} s",
                    EXIT_TIMEOUT,
                    code="wait_timeout",
                    hint=f"it keeps running on the server; follow it with `atlilith jobs get {job_id}`",
                    extra={"job": job, "idempotency_key": key},
                )
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, 2.0)
