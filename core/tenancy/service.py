"""Tenancy: sign-up and sessions, orgs and their members, invitations, brands, clients, API keys.

Every function here is the one place its rule lives. REST routes and MCP tools call these with a
`TenantContext` the database has just re-checked, and a unit of work they never commit themselves.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, text, tuple_, update
from sqlalchemy.orm import aliased

from core.auth import new_api_key, new_refresh_token, sha256_hex, utcnow
from core.context import Role, TenantContext, known_scopes
from core.errors import (
    Conflict,
    FieldIssue,
    Gone,
    NotFound,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
    ValidationFailed,
    constraint_error,
)
from core.idempotency import idempotent_operation
from core.identity.polyseme import client_person_id
from core.observability import get_logger
from core.pagination import Page, PageRequest, decode_cursor, encode_cursor
from core.preconditions import require_match
from core.registry.changes import tools_changed
from core.tenancy import browser
from core.tenancy.browser import CsrfProof
from core.tenancy.models import (
    ApiKey,
    AuthSession,
    Brand,
    BrandDomain,
    Client,
    Invitation,
    Org,
    OrgMember,
    Person,
    PersonCredential,
    RefreshToken,
)
from core.tenancy.schemas import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyOut,
    AuthOut,
    BrandIn,
    BrandOut,
    BrandUpdateIn,
    ClientIn,
    ClientOut,
    ClientUpdateIn,
    ContextOut,
    CredentialOut,
    InvitationIn,
    InvitationOut,
    LoginIn,
    LogoutIn,
    MemberIn,
    MemberOut,
    MembershipOut,
    MemberUpdateIn,
    MeOut,
    OrgIn,
    OrgOut,
    OrgRef,
    OrgUpdateIn,
    PasswordChangeIn,
    PersonOut,
    PersonRef,
    PersonUpdateIn,
    RefreshIn,
    SignupIn,
    TransferIn,
)
from core.uow import Database, UnitOfWork
from core.validation import normalize_phone

log = get_logger("atlilith.tenancy")

READ = "tenancy:read"
WRITE = "tenancy:write"


def _taken(field: str, code: str, message: str, hint: str) -> Conflict:
    return Conflict(message, code=code, hint=hint, errors=[FieldIssue(field, message, "taken")])


constraint_error(
    "uq_persons_slug",
    _taken("slug", "slug_taken", "this slug is taken", "choose another slug"),
)
constraint_error(
    "uq_persons_email",
    _taken("email", "email_taken", "an account with this email exists", "sign in with POST /v1/auth/login"),
)
constraint_error(
    "uq_orgs_slug", _taken("slug", "slug_taken", "this org slug is taken", "choose another slug")
)
constraint_error(
    "uq_brands_tenant_id_slug",
    _taken("slug", "slug_taken", "a brand with this slug exists in this context", "choose another slug"),
)
constraint_error(
    "pk_brand_domains",
    _taken(
        "domains", "domain_taken", "a domain is already used by a brand", "remove it from the other brand"
    ),
)
constraint_error(
    "uq_clients_tenant_id_email",
    _taken(
        "email",
        "client_exists",
        "a client with this email exists in this context",
        "update that client instead (GET /v1/clients?q=<email>)",
    ),
)
constraint_error(
    "pk_org_members",
    Conflict("this person is already a member", code="already_member", hint="change their role instead"),
)
constraint_error(
    "uq_org_members_one_owner",
    Conflict("an org has exactly one owner", code="owner_exists", hint="transfer ownership instead"),
)
constraint_error(
    "fk_orgs_owner_membership",
    Conflict(
        "the owner must stay a member with the owner role",
        code="owner_required",
        hint="transfer ownership ([[tenancy.transfer_ownership]]) first",
    ),
)
constraint_error(
    "uq_invitations_pending_person",
    Conflict("this person already has a pending invitation", code="invitation_pending"),
)
constraint_error(
    "uq_invitations_pending_email",
    Conflict("this email already has a pending invitation", code="invitation_pending"),
)
constraint_error(
    "fk_orgs_owner_id_persons",
    Conflict("this person still owns orgs", code="owns_orgs", hint="transfer or delete those orgs first"),
)


# --- shared helpers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    device_id: str | None = None
    user_agent: str | None = None


def _person_out(p: Person, viewer: uuid.UUID | None = None) -> PersonOut:
    """Emails are personal: anyone can add a person to an org by slug, so co-members must not
    be able to harvest addresses. Only the person sees their own (viewer None = self)."""
    own = viewer is None or viewer == p.id
    return PersonOut(id=p.id, slug=p.slug, display_name=p.display_name, email=p.email if own else None)


def _person_ref(p: Person) -> PersonRef:
    return PersonRef(id=p.id, slug=p.slug, display_name=p.display_name)


def _context_out(ctx_org: Org | None, role: str | None) -> ContextOut:
    if ctx_org is None or role is None:
        return ContextOut(kind="personal")
    return ContextOut(kind="org", org=OrgRef.model_validate(ctx_org), role=role)


def _keyset(page: PageRequest, arity: int) -> list[Any] | None:
    return decode_cursor(page.cursor, arity) if page.cursor else None


def _next_cursor(rows: Sequence[Any], limit: int, key: Any) -> str | None:
    return encode_cursor(*key(rows[limit - 1])) if len(rows) > limit else None


def _require_manager(ctx: TenantContext) -> None:
    """Writes to context-owned configuration: the person, or an org's owner/admin."""
    ctx.require(WRITE)
    if ctx.org_id is not None:
        ctx.require_role(Role.OWNER, Role.ADMIN)


async def _person_id_by_slug(uow: UnitOfWork, slug: str) -> uuid.UUID:
    person_id = (
        await uow.session.execute(text("SELECT platform.person_id_by_slug(:s)"), {"s": slug})
    ).scalar_one_or_none()
    if person_id is None:
        raise NotFound(
            f"no active person has the slug {slug!r}",
            code="person_not_found",
            hint="check the slug; the person must have signed up",
            errors=[FieldIssue("person", "unknown person", "not_found")],
        )
    return uuid.UUID(str(person_id))


