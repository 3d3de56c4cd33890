"""Sign-up, sign-in and sessions: tokens issued, rotated, switched and ended."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import func, or_, select, update

from core.config import Settings
from core.context import TenantContext
from core.credentials import new_refresh_token
from core.errors import NotFound, PermissionDenied, RateLimited, Unauthenticated
from core.observability import get_logger
from core.scoping import one_or, row_or
from core.tenancy import browser
from core.tenancy.browser import CsrfProof
from core.tenancy.models import (
    AuthSession,
    Invitation,
    Org,
    OrgMember,
    Person,
    PersonCredential,
    RefreshToken,
)
from core.tenancy.presenters import context_out, person_out
from core.tenancy.schemas import AuthOut, LoginIn, LogoutIn, RefreshIn, SignupIn
from core.uow import Database, UnitOfWork
from core.utilities import sha256_hex, utcnow

SUSPENDED_HINT = "contact the operator: only a platform admin can lift a suspension"

log = get_logger("atlilith.tenancy")


@dataclass(frozen=True)
class Device:
    device_id: str | None = None
    user_agent: str | None = None


async def _start_session(
    uow: UnitOfWork, person: Person, device: Device, org: Org | None = None, role: str | None = None
) -> AuthOut:
    settings = uow.db.settings
    now = utcnow()
    session = AuthSession(
        id=uuid.uuid4(),
        person_id=person.id,
        device_id=device.device_id or uuid.uuid4().hex,
        user_agent=(device.user_agent or "")[:400] or None,
        org_id=org.id if org and role else None,
        expires_at=now + dt.timedelta(seconds=settings.refresh_token_ttl_seconds),
    )
    uow.session.add(session)
    await uow.session.flush()
    return await _issue_tokens(uow, person, session, org, role, with_refresh=True)


async def _issue_tokens(
    uow: UnitOfWork,
    person: Person,
    session: AuthSession,
    org: Org | None,
    role: str | None,
    *,
    with_refresh: bool,
) -> AuthOut:
    tokens = uow.db.tokens
    access, expires = tokens.issue(
        person_id=person.id,
        session_id=session.id,
        device_id=session.device_id,
        org_id=org.id if org and role else None,
        org_role=role if org else None,
    )
    refresh: str | None = None
    refresh_expires: dt.datetime | None = None
    if with_refresh:
        refresh, refresh_hash = new_refresh_token()
        refresh_expires = session.expires_at
        uow.session.add(
            RefreshToken(
                session_id=session.id,
                person_id=person.id,
                token_hash=refresh_hash,
                expires_at=refresh_expires,
            )
        )
        await uow.session.flush()
    out = AuthOut(
        access_token=access,
        expires_in=int(tokens.ttl.total_seconds()),
        expires_at=expires,
        refresh_token=refresh,
        refresh_expires_at=refresh_expires,
        person=person_out(person),
        context=context_out(org, role),
    )
    out._session_id = session.id
    return out


async def signup(db: Database, data: SignupIn, device: Device) -> AuthOut:
    """Create a person (never an org) and sign them in."""
    password_hash = await db.passwords.hash(data.password)
    async with db.system() as uow:
        person = Person(id=uuid.uuid4(), slug=data.slug, email=data.email, display_name=data.display_name)
        uow.session.add(person)
        await uow.session.flush()
        uow.session.add(PersonCredential(person_id=person.id, password_hash=password_hash))
        # Invitations sent to this email before the account existed now reach the person.
        await uow.session.execute(
            update(Invitation)
            .where(
                func.lower(Invitation.email) == data.email,
                Invitation.invitee_person_id.is_(None),
                Invitation.status == "pending",
            )
            .values(invitee_person_id=person.id)
        )
        uow.emit(
            "platform/person.created",
            {"slug": person.slug, "display_name": person.display_name},
            person_id=person.id,
        )
        result = await _start_session(uow, person, device)
    log.info("person_signed_up", person_id=str(person.id), slug=person.slug)
    return result


_INVALID_LOGIN = Unauthenticated(
    "the login or password is wrong",
    code="invalid_credentials",
    hint="check both; after repeated failures the account is locked for a while",
)


@dataclass(frozen=True)
class _Guess:
    """A sign-in attempt as counted under the credential's row lock, before its password check."""

    person: Person | None
    cred: PersonCredential | None
    stored_hash: str | None
    locked_by_this_guess: bool = False
    lock_seen: dt.datetime | None = None


