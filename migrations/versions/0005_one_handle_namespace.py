"""platform: persons and orgs share one namespace of handles

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 22:20:00.000000

A handle names a public booking page (`/book/{slug}`) whether a person or an org holds it, but
each table had only its own unique index: an org could be created with a person's handle (or a
person sign up with an org's) and take over that page. Every handle now also holds a row of
`platform_private.handles`, written by triggers of both tables, whose primary key refuses a
second holder under any concurrency (`pk_handles`: 409 `slug_taken`). A database where a person
and an org already share a handle stops the upgrade, naming them.
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

from migrations.rls import execute_script

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "security_0001"  # platform_private


def upgrade() -> None:
    clash = op.get_bind().execute(
        text("SELECT p.slug FROM platform.persons p JOIN platform.orgs o ON o.slug = p.slug ORDER BY 1")
    )
    shared = [row[0] for row in clash]
    if shared:
        raise RuntimeError(
            "handles held by both a person and an org: " + ", ".join(shared) + "; rename the org "
            "(PATCH /v1/orgs/{slug}) or the person, and run `atlilith migrate` again"
        )
    op.execute(
        "CREATE TABLE platform_private.handles ("
        " slug text NOT NULL, kind text NOT NULL, CONSTRAINT pk_handles PRIMARY KEY (slug))"
    )
    # No policy: only its owner (the triggers' functions) reads or writes it.
    op.execute("ALTER TABLE platform_private.handles ENABLE ROW LEVEL SECURITY")
    op.execute(
        "INSERT INTO platform_private.handles (slug, kind)"
        " SELECT slug, 'person' FROM platform.persons UNION ALL SELECT slug, 'org' FROM platform.orgs"
    )
    execute_script(HANDLES)


HANDLES = """
CREATE FUNCTION platform_private.hold_handle() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    DELETE FROM platform_private.handles WHERE slug = OLD.slug;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO platform_private.handles (slug, kind) VALUES (NEW.slug, TG_ARGV[0]);
  END IF;
  RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION platform_private.hold_handle() FROM PUBLIC;

CREATE TRIGGER hold_handle AFTER INSERT OR DELETE OR UPDATE OF slug ON platform.persons
  FOR EACH ROW EXECUTE FUNCTION platform_private.hold_handle('person');
CREATE TRIGGER hold_handle AFTER INSERT OR DELETE OR UPDATE OF slug ON platform.orgs
  FOR EACH ROW EXECUTE FUNCTION platform_private.hold_handle('org');
"""


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