# --- sign-up, sign-in, sessions ------------------------------------------------------------------


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
        person=_person_out(person),
        context=_context_out(org, role),
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


async def login(db: Database, data: LoginIn, device: Device) -> AuthOut:
    """Check a password. Every guess is counted *before* its argon2 check, under the
    credential's row lock, and the lock state is read under that same lock: parallel guesses
    for one account cannot see a stale gate, so at most `login_max_failures` of them are ever
    verified before the account locks, and a locked account is refused without hashing. The
    row lock is not held across the (slow) hash, so a burst does not pin pool connections."""
    settings = db.settings
    login_name = data.login.strip().lower()
    locked_by_this_guess = False
    lock_seen: dt.datetime | None = None
    async with db.system() as uow:
        row = (
            await uow.session.execute(
                select(Person, PersonCredential)
                .join(PersonCredential, PersonCredential.person_id == Person.id)
                .where(or_(Person.slug == login_name, func.lower(Person.email) == login_name))
                .with_for_update(of=PersonCredential)
            )
        ).one_or_none()
        person, cred = (row[0], row[1]) if row else (None, None)
        stored_hash = cred.password_hash if cred is not None else None
        if cred is not None:
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
                locked_by_this_guess = True
            else:
                cred.locked_until = None  # an expired lock
            lock_seen = cred.locked_until
    # An unknown login verifies against a dummy hash: it costs what a known one costs.
    ok = await db.passwords.verify(stored_hash, data.password)
    if not ok or person is None or cred is None:
        if locked_by_this_guess and person is not None:
            log.warning("login_locked", person_id=str(person.id))
        raise _INVALID_LOGIN
    if person.status != "active":
        raise Unauthenticated(
            "this account is suspended", code="account_suspended", hint="contact the operator"
        )
    rehash = await db.passwords.hash(data.password) if db.passwords.needs_rehash(cred.password_hash) else None
    async with db.system() as uow:
        # A right password clears the count, but not a lock that a later guess of the same burst
        # set meanwhile: that one was refused its check, and the lock stays for the rest.
        await uow.session.execute(
            update(PersonCredential)
            .where(
                PersonCredential.person_id == person.id,
                PersonCredential.locked_until.is_not_distinct_from(lock_seen),
            )
            .values(failed_logins=0, locked_until=None)
        )
        if rehash:
            await uow.session.execute(
                update(PersonCredential)
                .where(PersonCredential.person_id == person.id)
                .values(password_hash=rehash)
            )
        fresh = await uow.session.get(Person, person.id)
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
        row = (
            await uow.session.execute(
                select(RefreshToken, AuthSession, Person)
                .join(AuthSession, AuthSession.id == RefreshToken.session_id)
                .join(Person, Person.id == RefreshToken.person_id)
                .where(RefreshToken.token_hash == token_hash)
                .with_for_update(of=[RefreshToken, AuthSession])
            )
        ).one_or_none()
        if row is None:
            raise Unauthenticated(
                "the refresh token is unknown", code="refresh_invalid", hint="sign in again"
            )
        rt, session, person = row
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
            raise Unauthenticated("this account is suspended", code="account_suspended")
        else:
            rt.used_at = now
            session.last_refreshed_at = now
            org: Org | None = None
            role: str | None = None
            if session.org_id is not None:
                found = (
                    await uow.session.execute(
                        select(Org, OrgMember.role)
                        .join(OrgMember, OrgMember.org_id == Org.id)
                        .where(Org.id == session.org_id, OrgMember.person_id == person.id)
                    )
                ).one_or_none()
                if found is not None:
                    org, role = found[0], found[1]
                else:
                    session.org_id = None
            return await _issue_tokens(uow, person, session, org, role, with_refresh=True)
    if reused:
        raise Unauthenticated(
            "this refresh token was already used; the session has been signed out for safety",
            code="refresh_reused",
            hint="sign in again",
        )
    raise AssertionError("unreachable")


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


async def change_password(ctx: TenantContext, uow: UnitOfWork, data: PasswordChangeIn) -> None:
    """Change the password and sign out every other device."""
    ctx.require_human()
    cred = await uow.session.get(PersonCredential, ctx.person_id)
    assert cred is not None
    if not await uow.db.passwords.verify(cred.password_hash, data.current_password):
        raise PermissionDenied(
            "the current password is wrong",
            code="invalid_credentials",
            errors=[FieldIssue("current_password", "wrong password")],
        )
    cred.password_hash = await uow.db.passwords.hash(data.new_password)
    await uow.session.execute(
        update(AuthSession)
        .where(
            AuthSession.person_id == ctx.person_id,
            AuthSession.id != ctx.principal.session_id,
            AuthSession.revoked_at.is_(None),
        )
        .values(revoked_at=func.now(), revoked_reason="password_changed")
    )
    uow.emit("platform/person.password_changed", {})


async def operator_token(
    db: Database, person_slug: str, org_slug: str | None, ttl: dt.timedelta | None = None
) -> AuthOut:
    """A session token for a local operator (`atlilith token`): it needs database access, so
    nothing reachable over HTTP can mint tokens without credentials."""
    async with db.system() as uow:
        person = (
            await uow.session.execute(select(Person).where(Person.slug == person_slug))
        ).scalar_one_or_none()
        if person is None:
            raise NotFound(
                f"no person has the slug {person_slug!r}",
                code="person_not_found",
                hint="check the handle; a person signs up before they get a token",
            )
        if person.status != "active":
            raise PermissionDenied("this account is suspended", code="account_suspended")
        org: Org | None = None
        role: str | None = None
        if org_slug:
            found = (
                await uow.session.execute(
                    select(Org, OrgMember.role)
                    .join(OrgMember, OrgMember.org_id == Org.id)
                    .where(Org.slug == org_slug, OrgMember.person_id == person.id)
                )
            ).one_or_none()
            if found is None:
                raise PermissionDenied(
                    f"{person_slug!r} is not a member of {org_slug!r}", code="not_a_member"
                )
            org, role = found[0], found[1]
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
            person=_person_out(person),
            context=_context_out(org, role),
        )


