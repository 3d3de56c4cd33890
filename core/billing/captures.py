"""What settling a job writes to the ledger: its charge captured (within its hold, or with the
overage its action allows), the rest of the hold released, spent credits taken from the
soonest-expiring lots. Every entry goes through `ledger.post`, or, for a charge within the hold,
through one statement that writes exactly what those posts would (`settle_held`; for several jobs
of one account, `settle_held_many`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import DateTime, bindparam, inspect, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.types import Uuid

from core.billing.ledger import available, lock_account, low_balance_alert, post
from core.billing.models import CreditAccount, Job
from core.db import DriverStatement, dump_json
from core.uow import UnitOfWork


def capped_charge(acct: CreditAccount, job: Job, charge: int, overage: str) -> int:
    """What a job is charged for `charge`: never more than held, unless the action allows
    overage, and then only what is available besides."""
    held = job.credits_held
    charge = max(0, charge)
    if charge > held:
        charge = held + min(charge - held, available(acct)) if overage == "allow" else held
    return charge


async def settle(
    uow: UnitOfWork, acct: CreditAccount, job: Job, *, charge: int, overage: str, memo: str | None
) -> int:
    """Capture `charge` from the job's hold and release the rest. More than held only when the
    action allows overage, and then only what is available. Returns the credits captured."""
    held = job.credits_held
    charge = capped_charge(acct, job, charge, overage)
    from_hold = min(charge, held)
    if charge > 0:
        await post(
            uow,
            acct,
            kind="capture",
            amount=charge,
            balance_delta=-charge,
            held_delta=-from_hold,
            key=f"capture:{job.id}",
            person_id=job.person_id,
            job_id=job.id,
            memo=memo,
        )
        await _spend_lots(uow, acct, charge)
    if held - from_hold > 0:
        await post(
            uow,
            acct,
            kind="release",
            amount=held - from_hold,
            balance_delta=0,
            held_delta=-(held - from_hold),
            key=f"release:{job.id}",
            person_id=job.person_id,
            job_id=job.id,
            memo="unused part of the hold",
        )
    return charge


# A job's settlement in ONE statement when its charge is within its hold (`settle_held`): the
# account UPDATE takes the row's lock (so it is held from here to commit only), the capture and
# the release of the rest are written with the totals `post` would give each, and the soonest-
# expiring lots are spent as `_SPEND_LOTS` does. Nothing is written (no row) when an entry of
# the job exists already or the totals would not allow it: `settle` then decides, as before.
# The soonest-expiring lots of the settled account (`acct`) spent for `:charge`, as `_SPEND_LOTS`
# spends them: the CTEs `lots` and `spent` of a settling statement.
_SPEND_LOTS_CTES = """, lots AS (
      SELECT id, remaining,
             CAST(sum(remaining) OVER (ORDER BY expires_at, id) AS bigint) - remaining AS before
        FROM (SELECT id, remaining, expires_at FROM billing.credit_lots
               WHERE account_id = (SELECT id FROM acct) AND remaining > 0
               ORDER BY expires_at, id FOR UPDATE) AS open_lots
    ), spent AS (
      UPDATE billing.credit_lots c
         SET remaining = c.remaining - LEAST(lots.remaining, CAST(:charge AS bigint) - lots.before)
        FROM lots WHERE c.id = lots.id AND lots.before < CAST(:charge AS bigint)"""
_SETTLE_HELD = text(
    f"""
    WITH acct AS (
      UPDATE billing.accounts a SET balance = a.balance - :charge, held = a.held - :held,
             updated_at = now()
       WHERE a.tenant_id = :tenant AND a.held >= :held
         AND NOT EXISTS (SELECT 1 FROM billing.ledger l
                          WHERE l.account_id = a.id AND l.key IN (:capture_key, :release_key))
      RETURNING a.id, a.person_id, a.org_id, a.balance, a.held, a.low_balance_threshold,
                a.low_balance_alerted
    ), entries AS (
      INSERT INTO billing.ledger (id, person_id, org_id, account_id, kind, amount, balance_delta,
                                  held_delta, balance_after, held_after, key, job_id, memo)
      SELECT e.id, :actor, acct.org_id, acct.id, e.kind, e.amount, e.balance_delta, e.held_delta,
             acct.balance, acct.held + e.still_held, e.key, :job_id, e.memo
        FROM acct CROSS JOIN (VALUES
               (1, CAST(:capture_id AS uuid), 'capture', CAST(:charge AS bigint),
                -CAST(:charge AS bigint), -CAST(:charge AS bigint), CAST(:rest AS bigint),
                CAST(:capture_key AS text), CAST(:memo AS text)),
               (2, CAST(:release_id AS uuid), 'release', CAST(:rest AS bigint), 0, -CAST(:rest AS bigint),
                0, CAST(:release_key AS text), 'unused part of the hold')
             ) AS e (n, id, kind, amount, balance_delta, held_delta, still_held, key, memo)
       WHERE e.amount > 0 ORDER BY e.n
      RETURNING id
    ){_SPEND_LOTS_CTES}
    ), job AS (
      UPDATE billing.jobs SET status = :job_status, hold_status = :job_hold_status,
             credits_captured = :job_credits_captured, output = :job_output, usage = :job_usage,
             attempts = :job_attempts, started_at = :job_started_at, deadline_at = :job_deadline_at,
             finished_at = :job_finished_at, updated_at = now()
       WHERE id = :job_id
    )
    SELECT acct.*, (SELECT count(*) FROM entries) AS written FROM acct
    """
).bindparams(
    bindparam("job_id", type_=Uuid()),
    bindparam("job_output", type_=JSONB()),
    bindparam("job_usage", type_=JSONB()),
    bindparam("job_started_at", type_=DateTime(timezone=True)),
    bindparam("job_deadline_at", type_=DateTime(timezone=True)),
    bindparam("job_finished_at", type_=DateTime(timezone=True)),
)
_SETTLE_HELD_ON_DRIVER = DriverStatement.of(_SETTLE_HELD)
# The job's columns a settlement writes (its start too, for a job run inline): `_SETTLE_HELD`
# writes them beside the ledger, in place of the job's own UPDATE.
_SETTLED_JOB_COLUMNS = (
    "status",
    "hold_status",
    "credits_captured",
    "output",
    "usage",
    "attempts",
    "started_at",
    "deadline_at",
    "finished_at",
)
_SETTLED = frozenset(_SETTLED_JOB_COLUMNS)


async def settle_held(uow: UnitOfWork, job: Job, *, charge: int, memo: str | None) -> bool:
    """`settle` for a charge within the job's hold (0 <= charge <= held), without loading the
    account: the same entries, totals, lots and low-balance alert. False when nothing was
    written (an entry of this job exists, or the totals refuse it): call `settle` then.
    Either way the job's row is written as the object says (its settled columns, in the same
    statement: one round trip and no ORM flush fewer)."""
    held, rest = job.credits_held, job.credits_held - charge
    session = uow.session
    # The attributes set since the job was loaded: every one that changed, and maybe one set to
    # the value it had (then flushed first, as any other change), without each one's history.
    pending = inspect(job).committed_state.keys()
    others = session.new or session.deleted or any(o is not job for o in session.dirty)
    if held == 0 or others or not pending <= _SETTLED:
        # Anything else goes first, as the flush before the statement wrote it.
        await session.flush()
        if held == 0:
            return True
    params = {f"job_{c}": getattr(job, c) for c in _SETTLED_JOB_COLUMNS} | {
        "charge": charge,
        "held": held,
        "rest": rest,
        "tenant": job.org_id or job.person_id,
        "actor": job.person_id,
        "job_id": job.id,
        "memo": memo,
        "capture_id": uuid.uuid4(),
        "release_id": uuid.uuid4(),
        "capture_key": f"capture:{job.id}",
        "release_key": f"release:{job.id}",
    }
    # On the driver's connection (no ORM or SQLAlchemy execution around it), not flushed: the
    # job's UPDATE is in the statement. The account's row is read by attribute, as the ORM's.
    records = await uow.fetch(_SETTLE_HELD_ON_DRIVER.sql, *_SETTLE_HELD_ON_DRIVER.args(params), flush=False)
    row: Any = SimpleNamespace(**dict(records[0].items())) if records else None
    # Written: nothing of the job is left for a flush, and `updated_at` is the database's now.
    for name in _SETTLED_JOB_COLUMNS:
        set_committed_value(job, name, params[f"job_{name}"])
    session.expire(job, ["updated_at"])
    if row is None:
        return False
    # The alert as `post` checks it after each entry: the capture's totals, then the release's.
    alerted = row.low_balance_alerted
    for held_after in ([row.held + rest] if charge > 0 else []) + ([row.held] if rest > 0 else []):
        alerted = low_balance_alert(uow, row, row.balance, held_after, alerted)
    if alerted != row.low_balance_alerted:
        await uow.session.execute(
            update(CreditAccount).where(CreditAccount.id == row.id).values(low_balance_alerted=alerted)
        )
    return True


async def release(uow: UnitOfWork, acct: CreditAccount, job: Job, *, memo: str) -> None:
    if job.credits_held == 0:
        return
    await post(
        uow,
        acct,
        kind="release",
        amount=job.credits_held,
        balance_delta=0,
        held_delta=-job.credits_held,
        key=f"release:{job.id}",
        person_id=job.person_id,
        job_id=job.id,
        memo=memo,
    )


# Spending in one statement: the account's lots with credits left, soonest-expiring first (locked;
# the account row is locked already), each giving what the ones before it did not cover. No lots
# (most accounts) = one index probe and nothing loaded.
_SPEND_LOTS = text(
    """
    WITH lots AS (
      SELECT id, remaining,
             CAST(sum(remaining) OVER (ORDER BY expires_at, id) AS bigint) - remaining AS before
        FROM (SELECT id, remaining, expires_at FROM billing.credit_lots
               WHERE account_id = :account_id AND remaining > 0
               ORDER BY expires_at, id FOR UPDATE) AS open_lots
    )
    UPDATE billing.credit_lots c
       SET remaining = c.remaining - LEAST(lots.remaining, CAST(:credits AS bigint) - lots.before)
      FROM lots WHERE c.id = lots.id AND lots.before < CAST(:credits AS bigint)
    """
)


async def _spend_lots(uow: UnitOfWork, acct: CreditAccount, credits: int) -> None:
    """Spent credits come out of the soonest-expiring lots first (the customer's best deal)."""
    await uow.session.execute(_SPEND_LOTS, {"account_id": acct.id, "credits": credits})


@dataclass(frozen=True)
class HeldCapture:
    """A job's charge within its hold, decided (the job's outcome set on it), not yet written."""

    job: Job
    charge: int
    memo: str | None
    overage: str


# Several jobs' settlements on one account in ONE statement (`settle_held_many`): what
# `_SETTLE_HELD` writes for each of them, one after the other in the given order, with one
# UPDATE of the account for the sums. Each job's totals after it are the account's final ones
# plus what the jobs after it take (running sums in the jobs' order), so every entry carries the
# totals it would have carried alone; spending the soonest-expiring lots for the sum spends them
# as the jobs would have one by one. The account stays locked from this statement to commit only:
# settled one statement per job, it stayed locked over every one of them (a round trip each),
# while every run of the context waited to hold. Nothing is written to the ledger (no row) when
# an entry of one of the jobs exists or the totals would not allow the sum; the jobs' rows are
# written either way, as `_SETTLE_HELD` writes its job's.
_SETTLE_HELD_MANY = text(
    f"""
    WITH src AS (
      SELECT * FROM unnest(CAST(:job_ids AS uuid[]), CAST(:actors AS uuid[]), CAST(:charges AS bigint[]),
                           CAST(:helds AS bigint[]), CAST(:memos AS text[]), CAST(:capture_ids AS uuid[]),
                           CAST(:release_ids AS uuid[]))
             WITH ORDINALITY AS s (job_id, actor, charge, held, memo, capture_id, release_id, n)
    ), acct AS (
      UPDATE billing.accounts a SET balance = a.balance - :charge, held = a.held - :held,
             updated_at = now()
       WHERE a.tenant_id = :tenant AND a.held >= :held
         AND NOT EXISTS (SELECT 1 FROM billing.ledger l
                          WHERE l.account_id = a.id AND l.key = ANY(CAST(:keys AS text[])))
      RETURNING a.id, a.person_id, a.org_id, a.balance, a.held, a.low_balance_threshold,
                a.low_balance_alerted
    ), settled AS (
      SELECT s.*, acct.id AS account_id, acct.org_id,
             acct.balance + CAST(:charge AS bigint) - CAST(sum(s.charge) OVER w AS bigint) AS balance_after,
             acct.held + CAST(:held AS bigint) - CAST(sum(s.held) OVER w AS bigint) AS held_after
        FROM src s CROSS JOIN acct WINDOW w AS (ORDER BY s.n)
    ), entries AS (
      INSERT INTO billing.ledger (id, person_id, org_id, account_id, kind, amount, balance_delta,
                                  held_delta, balance_after, held_after, key, job_id, memo)
      SELECT e.id, f.actor, f.org_id, f.account_id, e.kind, e.amount, e.balance_delta, e.held_delta,
             f.balance_after, f.held_after + e.still_held, e.key, f.job_id, e.memo
        FROM settled f CROSS JOIN LATERAL (VALUES
               (1, f.capture_id, 'capture', f.charge, -f.charge, -f.charge, f.held - f.charge,
                'capture:' || CAST(f.job_id AS text), f.memo),
               (2, f.release_id, 'release', f.held - f.charge, CAST(0 AS bigint), f.charge - f.held,
                CAST(0 AS bigint), 'release:' || CAST(f.job_id AS text), 'unused part of the hold')
             ) AS e (k, id, kind, amount, balance_delta, held_delta, still_held, key, memo)
       WHERE e.amount > 0 ORDER BY f.n, e.k
      RETURNING id
    ){_SPEND_LOTS_CTES}
    ), job AS (
      UPDATE billing.jobs j SET status = u.status, hold_status = u.hold_status,
             credits_captured = u.credits_captured, output = CAST(u.output AS jsonb),
             usage = CAST(u.usage AS jsonb), attempts = u.attempts, started_at = u.started_at,
             deadline_at = u.deadline_at, finished_at = u.finished_at, updated_at = now()
        FROM unnest(CAST(:job_ids AS uuid[]), CAST(:job_status AS text[]), CAST(:job_hold_status AS text[]),
                    CAST(:job_credits_captured AS bigint[]), CAST(:job_output AS text[]),
                    CAST(:job_usage AS text[]), CAST(:job_attempts AS integer[]),
                    CAST(:job_started_at AS timestamptz[]), CAST(:job_deadline_at AS timestamptz[]),
                    CAST(:job_finished_at AS timestamptz[]))
             AS u (id, status, hold_status, credits_captured, output, usage, attempts, started_at,
                   deadline_at, finished_at)
       WHERE j.id = u.id
    )
    SELECT acct.*, (SELECT count(*) FROM entries) AS written FROM acct
    """
)
_SETTLE_HELD_MANY_ON_DRIVER = DriverStatement.of(_SETTLE_HELD_MANY)
_JSON_COLUMNS = frozenset({"output", "usage"})


def _bound(column: str, value: Any) -> Any:
    """A job's column as `_SETTLE_HELD_MANY` binds it: JSON as the engine writes it, in text."""
    return dump_json(value) if column in _JSON_COLUMNS and value is not None else value


async def settle_held_many(uow: UnitOfWork, captures: Sequence[HeldCapture]) -> None:
    """Settle jobs of ONE account whose charges are within their holds, in this order, writing
    exactly what `settle_held` (or, where it cannot, `settle`) writes for each one by one: in one
    statement for all of them when it can (`_SETTLE_HELD_MANY`), else one by one."""
    if len(captures) > 1 and await _settle_held_together(uow, captures):
        return
    for c in captures:
        if not await settle_held(uow, c.job, charge=c.charge, memo=c.memo):
            acct = await lock_account(uow, c.job.person_id, c.job.org_id)
            await settle(uow, acct, c.job, charge=c.charge, overage=c.overage, memo=c.memo)


async def _settle_held_together(uow: UnitOfWork, captures: Sequence[HeldCapture]) -> bool:
    jobs = [c.job for c in captures]
    session = uow.session
    batch = set(map(id, jobs))
    others = session.new or session.deleted or any(id(o) not in batch for o in session.dirty)
    if others or not all(inspect(j).committed_state.keys() <= _SETTLED for j in jobs):
        await session.flush()
    first = jobs[0]
    params: dict[str, Any] = {
        f"job_{c}": [_bound(c, getattr(j, c)) for j in jobs] for c in _SETTLED_JOB_COLUMNS
    } | {
        "job_ids": [j.id for j in jobs],
        "actors": [j.person_id for j in jobs],
        "charges": [c.charge for c in captures],
        "helds": [j.credits_held for j in jobs],
        "memos": [c.memo for c in captures],
        "capture_ids": [uuid.uuid4() for _ in jobs],
        "release_ids": [uuid.uuid4() for _ in jobs],
        "keys": [f"{kind}:{j.id}" for j in jobs for kind in ("capture", "release")],
        "charge": sum(c.charge for c in captures),
        "held": sum(j.credits_held for j in jobs),
        "tenant": first.org_id or first.person_id,
    }
    records = await uow.fetch(
        _SETTLE_HELD_MANY_ON_DRIVER.sql, *_SETTLE_HELD_MANY_ON_DRIVER.args(params), flush=False
    )
    row: Any = SimpleNamespace(**dict(records[0].items())) if records else None
    for job in jobs:
        for name in _SETTLED_JOB_COLUMNS:
            set_committed_value(job, name, getattr(job, name))
        session.expire(job, ["updated_at"])
    if row is None:
        return False
    # The alert as `post` checks it after each entry, job after job: the totals after each job
    # are the final ones plus what the jobs after it take.
    alerted = row.low_balance_alerted
    balance, held = row.balance + params["charge"], row.held + params["held"]
    for c in captures:
        rest = c.job.credits_held - c.charge
        balance, held = balance - c.charge, held - c.job.credits_held
        for held_after in ([held + rest] if c.charge > 0 else []) + ([held] if rest > 0 else []):
            alerted = low_balance_alert(uow, row, balance, held_after, alerted)
    if alerted != row.low_balance_alerted:
        await uow.session.execute(
            update(CreditAccount).where(CreditAccount.id == row.id).values(low_balance_alerted=alerted)
        )
    return True
