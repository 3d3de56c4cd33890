"""Billing: credit accounts and their ledger, and jobs — every component action runs as a job,
held, executed (in-process or by a peer service), then captured or released.

A run quotes the action, holds its price on the context's account, records the job and emits
`jobs/job.queued` — all in the caller's transaction (`runs`). The `jobs/job.queued` handler then
runs the job (`execution`): a built-in action in-process (its writes, the capture and the job's
success commit together: no charge without a result), or a peer component over HTTP, which
reports back at the signed callback. Failures, cancellations and expired deadlines release the
hold (`settlement`).
"""

from core.billing.catalogue import get_data, list_actions, quote
from core.billing.credits import get_balance, list_ledger, update_credit_settings
from core.billing.execution import execute_job, receive_callback
from core.billing.grants import grant_credits, refund_job
from core.billing.jobs import cancel_job, get_job, list_jobs, sweep
from core.billing.peer_admin import check_peer, list_peers, register_peer, update_peer
from core.billing.purchases import record_purchase
from core.billing.runs import execute_now, run_job

__all__ = [
    "cancel_job",
    "check_peer",
    "execute_job",
    "execute_now",
    "get_balance",
    "get_data",
    "get_job",
    "grant_credits",
    "list_actions",
    "list_jobs",
    "list_ledger",
    "list_peers",
    "quote",
    "receive_callback",
    "record_purchase",
    "refund_job",
    "register_peer",
    "run_job",
    "sweep",
    "update_credit_settings",
    "update_peer",
]