# --- me -------------------------------------------------------------------------------------------


async def whoami(ctx: TenantContext, uow: UnitOfWork) -> MeOut:
    """The person, the context this request acts in, every membership, and the credential used."""
    rows = (
        await uow.session.execute(
            select(Person, OrgMember.role, OrgMember.created_at, Org.id, Org.slug, Org.name)
            .outerjoin(OrgMember, OrgMember.person_id == Person.id)
            .outerjoin(Org, Org.id == OrgMember.org_id)
            .where(Person.id == ctx.person_id)
            .order_by(Org.slug)
        )
    ).all()
    if not rows:
        raise Unauthenticated("the person behind this credential no longer exists", code="token_invalid")
    person = rows[0][0]
    memberships = [
        MembershipOut(org=OrgRef(id=r[3], slug=r[4], name=r[5]), role=r[1], joined_at=r[2])
        for r in rows
        if r[3] is not None
    ]
    current = next((m for m in memberships if m.org.id == ctx.org_id), None)
    principal = ctx.principal
    return MeOut(
        person=_person_out(person),
        context=ContextOut(kind="org", org=current.org, role=current.role)
        if current
        else ContextOut(kind="personal"),
        memberships=memberships,
        credential=CredentialOut(
            kind="api_key" if principal.api_key_id else "session",
            scopes=sorted(principal.scopes),
            api_key_id=principal.api_key_id,
            session_id=principal.session_id,
        ),
    )


async def update_me(ctx: TenantContext, uow: UnitOfWork, data: PersonUpdateIn) -> PersonOut:
    ctx.require(WRITE)
    person = await uow.session.get(Person, ctx.person_id)
    assert person is not None
    person.display_name = data.display_name
    await uow.session.flush()
    return _person_out(person)


# --- API keys -------------------------------------------------------------------------------------


def _api_key_out(key: ApiKey, org: Org | None) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        scopes=list(key.scopes),
        org=OrgRef.model_validate(org) if org else None,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
    )


async def create_api_key(ctx: TenantContext, uow: UnitOfWork, data: ApiKeyIn) -> ApiKeyCreated:
    """Only a signed-in person mints keys: a leaked key cannot breed more keys."""
    ctx.require_human()
    known = known_scopes()
    unknown = [s for s in data.scopes if s != "*" and not s.endswith(":*") and s not in known]
    if unknown:
        raise ValidationFailed(
            f"unknown scopes: {', '.join(unknown)}",
            code="unknown_scope",
            hint="valid scopes: " + ", ".join(["*", *known]),
            errors=[FieldIssue("scopes", f"unknown scope {s!r}") for s in unknown],
        )
    org: Org | None = None
    if data.org:
        row = (
            await uow.session.execute(
                select(Org)
                .join(OrgMember, OrgMember.org_id == Org.id)
                .where(Org.slug == data.org, OrgMember.person_id == ctx.person_id)
            )
        ).scalar_one_or_none()
        if row is None:
            raise PermissionDenied(
                f"you are not a member of {data.org!r}",
                code="not_a_member",
                errors=[FieldIssue("org", "not one of your orgs")],
            )
        org = row
    minted = new_api_key()
    key = ApiKey(
        person_id=ctx.person_id,
        org_id=org.id if org else None,
        name=data.name,
        prefix=minted.prefix,
        secret_hash=minted.secret_hash,
        scopes=sorted(set(data.scopes)),
        expires_at=utcnow() + dt.timedelta(days=data.expires_in_days) if data.expires_in_days else None,
    )
    uow.session.add(key)
    await uow.session.flush()
    await uow.session.refresh(key)
    uow.emit(
        "platform/api_key.created",
        {"api_key_id": key.id, "name": key.name, "scopes": key.scopes, "bound_org_id": key.org_id},
    )
    return ApiKeyCreated(**_api_key_out(key, org).model_dump(), token=minted.token)


async def list_api_keys(ctx: TenantContext, uow: UnitOfWork, page: PageRequest) -> Page[ApiKeyOut]:
    ctx.require_human()
    stmt = (
        select(ApiKey, Org)
        .outerjoin(Org, Org.id == ApiKey.org_id)
        .where(ApiKey.person_id == ctx.person_id)
        .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
        .limit(page.limit + 1)
    )
    if (after := _keyset(page, 2)) is not None:
        stmt = stmt.where(tuple_(ApiKey.created_at, ApiKey.id) < tuple_(*after))
    rows = (await uow.session.execute(stmt)).all()
    return Page[ApiKeyOut](
        items=[_api_key_out(k, o) for k, o in rows[: page.limit]],
        next_cursor=_next_cursor(rows, page.limit, lambda r: (r[0].created_at, r[0].id)),
    )


async def revoke_api_key(ctx: TenantContext, uow: UnitOfWork, key_id: uuid.UUID) -> ApiKeyOut:
    ctx.require_human()
    row = (
        await uow.session.execute(
            select(ApiKey, Org)
            .outerjoin(Org, Org.id == ApiKey.org_id)
            .where(ApiKey.id == key_id, ApiKey.person_id == ctx.person_id)
        )
    ).one_or_none()
    if row is None:
        raise NotFound(
            "no such API key", code="api_key_not_found", hint="list your keys with [[tenancy.list_api_keys]]"
        )
    key, org = row
    if key.revoked_at is None:  # revoking twice is a no-op, so retries are safe
        key.revoked_at = utcnow()
        uow.emit("platform/api_key.revoked", {"api_key_id": key.id, "name": key.name})
    return _api_key_out(key, org)


# --- orgs -----------------------------------------------------------------------------------------


