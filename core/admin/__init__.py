"""Platform admin: look at persons and orgs across tenants, suspend and reactivate persons, read
the audit log (kept by `core.audit`). Every operation first re-reads that the caller is a
platform admin (a flag on the person's row, never a token claim or an org role), then works in
system mode. Every change writes an audit entry in its own transaction.

Suspension rules: a reason is required; the person's sessions are revoked (their access and
refresh tokens stop at once; a reactivated person signs in again), their API keys are refused
while suspended and work again after reactivation (`core.auth` checks the status on every
request). Nobody suspends themself, and an admin cannot suspend another platform admin: only
the operator, who has database access, demotes an admin first (`atlilith admin demote`).

Where things live: `persons` (list, look at, suspend, reactivate), `orgs`, `audit_log`,
`dead_letters`, `operator` (promote and demote, database access only); `lookup` finds a person
by handle or id.
"""

from core.admin.audit_log import list_audit
from core.admin.dead_letters import list_dead_letters, redrive_dead_letters
from core.admin.operator import set_platform_admin
from core.admin.orgs import list_orgs
from core.admin.persons import get_person, list_persons, reactivate_person, suspend_person

__all__ = [
    "get_person",
    "list_audit",
    "list_dead_letters",
    "list_orgs",
    "list_persons",
    "reactivate_person",
    "redrive_dead_letters",
    "set_platform_admin",
    "suspend_person",
]
