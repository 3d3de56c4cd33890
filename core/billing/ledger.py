"""The credit ledger's primitives. Every change of an account is one `post`: the account row is
locked first, the entry is inserted (idempotent on its key), and the running totals move in the
same transaction — so `balance`/`available` always equal what the ledger implies, reads never
sum it, and concurrent holds serialize on the account row (the CHECKs are the last word)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import ClassVar, Protocol

from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.types import Uuid

from core.billing.models import CreditAccount, CreditLot, LedgerEntry
from core.errors import DomainError, constraint_error
from core.observability import get_logger
from core.outbox import EVENT_COLUMNS, outbox_table
from core.scoping import owned_by
from core.uow import UnitOfWork

log = get_logger("atlilith.billing.ledger")


class PaymentRequired(DomainError):
    status: ClassVar[int] = 402
    default_code: ClassVar[str] = "insufficient_credits"
    title: ClassVar[str] = "Payment required"


def insufficient(needed: int, available: int) -> PaymentRequired:
    return PaymentRequired(
        f"this needs {needed} credits; {available} are available in this context",
        code="insufficient_credits",
        hint="buy or be granted credits, or wait for running jobs to finish ([[billing.get_balance]] "
        "lists open holds; [[billing.cancel_job]] releases one)",
        extra={"required": needed, "available": available},
    )


# A race that slips past the checks below still gets a precise answer.
constraint_error(
    "ck_accounts_available_not_negative",
    PaymentRequired(
        "not enough credits are available in this context",
        code="insufficient_credits",
        hint="check [[billing.get_balance]] and try again",
    ),
)


def available(acct: CreditAccount) -> int:
    return acct.balance - acct.held


async def lock_account(uow: UnitOfWork, person_id: uuid.UUID, org_id: uuid.UUID | None) -> CreditAccount:
    """The context's account, locked for this transaction (created on first use)."""
    tenant = org_id or person_id
    stmt = (
        select(CreditAccount)
        .where(owned_by(CreditAccount, tenant))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    acct = (await uow.session.execute(stmt)).scalar_one_or_none()
    if acct is None:
        await uow.session.execute(
            insert(CreditAccount)
            .values(id=uuid.uuid4(), person_id=person_id, org_id=org_id)
            .on_conflict_do_nothing(index_elements=["tenant_id"])
        )
        acct = (await uow.session.execute(stmt)).scalar_one()
    return acct


async def read_account(uow: UnitOfWork, tenant_id: uuid.UUID) -> CreditAccount | None:
    return (
        await uow.session.execute(
            select(CreditAccount)
            .where(owned_by(CreditAccount, tenant_id))
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


class AccountTotals(Protocol):
    """An account's identity, threshold and alert flag, as the ORM row or a statement has them."""

    id: uuid.UUID
    person_id: uuid.UUID
    org_id: uuid.UUID | None
    low_balance_threshold: int | None
    low_balance_alerted: bool


def threshold(uow: UnitOfWork, acct: AccountTotals | None) -> int:
    if acct is not None and acct.low_balance_threshold is not None:
        return acct.low_balance_threshold
    return uow.db.settings.billing_low_balance_threshold


def check_low_balance(uow: UnitOfWork, acct: CreditAccount) -> None:
    """Fire `billing/credits.low_balance` once when available falls under the threshold; re-arm
    when it is back at or above it."""
    acct.low_balance_alerted = low_balance_alert(uow, acct, acct.balance, acct.held, acct.low_balance_alerted)


def low_balance_alert(uow: UnitOfWork, acct: AccountTotals, balance: int, held: int, alerted: bool) -> bool:
    """The rule of `check_low_balance` for totals (`balance`, `held`) with the flag at `alerted`:
    emits the alert when it fires; returns what the flag becomes."""
    limit = threshold(uow, acct)
    avail = balance - held
    if avail < limit and not alerted:
        uow.emit(
            "billing/credits.low_balance",
            {"account_id": acct.id, "available": avail, "balance": balance, "threshold": limit},
            person_id=acct.person_id,
            org_id=acct.org_id,
        )
        log.info("low_balance", available=avail, threshold=limit)
        return True
    return alerted and avail < limit


async def post(
    uow: UnitOfWork,
    acct: CreditAccount,
    *,
    kind: str,
    amount: int,
    balance_delta: int,
    held_delta: int,
    key: str,
    person_id: uuid.UUID,
    job_id: uuid.UUID | None = None,
    memo: str | None = None,
    expires_at: dt.datetime | None = None,
) -> tuple[LedgerEntry, bool]:
    """Write one entry and move the account's totals. `acct` must be locked (lock_account).
    Returns (entry, created); an entry whose key exists is returned unchanged, totals untouched."""
    new_balance, new_held = acct.balance + balance_delta, acct.held + held_delta
    if new_held < 0 or new_balance - new_held < 0:
        raise insufficient(amount, available(acct))
    entry = (
        await uow.session.execute(
            insert(LedgerEntry)
            .values(
                id=uuid.uuid4(),
                person_id=person_id,
                org_id=acct.org_id,
                account_id=acct.id,
                kind=kind,
                amount=amount,
                balance_delta=balance_delta,
                held_delta=held_delta,
                balance_after=new_balance,
                held_after=new_held,
                key=key,
                job_id=job_id,
                memo=memo,
                expires_at=expires_at,
            )
            .on_conflict_do_nothing(index_elements=["account_id", "key"])
            .returning(LedgerEntry)
        )
    ).scalar_one_or_none()
    if entry is None:
        existing = (
            await uow.session.execute(
                select(LedgerEntry).where(LedgerEntry.account_id == acct.id, LedgerEntry.key == key)
            )
        ).scalar_one()
        return existing, False
    acct.balance, acct.held = new_balance, new_held
    check_low_balance(uow, acct)
    await uow.session.flush()
    return entry, True


async def credit(
    uow: UnitOfWork,
    acct: CreditAccount,
    *,
    kind: str,
    credits: int,
    key: str,
    person_id: uuid.UUID,
    memo: str | None = None,
    expires_at: dt.datetime | None = None,
    job_id: uuid.UUID | None = None,
) -> tuple[LedgerEntry, bool]:
    """A grant, purchase or refund. An expiring grant also opens a lot the sweep can expire."""
    entry, created = await post(
        uow,
        acct,
        kind=kind,
        amount=credits,
        balance_delta=credits,
        held_delta=0,
        key=key,
        person_id=person_id,
        memo=memo,
        expires_at=expires_at,
        job_id=job_id,
    )
    if created and expires_at is not None:
        uow.session.add(
            CreditLot(
                id=uuid.uuid4(),
                person_id=acct.person_id,
                org_id=acct.org_id,
                account_id=acct.id,
                entry_id=entry.id,
                amount=credits,
                remaining=credits,
                expires_at=expires_at,
            )
        )
        await uow.session.flush()
    return entry, created


async def grant_once(
    uow: UnitOfWork,
    person_id: uuid.UUID,
    org_id: uuid.UUID | None,
    credits: int,
    *,
    reason: str,
    memo: str,
) -> bool:
    """System: grant a context credits once per `reason` (the ledger key makes a second call, or
    a redelivered event, change nothing). True when this call granted them."""
    if credits <= 0:
        return False
    acct = await lock_account(uow, person_id, org_id)
    entry, created = await credit(
        uow,
        acct,
        kind="grant",
        credits=credits,
        key=f"{reason}:{org_id or person_id}",
        person_id=person_id,
        memo=memo,
    )
    if created:
        uow.emit(
            "billing/credits.granted",
            {"entry_id": entry.id, "credits": credits, "expires_at": None, "reason": reason},
            person_id=person_id,
            org_id=org_id,
        )
    return created


# The hot path of every run, in one statement: the conditional UPDATE takes the account row's
# lock and re-checks `available` on the latest committed version (so concurrent holds of one
# context serialize here and never overdraw), and the ledger entry is written with the totals
# it produced. The lock is then held only until the run's commit.
_HOLD = text(
    """
    WITH acct AS (
      UPDATE billing.accounts SET held = held + :amount, updated_at = now()
       WHERE tenant_id = :tenant AND balance - held >= :amount
      RETURNING id, person_id, org_id, balance, held, low_balance_threshold, low_balance_alerted
    ), entry AS (
      INSERT INTO billing.ledger (id, person_id, org_id, account_id, kind, amount, balance_delta,
                                  held_delta, balance_after, held_after, key, job_id)
      SELECT :entry_id, :actor, acct.org_id, acct.id, 'hold', :amount, 0, :amount, acct.balance,
             acct.held, :key, :job_id FROM acct
      RETURNING id
    )
    SELECT acct.*, (SELECT count(*) FROM entry) AS written FROM acct
    """
)


# A run's job row, and its `jobs/job.queued` outbox row as `uow.event_row` made it: a trace id
# another job already has inserts nothing, and then nothing is emitted either.
_JOB_CTE = """
    job AS (
      INSERT INTO billing.jobs (id, component, action, executor, peer_id, status, input,
                                credits_quoted, credits_held, hold_status, deadline_at, person_id,
                                org_id)
      VALUES (:job_id, :component, :action, :executor, :peer_id, 'queued', :input, :amount,
              :amount, 'open', :deadline_at, :actor, :org_id)
      ON CONFLICT (id) DO NOTHING
      RETURNING {returning}
    )"""
_EVENT_CTE = """
    event AS (
      INSERT INTO platform.outbox (id, name, data, person_id, org_id, trace_id, traceparent)
      SELECT :outbox_id, :outbox_name, :outbox_data, :outbox_person_id, :outbox_org_id,
             :outbox_trace_id, :outbox_traceparent FROM job
    )"""
# The job, its hold and its event in ONE statement (`runs._enqueue_job`, a run executed at
# once): the job first (nothing else when it was not inserted: the caller retries with a fresh
# id), then the hold exactly as `_HOLD`, for that job. The account's totals come back beside the
# job (NULL when nothing could be held: the 402 path, which rolls all of it back).
_ACCT_AND_ENTRY_CTES = """
    acct AS (
      UPDATE billing.accounts SET held = held + :amount, updated_at = now()
       WHERE tenant_id = :tenant AND balance - held >= :amount AND EXISTS (SELECT 1 FROM job)
      RETURNING id, org_id, balance, held, low_balance_threshold, low_balance_alerted
    ), entry AS (
      INSERT INTO billing.ledger (id, person_id, org_id, account_id, kind, amount, balance_delta,
                                  held_delta, balance_after, held_after, key, job_id)
      SELECT :entry_id, :actor, acct.org_id, acct.id, 'hold', :amount, 0, :amount, acct.balance,
             acct.held, 'hold:' || CAST(:job_id AS text), :job_id FROM acct
      RETURNING id
    )"""
_JOB_AND_HOLD_PARAMS = (
    bindparam("input", type_=JSONB),
    bindparam("peer_id", type_=Uuid()),
    bindparam("org_id", type_=Uuid()),
    bindparam("job_id", type_=Uuid()),
    # The event's values bound as `core.outbox.EVENT_CTE` binds them (that CTE inserts
    # unconditionally; this one only beside an inserted job).
    *(bindparam(f"outbox_{c}", type_=outbox_table.c[c].type) for c in EVENT_COLUMNS),
)
JOB_AND_HOLD = text(
    f"WITH {_JOB_CTE.format(returning='*')}, {_ACCT_AND_ENTRY_CTES}, {_EVENT_CTE}"
    " SELECT job.*, acct.balance AS acct_balance, acct.held AS acct_held,"
    " acct.low_balance_threshold AS acct_threshold, acct.low_balance_alerted AS acct_alerted"
    " FROM job LEFT JOIN acct ON true"
).bindparams(*_JOB_AND_HOLD_PARAMS)
# A queued run's job and event (`runs._enqueue`); its hold goes with the transaction's COMMIT
# (`hold_clear_sql`).
JOB_QUEUED = text(f"WITH {_JOB_CTE.format(returning='id')}, {_EVENT_CTE} SELECT id FROM job").bindparams(
    *_JOB_AND_HOLD_PARAMS
)


def hold_clear_sql(
    *,
    tenant: uuid.UUID,
    credits: int,
    threshold: int,
    entry_id: uuid.UUID,
    actor: uuid.UUID,
    job_id: uuid.UUID,
) -> str:
    """The quick path of `hold` as one statement with its values written in (for
    `UnitOfWork.finish_with`, a simple query): `billing.hold_clear` holds exactly as `_HOLD`
    does when the account has the credits and the hold fires no low-balance alert (`held`),
    else refuses and writes nothing, and `hold` runs. `threshold`: the default one, for an
    account without its own. Only UUIDs and integers, each re-made from its type, are written."""
    tenant_id, entry, person, job = (str(uuid.UUID(str(v))) for v in (tenant, entry_id, actor, job_id))
    values = f"'{tenant_id}', {int(credits)}, {int(threshold)}, '{entry}', '{person}', '{job}'"
    return f"SELECT billing.hold_clear({values})"


async def hold(
    uow: UnitOfWork, *, person_id: uuid.UUID, org_id: uuid.UUID | None, job_id: uuid.UUID, credits: int
) -> None:
    """Hold a job's price on the context's account (created on first use), or refuse with 402."""
    if credits == 0:
        return
    params = {
        "amount": credits,
        "tenant": org_id or person_id,
        "entry_id": uuid.uuid4(),
        "actor": person_id,
        "key": f"hold:{job_id}",
        "job_id": job_id,
    }
    row = (await uow.session.execute(_HOLD, params)).one_or_none()
    if row is None:
        # Nothing held: the account is short, or absent from this statement's snapshot because
        # the transaction creating or funding it (a welcome grant racing a first job) had not
        # committed. Locking it waits for that one; then a retry sees what is there.
        acct = await lock_account(uow, person_id, org_id)  # created now when absent
        if available(acct) < credits:
            raise insufficient(credits, available(acct))
        row = (await uow.session.execute(_HOLD, params)).one()
    await held(uow, row, person_id=person_id, org_id=org_id, credits=credits)


class HeldRow(Protocol):
    """The account's totals after a hold, as the hold statement returns them."""

    balance: int
    held: int
    low_balance_threshold: int | None
    low_balance_alerted: bool


async def held(
    uow: UnitOfWork, row: HeldRow, *, person_id: uuid.UUID, org_id: uuid.UUID | None, credits: int
) -> None:
    """After a hold: fire the low-balance alert if this hold crossed the threshold."""
    limit = row.low_balance_threshold
    if limit is None:
        limit = uow.db.settings.billing_low_balance_threshold
    if row.balance - row.held < limit and not row.low_balance_alerted:
        acct = await lock_account(uow, person_id, org_id)
        check_low_balance(uow, acct)
        await uow.session.flush()


async def expire_lots(uow: UnitOfWork, now: dt.datetime, limit: int = 500) -> int:
    """Expire what is left of lots past their date (system mode). Credits an open hold still
    needs are left for the next sweep. Returns the credits expired."""
    accounts = (
        await uow.session.execute(
            select(CreditLot.account_id, CreditLot.person_id, CreditLot.org_id)
            .where(CreditLot.remaining > 0, CreditLot.expires_at <= now)
            .distinct()
            .limit(limit)
        )
    ).all()
    total = 0
    for _, person_id, org_id in accounts:
        acct = await lock_account(uow, person_id, org_id)
        lots = (
            await uow.session.execute(
                select(CreditLot)
                .where(CreditLot.account_id == acct.id, CreditLot.remaining > 0, CreditLot.expires_at <= now)
                .order_by(CreditLot.expires_at, CreditLot.id)
                .with_for_update()
            )
        ).scalars()
        for lot in list(lots):
            amount = min(lot.remaining, available(acct))
            if amount <= 0:
                break
            await post(
                uow,
                acct,
                kind="expiry",
                amount=amount,
                balance_delta=-amount,
                held_delta=0,
                key=f"expiry:{lot.id}:{lot.remaining}",
                person_id=acct.person_id,
                memo=f"unused credits of a grant that expired at {lot.expires_at.isoformat()}",
            )
            lot.remaining -= amount
            total += amount
        await uow.session.flush()
    return total
