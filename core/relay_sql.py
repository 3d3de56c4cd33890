"""The relay's statements (`core.relay`): claiming and leasing outbox rows and deliveries,
renewing leases and writing outcomes. Each rule of who may claim what, and when an outcome
still counts, is written here once."""

from __future__ import annotations

from sqlalchemy import text

DIED_WHILE_HANDLING = "process died while handling"

# Fan-out only inserts delivery rows, so it claims with a row lock in one short transaction.
CLAIM_OUTBOX = text(
    "SELECT id, name, data, created_at, attempts FROM platform.outbox"
    " WHERE status = 'pending' AND next_attempt_at <= now()"
    " ORDER BY seq LIMIT :limit FOR UPDATE SKIP LOCKED"
)
# Publishing waits on the network, so its batch is leased and the lock let go at once. While
# leased, `next_attempt_at` is the lease's end: the rows come due again exactly when it runs out.
LEASE_OUTBOX = text(
    "UPDATE platform.outbox o SET attempts = o.attempts + 1, claimed_by = :me, claim_token = :token,"
    " lease_until = now() + make_interval(secs => :lease),"
    " next_attempt_at = now() + make_interval(secs => :lease)"
    " FROM (SELECT id FROM platform.outbox WHERE status = 'pending' AND next_attempt_at <= now()"
    "       ORDER BY seq LIMIT :limit FOR UPDATE SKIP LOCKED) due"
    " WHERE o.id = due.id RETURNING o.id, o.seq, o.name, o.data, o.created_at, o.attempts, o.traceparent"
)
MARK_RELAYED = text(
    "UPDATE platform.outbox SET status = :status, relayed_at = now(), last_error = NULL,"
    " claimed_by = NULL, claim_token = NULL, lease_until = NULL, next_attempt_at = now()"
    " WHERE id = ANY(:ids) AND (claim_token IS NULL OR claim_token = :token)"
)
MARK_PUBLISH_FAILED = text(
    "UPDATE platform.outbox SET last_error = :error, next_attempt_at = now() + make_interval(secs => :delay),"
    " claimed_by = NULL, claim_token = NULL, lease_until = NULL"
    " WHERE claim_token = :token AND status = 'pending'"
)
# A whole batch's deliveries in one statement: (event, handler) pairs as two parallel arrays.
FAN_OUT = text(
    "INSERT INTO platform.event_deliveries (event_id, handler)"
    " SELECT e, h FROM unnest(CAST(:event_ids AS uuid[]), CAST(:handlers AS text[])) AS pair (e, h)"
    " ON CONFLICT DO NOTHING"
)
# Claim due deliveries in their own transaction: each one's attempt is counted and its lease
# written before its handler starts, so a process that dies handling it still used up an attempt.
# Each row gets a token of its own. A row still carrying an earlier claim's token had its lease
# run out with no outcome written.
CLAIM_SET = (
    "UPDATE platform.event_deliveries d SET attempts = d.attempts + 1,"
    " last_error = CASE WHEN d.claim_token IS NOT NULL"
    f"   THEN '{DIED_WHILE_HANDLING} (claimed by ' || d.claimed_by || ')' ELSE d.last_error END,"
    " claimed_by = :me, claim_token = gen_random_uuid(), lease_until = now() + make_interval(secs => :lease),"
    " next_attempt_at = now() + make_interval(secs => :lease), updated_at = now()"
)
CLAIMED = (
    "d.event_id, d.handler, d.attempts, d.last_error, d.claim_token,"
    " e.name, e.data, e.created_at, e.traceparent"
)
FIRST_ATTEMPT = "attempts = 0 AND last_error IS NULL"


def due(exclude: str = "") -> str:
    """Which deliveries a claim takes (`:limit` 0 takes none): the first due one, as always;
    when that is the first attempt of a handler with a batch form (`:batched`), up to
    `:limit` - 1 more first attempts of the same handler for the same tenant, which the worker
    may run with it in one transaction (holding one tenant's rows, as one delivery does). A
    retry, or anything else, is claimed alone: a claim held while others run would lose its
    attempt if one of them took the process down. `exclude`: a condition on
    `{t}event_id, {t}handler` that rows must meet."""
    return (
        "first AS (SELECT d.event_id, d.handler, d.attempts, d.last_error,"
        "   coalesce(e.org_id, e.person_id) AS tenant"
        "   FROM platform.event_deliveries d JOIN platform.outbox e ON e.id = d.event_id"
        "   WHERE d.status = 'pending' AND d.next_attempt_at <= now()"
        + exclude.format(t="d.")
        + "   ORDER BY d.next_attempt_at LIMIT LEAST(:limit, 1) FOR UPDATE OF d SKIP LOCKED),"
        " mates AS (SELECT d.event_id, d.handler"
        "   FROM first f, platform.event_deliveries d JOIN platform.outbox e ON e.id = d.event_id"
        "   WHERE f.handler = ANY(CAST(:batched AS text[])) AND f."
        + FIRST_ATTEMPT.replace(" AND ", " AND f.")
        + "     AND d.handler = f.handler AND d.event_id <> f.event_id AND d.status = 'pending'"
        "     AND d.next_attempt_at <= now() AND d."
        + FIRST_ATTEMPT.replace(" AND ", " AND d.")
        + "     AND coalesce(e.org_id, e.person_id) IS NOT DISTINCT FROM f.tenant"
        + exclude.format(t="d.")
        + "   ORDER BY d.next_attempt_at LIMIT GREATEST(:limit - 1, 0) FOR UPDATE OF d SKIP LOCKED),"
        " due AS (SELECT event_id, handler FROM first UNION ALL SELECT event_id, handler FROM mates)"
    )