async def login(db: Database, data: LoginIn, device: Device) -> AuthOut:
    """Check a password. Every guess is counted *before* its argon2 check, under the
    credential's row lock, and the lock state is read under that same lock: parallel guesses
    for one account cannot see a stale gate, so at most `login_max_failures` of them are ever
    verified before the account locks, and a locked account is refused without hashing. The
    row lock is not held across the (slow) hash, so a burst does not pin pool connections."""
    guess = await _count_guess(db, data.login.strip().lower())
    person, cred = guess.person, guess.cred
    # An unknown login verifies against a dummy hash: it costs what a known one costs.
    ok = await db.passwords.verify(guess.stored_hash, data.password)
    if not ok or person is None or cred is None:
        if guess.locked_by_this_guess and person is not None:
            log.warning("login_locked", person_id=str(person.id))
        raise _INVALID_LOGIN
    if person.status != "active":
        raise Unauthenticated("this account is suspended", code="account_suspended", hint=SUSPENDED_HINT)
    rehash = await db.passwords.hash(data.password) if db.passwords.needs_rehash(cred.password_hash) else None
    return await _signed_in(db, person.id, guess.lock_seen, rehash, device)


async def _count_guess(db: Database, login_name: str) -> _Guess:
    async with db.system() as uow:
        row = (
            await uow.session.execute(
                select(Person, PersonCredential)
                .join(PersonCredential, PersonCredential.person_id == Person.id)
                .where(or_(Person.slug == login_name, func.lower(Person.email) == login_name))
                .with_for_update(of=PersonCredential)
            )
        ).one_or_none()
        if row is None:
            return _Guess(None, None, None)
        person, cred = row[0], row[1]
        stored_hash = cred.password_hash
        locked_by_this_guess = _count_failure(cred, db.settings)
        return _Guess(person, cred, stored_hash, locked_by_this_guess, cred.locked_until)


def _count_failure(cred: PersonCredential, settings: Settings) -> bool:
    """Refuse a locked account, else count the guess; True when this guess locked it."""
    now = utcnow()
    if cred.locked_until is not None and cred.locked_until > now:
        retry = int((cred.locked_until - now).total_seconds()) + 1
        raise RateLimited(
            "too many failed sign-ins; this account is locked for a while",
            code="login_locked",
            hint=f"try again in {retry} seconds",
            extra={"retry_after": retry},
        )
    # Counted as a failure until proven right: the guess that fills the budget locks the
    # account at once, before anyone knows whether it (or one still in flight) is right;
    # a right password clears the lock again below.
    cred.failed_logins += 1
    if cred.failed_logins >= settings.login_max_failures:
        cred.failed_logins = 0
        cred.locked_until = now + dt.timedelta(seconds=settings.login_lockout_seconds)
        return True
    cred.locked_until = None  # an expired lock
    return False


async def _signed_in(
    db: Database, person_id: uuid.UUID, lock_seen: dt.datetime | None, rehash: str | None, device: Device
) -> AuthOut:
    async with db.system() as uow:
        # A right password clears the count, but not a lock that a later guess of the same burst
        # set meanwhile: that one was refused its check, and the lock stays for the rest.
        await uow.session.execute(
            update(PersonCredential)
            .where(
                PersonCredential.person_id == person_id,
                PersonCredential.locked_until.is_not_distinct_from(lock_seen),
            )
            .values(failed_logins=0, locked_until=None)
        )
        if rehash:
            await uow.session.execute(
                update(PersonCredential)
                .where(PersonCredential.person_id == person_id)
                .values(password_hash=rehash)
            )
        fresh = await uow.session.get(Person, person_id)
        assert fresh is not None
        return await _start_session(uow, fresh, device)


async def refresh(db: Database, data: RefreshIn, csrf: CsrfProof | None = None) -> AuthOut:
    """Rotate a refresh token. A token presented twice means it leaked: the session ends.
    `csrf`: the token came in a browser cookie, so the request must also prove it comes from
    our own page, signed for that very session; a refused proof changes nothing (no rotation,
    no reuse alarm), so another site cannot sign anyone out either."""
    if csrf is not None:
        browser.check_request_shape(csrf, db.settings.cors_origins)
    token_hash = sha256_hex(data.refresh_token)
    reused = False
    async with db.system() as uow:
        rt, session, person = await row_or(
            uow,
            select(RefreshToken, AuthSession, Person)
            .join(AuthSession, AuthSession.id == RefreshToken.session_id)
            .join(Person, Person.id == RefreshToken.person_id)
            .where(RefreshToken.token_hash == token_hash)
            .with_for_update(of=[RefreshToken, AuthSession]),
            Unauthenticated("the refresh token is unknown", code="refresh_invalid", hint="sign in again"),
        )
        if csrf is not None:
            browser.verify_csrf(db.settings, session.id, csrf)
        now = utcnow()
        if rt.used_at is not None:
            reused = True
            if session.revoked_at is None:
                session.revoked_at, session.revoked_reason = now, "refresh_token_reuse"
            log.warning("refresh_token_reuse", session_id=str(session.id), person_id=str(person.id))
        elif session.revoked_at is not None or session.expires_at <= now or rt.expires_at <= now:
            raise Unauthenticated(
                "the session has ended", code="session_revoked", hint="sign in again ([[tenancy.login]])"
            )
        elif person.status != "active":
            raise Unauthenticated("this account is suspended", code="account_suspended", hint=SUSPENDED_HINT)
        else:
            rt.used_at = now
            session.last_refreshed_at = now
            org, role = await _session_org(uow, session, person)
            return await _issue_tokens(uow, person, session, org, role, with_refresh=True)
    if reused:
        raise Unauthenticated(
            "this refresh token was already used; the session has been signed out for safety",
            code="refresh_reused",
            hint="sign in again",
        )
    raise AssertionError("unreachable")