def _org_view(org: Org, owner: Person, role: str) -> OrgOut:
    return OrgOut(
        id=org.id,
        slug=org.slug,
        name=org.name,
        owner=_person_ref(owner),
        role=role,
        settings=org.settings,
        created_at=org.created_at,
        updated_at=org.updated_at,
    )


async def _org_out(uow: UnitOfWork, org: Org, role: str) -> OrgOut:
    owner = await uow.session.get(Person, org.owner_id)
    assert owner is not None
    return _org_view(org, owner, role)


async def _current_org(ctx: TenantContext, uow: UnitOfWork) -> Org:
    org_id = ctx.require_org()
    org = await uow.session.get(Org, org_id)
    if org is None:
        raise NotFound(
            "this org no longer exists",
            code="org_not_found",
            hint="list your orgs with [[tenancy.list_orgs]]",
        )
    return org


@idempotent_operation("orgs.create")
async def create_org(
    ctx: TenantContext, uow: UnitOfWork, data: OrgIn, idempotency_key: str | None = None
) -> OrgOut:
    """Create an org; the caller becomes its owner."""
    ctx.require(WRITE)
    org = Org(id=uuid.uuid4(), slug=data.slug, name=data.name, owner_id=ctx.person_id, settings={})
    uow.session.add(org)
    await uow.session.flush()
    uow.session.add(OrgMember(org_id=org.id, person_id=ctx.person_id, role=Role.OWNER.value))
    await uow.session.flush()
    await uow.session.refresh(org)
    uow.emit("platform/org.created", {"slug": org.slug, "name": org.name}, org_id=org.id)
    uow.emit(
        "platform/org_member.added",
        {"member_person_id": ctx.person_id, "role": Role.OWNER.value, "via": "create"},
        org_id=org.id,
    )
    return await _org_out(uow, org, Role.OWNER.value)


async def list_orgs(ctx: TenantContext, uow: UnitOfWork, page: PageRequest) -> Page[OrgOut]:
    """Orgs the person belongs to, whatever context the request acts in."""
    ctx.require(READ)
    owner = aliased(Person)
    stmt = (
        select(Org, OrgMember.role, owner)
        .join(OrgMember, and_(OrgMember.org_id == Org.id, OrgMember.person_id == ctx.person_id))
        .join(owner, owner.id == Org.owner_id)
        .order_by(Org.slug)
        .limit(page.limit + 1)
    )
    if (after := _keyset(page, 1)) is not None:
        stmt = stmt.where(Org.slug > after[0])
    rows = (await uow.session.execute(stmt)).all()
    items = [_org_view(o, p, role) for o, role, p in rows[: page.limit]]
    return Page[OrgOut](items=items, next_cursor=_next_cursor(rows, page.limit, lambda r: (r[0].slug,)))


async def get_org(ctx: TenantContext, uow: UnitOfWork) -> OrgOut:
    ctx.require(READ)
    org = await _current_org(ctx, uow)
    assert ctx.role is not None
    return await _org_out(uow, org, ctx.role.value)


async def update_org(ctx: TenantContext, uow: UnitOfWork, data: OrgUpdateIn) -> OrgOut:
    ctx.require(WRITE)
    role = ctx.require_role(Role.OWNER, Role.ADMIN)
    org = await _current_org(ctx, uow)
    changes: dict[str, Any] = {}
    if data.slug is not None and data.slug != org.slug:
        if role is not Role.OWNER:
            raise PermissionDenied(
                "only the owner can change the org's slug", code="insufficient_role", hint="ask the owner"
            )
        changes["slug"] = (org.slug, data.slug)
        org.slug = data.slug
    if data.name is not None and data.name != org.name:
        changes["name"] = (org.name, data.name)
        org.name = data.name
    if data.settings is not None and data.settings != org.settings:
        changes["settings"] = True
        org.settings = data.settings
    if changes:
        await uow.session.flush()
        await uow.session.refresh(org)
        uow.emit("platform/org.updated", {"changed": sorted(changes), "slug": org.slug})
    return await _org_out(uow, org, role.value)


async def delete_org(ctx: TenantContext, uow: UnitOfWork) -> None:
    """Delete the org and everything it owns. Owner only, from a signed-in session."""
    ctx.require(WRITE)
    ctx.require_human()
    ctx.require_role(Role.OWNER)
    org = await _current_org(ctx, uow)
    uow.emit("platform/org.deleted", {"slug": org.slug, "name": org.name})
    # Named now: once the org is gone, nothing says who belonged to it.
    members = await uow.session.execute(select(OrgMember.person_id).where(OrgMember.org_id == org.id))
    tools_changed(uow, "org.deleted", persons=list(members.scalars()), orgs=[org.id])
    await uow.session.delete(org)
    await uow.session.flush()


async def transfer_ownership(ctx: TenantContext, uow: UnitOfWork, data: TransferIn) -> OrgOut:
    """The owner hands the org to another member; the former owner stays on as admin."""
    ctx.require(WRITE)
    ctx.require_human()
    ctx.require_role(Role.OWNER)
    org = await _current_org(ctx, uow)
    target = await _member_by_slug(ctx, uow, data.person)
    if target.person_id == ctx.person_id:
        raise Conflict("you already own this org", code="already_owner")
    old_role = target.role
    # Demote first: the one-owner index is checked per row, the owner FK only at commit.
    await uow.session.execute(
        update(OrgMember)
        .where(OrgMember.org_id == org.id, OrgMember.person_id == ctx.person_id)
        .values(role=Role.ADMIN.value, updated_at=func.now())
    )
    await uow.session.execute(
        update(OrgMember)
        .where(OrgMember.org_id == org.id, OrgMember.person_id == target.person_id)
        .values(role=Role.OWNER.value, updated_at=func.now())
    )
    org.owner_id = target.person_id
    await uow.session.flush()
    await uow.session.refresh(org)
    uow.emit(
        "platform/org.ownership_transferred",
        {"from_person_id": ctx.person_id, "to_person_id": target.person_id},
    )
    uow.emit(
        "platform/org_member.role_changed",
        {"member_person_id": ctx.person_id, "from": Role.OWNER.value, "to": Role.ADMIN.value},
    )
    uow.emit(
        "platform/org_member.role_changed",
        {"member_person_id": target.person_id, "from": old_role, "to": Role.OWNER.value},
    )
    tools_changed(uow, "org.ownership_transferred", persons=[ctx.person_id, target.person_id])
    return await _org_out(uow, org, Role.ADMIN.value)


