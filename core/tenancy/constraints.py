"""Database constraints of tenancy tables, as the errors a caller sees when one is broken."""

from __future__ import annotations

from core.errors import Conflict, FieldIssue, constraint_error

# One pending invitation per invitee: revoking it is what lets the org invite them again.
_PENDING_HINT = (
    "the pending invitation stands until it is answered or revoked: find it with "
    "[[tenancy.list_invitations]], revoke it ([[tenancy.revoke_invitation]]) to invite again"
)


def _taken(field: str, code: str, message: str, hint: str) -> Conflict:
    return Conflict(message, code=code, hint=hint, errors=[FieldIssue(field, message, "taken")])


constraint_error(
    "uq_persons_slug",
    _taken("slug", "slug_taken", "this slug is taken", "choose another slug"),
)
constraint_error(
    # Persons and orgs share one namespace: a handle names a booking page either way.
    "pk_handles",
    _taken(
        "slug", "slug_taken", "this handle is taken", "choose another handle (persons and orgs share them)"
    ),
)
constraint_error(
    "uq_persons_email",
    _taken("email", "email_taken", "an account with this email exists", "sign in with [[tenancy.login]]"),
)
constraint_error(
    "uq_orgs_slug", _taken("slug", "slug_taken", "this org slug is taken", "choose another slug")
)
constraint_error(
    "uq_brands_slug",
    _taken(
        "slug", "slug_taken", "this brand slug is taken", "choose another slug (it names the public site)"
    ),
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
        "update that client instead (find it with [[tenancy.list_clients]], q=<email>)",
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
    Conflict("this person already has a pending invitation", code="invitation_pending", hint=_PENDING_HINT),
)
constraint_error(
    "uq_invitations_pending_email",
    Conflict("this email already has a pending invitation", code="invitation_pending", hint=_PENDING_HINT),
)
constraint_error(
    "fk_orgs_owner_id_persons",
    Conflict("this person still owns orgs", code="owns_orgs", hint="transfer or delete those orgs first"),
)
