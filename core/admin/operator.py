"""The operator's promote and demote (database access, no HTTP door; audited as `operator`)."""

from __future__ import annotations

from core import audit
from core.admin.lookup import find_person
from core.admin.schemas import (
    AdminPersonOut,
    PromotionOut,
)
from core.errors import Conflict
from core.observability import get_logger
from core.registry.changes import tools_changed
from core.uow import Database

log = get_logger("atlilith.admin")


async def set_platform_admin(db: Database, handle: str, admin: bool) -> PromotionOut:
    """`atlilith admin promote|demote <handle>`: how the first platform admin is made. Only
    someone with database access can run it; it is audited with the actor `operator`."""
    async with db.system() as uow:
        person = await find_person(uow, handle, lock=True)
        if admin and person.status != "active":
            raise Conflict(
                f"{person.slug!r} is suspended",
                code="account_suspended",
                hint="reactivate the person first",
            )
        if person.is_platform_admin == admin:
            return PromotionOut(person=AdminPersonOut.model_validate(person), changed=False)
        person.is_platform_admin = admin
        await uow.session.flush()
        # The platform's own toolsets are listed to platform admins only.
        tools_changed(uow, "person.promoted" if admin else "person.demoted", persons=[person.id])
        await uow.session.refresh(person)
        await audit.record(
            uow,
            None,
            "person.promote" if admin else "person.demote",
            "person",
            person.id,
            {"slug": person.slug},
        )
        log.info("platform_admin_changed", person_id=str(person.id), admin=admin)
        return PromotionOut(person=AdminPersonOut.model_validate(person), changed=True)