# --- members --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Member:
    person_id: uuid.UUID
    role: str


async def _member_by_slug(ctx: TenantContext, uow: UnitOfWork, slug: str) -> _Member:
    row = (
        await uow.session.execute(
            select(OrgMember.person_id, OrgMember.role)
            .join(Person, Person.id == OrgMember.person_id)
            .where(OrgMember.org_id == ctx.require_org(), Person.slug == slug)
        )
    ).one_or_none()
    if row is None:
        raise NotFound(
            f"{slug!r} is not a member of {ctx.org_slug!r}",
            code="member_not_found",
            hint="list members with [[tenancy.list_members]]",
        )
    return _Member(row.person_id, row.role)


async def _member_out(
    uow: UnitOfWork, org_id: uuid.UUID, person_id: uuid.UUID, viewer: uuid.UUID
) -> MemberOut:
    row = (
        await uow.session.execute(
            select(Person, OrgMember.role, OrgMember.created_at)
            .join(OrgMember, OrgMember.person_id == Person.id)
            .where(OrgMember.org_id == org_id, OrgMember.person_id == person_id)
        )
    ).one()
    return MemberOut(person=_person_out(row[0], viewer), role=row[1], joined_at=row[2])


async def list_members(ctx: TenantContext, uow: UnitOfWork, page: PageRequest) -> Page[MemberOut]:
    ctx.require(READ)
    org_id = ctx.require_org()
    stmt = (
        select(Person, OrgMember.role, OrgMember.created_at)
        .join(OrgMember, OrgMember.person_id == Person.id)
        .where(OrgMember.org_id == org_id)
        .order_by(OrgMember.created_at, OrgMember.person_id)
        .limit(page.limit + 1)
    )
    if (after := _keyset(page, 2)) is not None:
        stmt = stmt.where(tuple_(OrgMember.created_at, OrgMember.person_id) > tuple_(*after))
    rows = (await uow.session.execute(stmt)).all()
    return Page[MemberOut](
        items=[
            MemberOut(person=_person_out(p, ctx.person_id), role=role, joined_at=at)
            for p, role, at in rows[: page.limit]
        ],
        next_cursor=_next_cursor(rows, page.limit, lambda r: (r[2], r[0].id)),
    )


@idempotent_operation("members.add")
async def add_member(
    ctx: TenantContext, uow: UnitOfWork, data: MemberIn, idempotency_key: str | None = None
) -> MemberOut:
    ctx.require(WRITE)
    ctx.require_role(Role.OWNER, Role.ADMIN)
    org_id = ctx.require_org()
    person_id = await _person_id_by_slug(uow, data.person)
    uow.session.add(OrgMember(org_id=org_id, person_id=person_id, role=data.role))
    await uow.session.flush()
    uow.emit("platform/org_member.added", {"member_person_id": person_id, "role": data.role, "via": "added"})
    tools_changed(uow, "org_member.added", persons=[person_id])
    return await _member_out(uow, org_id, person_id, ctx.person_id)


async def update_member(
    ctx: TenantContext, uow: UnitOfWork, person_slug: str, data: MemberUpdateIn
) -> MemberOut:
    ctx.require(WRITE)
    ctx.require_role(Role.OWNER, Role.ADMIN)
    org_id = ctx.require_org()
    target = await _member_by_slug(ctx, uow, person_slug)
    if target.role == Role.OWNER.value:
        raise PermissionDenied(
            "the owner's role cannot be changed",
            code="cannot_change_owner",
            hint="the owner can transfer ownership ([[tenancy.transfer_ownership]])",
        )
    if target.role != data.role:
        await uow.session.execute(
            update(OrgMember)
            .where(OrgMember.org_id == org_id, OrgMember.person_id == target.person_id)
            .values(role=data.role, updated_at=func.now())
        )
        uow.emit(
            "platform/org_member.role_changed",
            {"member_person_id": target.person_id, "from": target.role, "to": data.role},
        )
        tools_changed(uow, "org_member.role_changed", persons=[target.person_id])
    return await _member_out(uow, org_id, target.person_id, ctx.person_id)


async def remove_member(ctx: TenantContext, uow: UnitOfWork, person_slug: str) -> MemberOut:
    """Remove a member (owner/admin), or leave the org yourself (anyone but the owner).
    Returns the membership as it was."""
    ctx.require(WRITE)
    org_id = ctx.require_org()
    target = await _member_by_slug(ctx, uow, person_slug)
    leaving = target.person_id == ctx.person_id
    if target.role == Role.OWNER.value:
        raise PermissionDenied(
            "the owner cannot leave or be removed" if leaving else "the owner cannot be removed",
            code="owner_cannot_leave" if leaving else "cannot_remove_owner",
            hint="the owner can transfer ownership first ([[tenancy.transfer_ownership]])",
        )
    if not leaving:
        ctx.require_role(Role.OWNER, Role.ADMIN)
    removed = await _member_out(uow, org_id, target.person_id, ctx.person_id)
    await uow.session.execute(
        delete(OrgMember).where(OrgMember.org_id == org_id, OrgMember.person_id == target.person_id)
    )
    uow.emit(
        "platform/org_member.removed",
        {"member_person_id": target.person_id, "role": target.role, "via": "left" if leaving else "removed"},
    )
    tools_changed(uow, "org_member.removed", persons=[target.person_id])
    return removed