async def _session_org(
    uow: UnitOfWork, session: AuthSession, person: Person
) -> tuple[Org | None, str | None]:
    """The org a session acts in while the person is still its member; else it turns personal."""
    if session.org_id is None:
        return None, None
    found = (
        await uow.session.execute(
            select(Org, OrgMember.role)
            .join(OrgMember, OrgMember.org_id == Org.id)
            .where(Org.id == session.org_id, OrgMember.person_id == person.id)
        )
    ).one_or_none()
    if found is None:
        session.org_id = None
        return None, None
    return found[0], found[1]


async def logout(ctx: TenantContext, uow: UnitOfWork, data: LogoutIn) -> None:
    ctx.require_human()
    stmt = (
        update(AuthSession)
        .where(AuthSession.revoked_at.is_(None))
        .values(revoked_at=func.now(), revoked_reason="logout")
    )
    if data.all_devices:
        stmt = stmt.where(AuthSession.person_id == ctx.person_id)
    else:
        stmt = stmt.where(AuthSession.id == ctx.principal.session_id)
    await uow.session.execute(stmt)


async def switch_context(ctx: TenantContext, uow: UnitOfWork) -> AuthOut:
    """A new access token for the context `ctx` was resolved to (membership checked live)."""
    ctx.require_human()
    session = await uow.session.get(AuthSession, ctx.principal.session_id)
    person = await uow.session.get(Person, ctx.person_id)
    assert session is not None and person is not None
    org = await uow.session.get(Org, ctx.org_id) if ctx.org_id else None
    session.org_id = ctx.org_id
    return await _issue_tokens(
        uow, person, session, org, ctx.role.value if ctx.role else None, with_refresh=False
    )


async def operator_token(
    db: Database, person_slug: str, org_slug: str | None, ttl: dt.timedelta | None = None
) -> AuthOut:
    """A session token for a local operator (`atlilith token`): it needs database access, so
    nothing reachable over HTTP can mint tokens without credentials."""
    async with db.system() as uow:
        not_found = NotFound(
            f"no person has the slug {person_slug!r}",
            code="person_not_found",
            hint="check the handle; a person signs up before they get a token",
        )
        person = await one_or(uow, select(Person).where(Person.slug == person_slug), not_found)
        if person.status != "active":
            raise PermissionDenied("this account is suspended", code="account_suspended", hint=SUSPENDED_HINT)
        org: Org | None = None
        role: str | None = None
        if org_slug:
            org, role = await row_or(
                uow,
                select(Org, OrgMember.role)
                .join(OrgMember, OrgMember.org_id == Org.id)
                .where(Org.slug == org_slug, OrgMember.person_id == person.id),
                PermissionDenied(
                    f"{person_slug!r} is not a member of {org_slug!r}",
                    code="not_a_member",
                    hint="name an org they are a member of, or none for their personal context",
                ),
            )
        session = AuthSession(
            id=uuid.uuid4(),
            person_id=person.id,
            device_id="operator-cli",
            user_agent="atlilith token",
            org_id=org.id if org else None,
            expires_at=utcnow() + (ttl or dt.timedelta(seconds=db.settings.refresh_token_ttl_seconds)),
        )
        uow.session.add(session)
        await uow.session.flush()
        tokens = db.tokens
        access, expires = tokens.issue(
            person_id=person.id,
            session_id=session.id,
            device_id=session.device_id,
            org_id=org.id if org else None,
            org_role=role,
            ttl=ttl,
        )
        return AuthOut(
            access_token=access,
            expires_in=int((expires - utcnow()).total_seconds()),
            expires_at=expires,
            person=person_out(person),
            context=context_out(org, role),
        )