CLAIM_DELIVERIES = text(
    "WITH "
    + due()
    + " UPDATE"
    + CLAIM_SET.removeprefix("UPDATE")
    + " FROM due JOIN platform.outbox e ON e.id = due.event_id"
    " WHERE d.event_id = due.event_id AND d.handler = due.handler"
    " RETURNING " + CLAIMED
)
RENEW_DELIVERIES = text(
    "UPDATE platform.event_deliveries SET lease_until = now() + make_interval(secs => :lease),"
    " next_attempt_at = now() + make_interval(secs => :lease)"
    " WHERE claim_token = ANY(:tokens) AND status = 'pending'"
)
RENEW_OUTBOX = text(
    "UPDATE platform.outbox SET lease_until = now() + make_interval(secs => :lease),"
    " next_attempt_at = now() + make_interval(secs => :lease)"
    " WHERE claim_token = ANY(:tokens) AND status = 'pending'"
)
# Outcomes of a leased delivery: written only while the claim is still this run's (`token`), in
# the transaction that committed the handler's work, so an expired run can never commit twice.
RELEASE = (
    " claimed_by = NULL, claim_token = NULL, lease_until = NULL, updated_at = now()"
    " WHERE event_id = :event_id AND handler = :handler AND claim_token = :token AND status = 'pending'"
)
DONE_SET = (
    "UPDATE platform.event_deliveries SET status = 'done', last_error = NULL, next_attempt_at = now(),"
    + RELEASE
)
MARK_DONE = text(DONE_SET)
# Deliveries' `done` (one, or a batch's: parallel arrays of keys and tokens, each written only
# while its claim is still this run's) and the worker's next claims (up to :limit; 0 claims none)
# in one statement: `MARK_DONE`, then `CLAIM_DELIVERIES`, the same rows and rules, committed
# together. Both run on one snapshot, in which the rows just marked still read pending and are
# locked by this very statement (SKIP LOCKED does not skip a lock of one's own): the claim
# excludes them by key. `done` below the number of keys means a lease was lost, and the caller
# rolls all of it back.
DONE_AND_CLAIM = text(
    "WITH mine AS (SELECT * FROM unnest(CAST(:event_ids AS uuid[]), CAST(:handlers AS text[]),"
    "   CAST(:tokens AS uuid[])) AS k (event_id, handler, token)),"
    " done AS (UPDATE platform.event_deliveries d SET status = 'done', last_error = NULL,"
    "   next_attempt_at = now(), claimed_by = NULL, claim_token = NULL, lease_until = NULL,"
    "   updated_at = now()"
    "   FROM mine WHERE d.event_id = mine.event_id AND d.handler = mine.handler"
    "   AND d.claim_token = mine.token AND d.status = 'pending' RETURNING 1),"
    " " + due(" AND ({t}event_id, {t}handler) NOT IN (SELECT event_id, handler FROM mine)") + ","
    " claimed AS (" + CLAIM_SET + " FROM due JOIN platform.outbox e ON e.id = due.event_id"
    "   WHERE d.event_id = due.event_id AND d.handler = due.handler RETURNING " + CLAIMED + ")"
    " SELECT (SELECT count(*) FROM done) AS done, claimed.* FROM (SELECT) AS one LEFT JOIN claimed ON true"
)
MARK_FAILED = text(
    "UPDATE platform.event_deliveries SET status = :status, last_error = :error,"
    " next_attempt_at = now() + make_interval(secs => :delay), attempts = :attempts," + RELEASE
)
# When the next pending row comes due (a retry's backoff, a lease running out), in seconds:
# of either table, or of the deliveries alone (what a relay worker can claim; outbox rows wait
# for the relay's next pump).
DELIVERY_DUE = "(SELECT min(next_attempt_at) FROM platform.event_deliveries WHERE status = 'pending')"
NEXT_DUE = text(
    f"SELECT EXTRACT(EPOCH FROM LEAST({DELIVERY_DUE},"
    " (SELECT min(next_attempt_at) FROM platform.outbox WHERE status = 'pending')) - now())"
)
NEXT_DELIVERY_DUE = text(f"SELECT EXTRACT(EPOCH FROM {DELIVERY_DUE} - now())")