# --- invitations ----------------------------------------------------------------------------------


async def _invitation_out(uow: UnitOfWork, inv: Invitation) -> InvitationOut:
    org = await uow.session.get(Org, inv.org_id)
    invitee = await uow.session.get(Person, inv.invitee_person_id) if inv.invitee_person_id else None
    inviter = await uow.session.get(Person, inv.invited_by) if inv.invited_by else None
    assert org is not None
    status = inv.status
    if status == "pending" and inv.expires_at <= utcnow():
        status = "expired"
    return InvitationOut(
        id=inv.id,
        org=OrgRef.model_validate(org),
        email=inv.email,
        invitee=_person_ref(invitee) if invitee else None,
        role=inv.role,
        status=status,
        invited_by=_person_ref(inviter) if inviter else None,
        expires_at=inv.expires_at,
        created_at=inv.created_at,
        responded_at=inv.responded_at,
    )


@idempotent_operation("invitations.create")
async def create_invitation(
    ctx: TenantContext, uow: UnitOfWork, data: InvitationIn, idempotency_key: str | None = None
) -> InvitationOut:
    ctx.require(WRITE)
    ctx.require_role(Role.OWNER, Role.ADMIN)
    org_id = ctx.require_org()
    invitee: uuid.UUID | None
    if data.person:
        invitee = await _person_id_by_slug(uow, data.person)
    else:
        found = (
            await uow.session.execute(text("SELECT platform.person_id_by_email(:e)"), {"e": data.email})
        ).scalar_one_or_none()
        invitee = uuid.UUID(str(found)) if found else None
    if invitee is not None:
        already = (
            await uow.session.execute(
                select(OrgMember.person_id).where(OrgMember.org_id == org_id, OrgMember.person_id == invitee)
            )
        ).first()
        if already:
            raise Conflict("this person is already a member", code="already_member")
    inv = Invitation(
        org_id=org_id,
        email=data.email,
        invitee_person_id=invitee,
        role=data.role,
        invited_by=ctx.person_id,
        expires_at=utcnow() + dt.timedelta(days=data.expires_in_days),
    )
    uow.session.add(inv)
    await uow.session.flush()
    await uow.session.refresh(inv)
    uow.emit(
        "platform/invitation.created",
        {"invitation_id": inv.id, "email": inv.email, "invitee_person_id": invitee, "role": inv.role},
    )
    return await _invitation_out(uow, inv)


async def list_invitations(
    ctx: TenantContext, uow: UnitOfWork, page: PageRequest, status: str | None = None
) -> Page[InvitationOut]:
    """The org's invitations (owner/admin)."""
    ctx.require(READ)
    ctx.require_role(Role.OWNER, Role.ADMIN)
    stmt = select(Invitation).where(Invitation.org_id == ctx.require_org())
    if status:
        stmt = stmt.where(Invitation.status == status)
    return await _invitation_page(uow, stmt, page)


async def list_my_invitations(ctx: TenantContext, uow: UnitOfWork, page: PageRequest) -> Page[InvitationOut]:
    """Pending invitations addressed to the caller, whichever context they act in."""
    stmt = select(Invitation).where(
        Invitation.invitee_person_id == ctx.person_id,
        Invitation.status == "pending",
        Invitation.expires_at > func.now(),
    )
    return await _invitation_page(uow, stmt, page)


async def _invitation_page(uow: UnitOfWork, stmt: Any, page: PageRequest) -> Page[InvitationOut]:
    stmt = stmt.order_by(Invitation.created_at.desc(), Invitation.id.desc()).limit(page.limit + 1)
    if (after := _keyset(page, 2)) is not None:
        stmt = stmt.where(tuple_(Invitation.created_at, Invitation.id) < tuple_(*after))
    rows = list((await uow.session.execute(stmt)).scalars())
    return Page[InvitationOut](
        items=[await _invitation_out(uow, inv) for inv in rows[: page.limit]],
        next_cursor=_next_cursor(rows, page.limit, lambda r: (r.created_at, r.id)),
    )


async def revoke_invitation(ctx: TenantContext, uow: UnitOfWork, invitation_id: uuid.UUID) -> InvitationOut:
    ctx.require(WRITE)
    ctx.require_role(Role.OWNER, Role.ADMIN)
    inv = (
        await uow.session.execute(
            select(Invitation)
            .where(Invitation.id == invitation_id, Invitation.org_id == ctx.require_org())
            .with_for_update()
        )
    ).scalar_one_or_none()
    if inv is None:
        raise NotFound(
            "no such invitation in this org",
            code="invitation_not_found",
            hint="list the org's invitations with [[tenancy.list_invitations]]",
        )
    if inv.status == "pending":
        inv.status, inv.responded_at = "revoked", utcnow()
        uow.emit("platform/invitation.revoked", {"invitation_id": inv.id})
    elif inv.status != "revoked":
        raise Conflict(f"the invitation is already {inv.status}", code="invitation_not_pending")
    return await _invitation_out(uow, inv)


async def _my_pending_invitation(ctx: TenantContext, uow: UnitOfWork, invitation_id: uuid.UUID) -> Invitation:
    inv = (
        await uow.session.execute(
            select(Invitation)
            .where(Invitation.id == invitation_id, Invitation.invitee_person_id == ctx.person_id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if inv is None:
        raise NotFound(
            "no such invitation for you",
            code="invitation_not_found",
            hint="list yours with [[tenancy.list_my_invitations]]",
        )
    if inv.status != "pending":
        raise Conflict(f"the invitation is {inv.status}", code="invitation_not_pending")
    if inv.expires_at <= utcnow():
        raise Gone("the invitation has expired", code="invitation_expired", hint="ask for a new invitation")
    return inv


async def accept_invitation(ctx: TenantContext, uow: UnitOfWork, invitation_id: uuid.UUID) -> MemberOut:
    ctx.require(WRITE)
    inv = await _my_pending_invitation(ctx, uow, invitation_id)
    # RLS lets a person insert their own membership only while this invitation is pending.
    uow.session.add(OrgMember(org_id=inv.org_id, person_id=ctx.person_id, role=inv.role))
    await uow.session.flush()
    inv.status, inv.responded_at = "accepted", utcnow()
    await uow.session.flush()
    uow.emit("platform/invitation.accepted", {"invitation_id": inv.id}, org_id=inv.org_id)
    uow.emit(
        "platform/org_member.added",
        {"member_person_id": ctx.person_id, "role": inv.role, "via": "invitation"},
        org_id=inv.org_id,
    )
    tools_changed(uow, "org_member.added", persons=[ctx.person_id])
    return await _member_out_as_self(uow, inv.org_id, ctx)


async def _member_out_as_self(uow: UnitOfWork, org_id: uuid.UUID, ctx: TenantContext) -> MemberOut:
    row = (
        await uow.session.execute(
            select(Person, OrgMember.role, OrgMember.created_at)
            .join(OrgMember, OrgMember.person_id == Person.id)
            .where(OrgMember.org_id == org_id, OrgMember.person_id == ctx.person_id)
        )
    ).one()
    return MemberOut(person=_person_out(row[0]), role=row[1], joined_at=row[2])


async def decline_invitation(ctx: TenantContext, uow: UnitOfWork, invitation_id: uuid.UUID) -> InvitationOut:
    ctx.require(WRITE)
    inv = await _my_pending_invitation(ctx, uow, invitation_id)
    inv.status, inv.responded_at = "declined", utcnow()
    await uow.session.flush()
    uow.emit("platform/invitation.declined", {"invitation_id": inv.id}, org_id=inv.org_id)
    return await _invitation_out(uow, inv)


async def expire_invitations(uow: UnitOfWork) -> int:
    result = await uow.session.execute(
        update(Invitation)
        .where(Invitation.status == "pending", Invitation.expires_at <= func.now())
        .values(status="expired")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# --- brands ---------------------------------------------------------------------------------------


async def _brand_out(uow: UnitOfWork, brands: list[Brand]) -> list[BrandOut]:
    if not brands:
        return []
    domains: dict[uuid.UUID, list[str]] = {b.id: [] for b in brands}
    for brand_id, domain in (
        await uow.session.execute(
            select(BrandDomain.brand_id, BrandDomain.domain)
            .where(BrandDomain.brand_id.in_(list(domains)))
            .order_by(BrandDomain.domain)
        )
    ).all():
        domains[brand_id].append(domain)
    return [
        BrandOut(
            id=b.id,
            slug=b.slug,
            name=b.name,
            domains=domains[b.id],
            config=b.config,
            context="org" if b.org_id else "personal",
            org_id=b.org_id,
            created_at=b.created_at,
            updated_at=b.updated_at,
        )
        for b in brands
    ]


async def _brand(ctx: TenantContext, uow: UnitOfWork, brand_id: uuid.UUID, *, lock: bool = False) -> Brand:
    stmt = select(Brand).where(Brand.id == brand_id, Brand.tenant_id == ctx.tenant_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    brand = (await uow.session.execute(stmt)).scalar_one_or_none()
    if brand is None:
        raise NotFound(
            "no such brand in this context",
            code="brand_not_found",
            hint="list brands with [[tenancy.list_brands]]",
        )
    return brand


def _check_domains(domains: list[str]) -> list[str]:
    unique = sorted(set(domains))
    if len(unique) != len(domains):
        raise ValidationFailed(
            "a domain is listed twice", code="duplicate_domain", errors=[FieldIssue("domains", "duplicates")]
        )
    return unique


async def list_brands(ctx: TenantContext, uow: UnitOfWork, page: PageRequest) -> Page[BrandOut]:
    ctx.require(READ)
    stmt = (
        select(Brand)
        .where(Brand.tenant_id == ctx.tenant_id)
        .order_by(Brand.created_at, Brand.id)
        .limit(page.limit + 1)
    )
    if (after := _keyset(page, 2)) is not None:
        stmt = stmt.where(tuple_(Brand.created_at, Brand.id) > tuple_(*after))
    rows = list((await uow.session.execute(stmt)).scalars())
    return Page[BrandOut](
        items=await _brand_out(uow, rows[: page.limit]),
        next_cursor=_next_cursor(rows, page.limit, lambda r: (r.created_at, r.id)),
    )


@idempotent_operation("brands.create")
async def create_brand(
    ctx: TenantContext, uow: UnitOfWork, data: BrandIn, idempotency_key: str | None = None
) -> BrandOut:
    _require_manager(ctx)
    domains = _check_domains(data.domains)
    brand = Brand(
        id=uuid.uuid4(),
        person_id=ctx.person_id,
        org_id=ctx.org_id,
        slug=data.slug,
        name=data.name,
        config=data.config,
    )
    uow.session.add(brand)
    await uow.session.flush()
    uow.session.add_all(
        [
            BrandDomain(domain=d, brand_id=brand.id, person_id=ctx.person_id, org_id=ctx.org_id)
            for d in domains
        ]
    )
    await uow.session.flush()
    await uow.session.refresh(brand)
    uow.emit("platform/brand.created", {"brand_id": brand.id, "slug": brand.slug, "domains": domains})
    return (await _brand_out(uow, [brand]))[0]


async def get_brand(ctx: TenantContext, uow: UnitOfWork, brand_id: uuid.UUID) -> BrandOut:
    ctx.require(READ)
    return (await _brand_out(uow, [await _brand(ctx, uow, brand_id)]))[0]


async def update_brand(
    ctx: TenantContext, uow: UnitOfWork, brand_id: uuid.UUID, data: BrandUpdateIn, if_match: str | None = None
) -> BrandOut:
    """`if_match`: the ETag the change is based on (core.preconditions); None = last write wins."""
    _require_manager(ctx)
    # Locked even without If-Match: every writer of a brand (and its domains) queues here.
    brand = await _brand(ctx, uow, brand_id, lock=True)
    if if_match is not None:
        require_match(if_match, (await _brand_out(uow, [brand]))[0], what="brand")
    if data.name is not None:
        brand.name = data.name
    if data.config is not None:
        brand.config = data.config
    if data.domains is not None:
        wanted = set(_check_domains(data.domains))
        current = set(
            (
                await uow.session.execute(select(BrandDomain.domain).where(BrandDomain.brand_id == brand.id))
            ).scalars()
        )
        if current - wanted:
            await uow.session.execute(
                delete(BrandDomain).where(
                    BrandDomain.brand_id == brand.id, BrandDomain.domain.in_(sorted(current - wanted))
                )
            )
        uow.session.add_all(
            [
                BrandDomain(domain=d, brand_id=brand.id, person_id=brand.person_id, org_id=brand.org_id)
                for d in sorted(wanted - current)
            ]
        )
    brand.updated_at = utcnow()
    await uow.session.flush()
    uow.emit("platform/brand.updated", {"brand_id": brand.id, "slug": brand.slug})
    return (await _brand_out(uow, [brand]))[0]


async def delete_brand(ctx: TenantContext, uow: UnitOfWork, brand_id: uuid.UUID) -> None:
    _require_manager(ctx)
    brand = await _brand(ctx, uow, brand_id)
    await uow.session.delete(brand)
    await uow.session.flush()
    uow.emit("platform/brand.deleted", {"brand_id": brand_id, "slug": brand.slug})


# --- clients --------------------------------------------------------------------------------------


def _phone(uow: UnitOfWork, phone: str | None) -> str | None:
    if phone is None:
        return None
    try:
        return normalize_phone(phone, uow.db.settings.default_phone_region)
    except ValueError as exc:
        raise ValidationFailed(
            str(exc), code="invalid_phone", errors=[FieldIssue("phone", str(exc))]
        ) from exc


async def _client(ctx: TenantContext, uow: UnitOfWork, client_id: uuid.UUID, *, lock: bool = False) -> Client:
    stmt = select(Client).where(Client.id == client_id, Client.tenant_id == ctx.tenant_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    client = (await uow.session.execute(stmt)).scalar_one_or_none()
    if client is None:
        raise NotFound(
            "no such client in this context",
            code="client_not_found",
            hint="find the client with [[tenancy.list_clients]] in the same context",
        )
    return client


async def list_clients(
    ctx: TenantContext, uow: UnitOfWork, page: PageRequest, q: str | None = None
) -> Page[ClientOut]:
    """Clients of the current context, newest first; `q` matches name, email or phone."""
    ctx.require(READ)
    stmt = (
        select(Client)
        .where(Client.tenant_id == ctx.tenant_id)
        .order_by(Client.created_at.desc(), Client.id.desc())
        .limit(page.limit + 1)
    )
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(
            or_(Client.name.ilike(pattern), Client.email.ilike(pattern), Client.phone.ilike(pattern))
        )
    if (after := _keyset(page, 2)) is not None:
        stmt = stmt.where(tuple_(Client.created_at, Client.id) < tuple_(*after))
    rows = list((await uow.session.execute(stmt)).scalars())
    return Page[ClientOut](
        items=[ClientOut.model_validate(c) for c in rows[: page.limit]],
        next_cursor=_next_cursor(rows, page.limit, lambda r: (r.created_at, r.id)),
    )


@idempotent_operation("clients.create")
async def create_client(
    ctx: TenantContext, uow: UnitOfWork, data: ClientIn, idempotency_key: str | None = None
) -> ClientOut:
    ctx.require(WRITE)
    phone = _phone(uow, data.phone)
    client = Client(
        id=uuid.uuid4(),
        person_id=ctx.person_id,
        org_id=ctx.org_id,
        name=data.name,
        email=data.email,
        phone=phone,
        notes=data.notes,
        polyseme_person_id=client_person_id(uow.db.settings, ctx.tenant_id, data.email, phone),
    )
    uow.session.add(client)
    await uow.session.flush()
    await uow.session.refresh(client)
    uow.emit("platform/client.created", {"client_id": client.id})
    return ClientOut.model_validate(client)


async def get_client(ctx: TenantContext, uow: UnitOfWork, client_id: uuid.UUID) -> ClientOut:
    ctx.require(READ)
    return ClientOut.model_validate(await _client(ctx, uow, client_id))


async def update_client(
    ctx: TenantContext,
    uow: UnitOfWork,
    client_id: uuid.UUID,
    data: ClientUpdateIn,
    if_match: str | None = None,
) -> ClientOut:
    """`if_match`: the ETag the change is based on (core.preconditions); None = last write wins."""
    ctx.require(WRITE)
    client = await _client(ctx, uow, client_id, lock=True)
    if if_match is not None:
        require_match(if_match, ClientOut.model_validate(client), what="client")
    fields = data.model_dump(exclude_unset=True)
    if "phone" in fields:
        fields["phone"] = _phone(uow, fields["phone"])
    if "name" in fields and fields["name"] is None:
        raise ValidationFailed("name cannot be null", errors=[FieldIssue("name", "required")])
    for key, value in fields.items():
        setattr(client, key, value)
    if "email" in fields or "phone" in fields:
        client.polyseme_person_id = client_person_id(
            uow.db.settings, ctx.tenant_id, client.email, client.phone
        )
    if fields:
        client.updated_at = utcnow()
        await uow.session.flush()
        uow.emit("platform/client.updated", {"client_id": client.id, "changed": sorted(fields)})
    return ClientOut.model_validate(client)


async def delete_client(ctx: TenantContext, uow: UnitOfWork, client_id: uuid.UUID) -> None:
    ctx.require(WRITE)
    client = await _client(ctx, uow, client_id)
    await uow.session.delete(client)
    await uow.session.flush()
    uow.emit("platform/client.deleted", {"client_id": client_id})
