"""Row-level security helpers shared by every component's migrations.

Policies read per-transaction settings that the unit of work (or `platform.resolve_context`)
sets: `app.mode`, `app.person_id`, `app.org_id`. Tenant tables carry a generated
`tenant_id = COALESCE(org_id, person_id)`, so one comparison isolates personal and org rows.
The `(SELECT fn())` form makes PostgreSQL evaluate the context once per statement.
"""

from __future__ import annotations

from alembic import op

SYSTEM = "(SELECT platform.ctx_is_system())"
TENANT = "(SELECT platform.ctx_tenant_id())"
PERSON = "(SELECT platform.ctx_person_id())"
ORG = "(SELECT platform.ctx_org_id())"


def enable_tenant_rls(table: str) -> None:
    """Standard isolation for a tenant table `schema.table` with a `tenant_id` column."""
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {table} USING ({SYSTEM} OR tenant_id = {TENANT})"
        f" WITH CHECK ({SYSTEM} OR tenant_id = {TENANT})"
    )


def enable_rls(table: str, policies: dict[str, tuple[str, str | None, str | None]]) -> None:
    """Custom policies: name -> (command, USING expression, WITH CHECK expression)."""
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    for name, (command, using, check) in policies.items():
        sql = f"CREATE POLICY {name} ON {table} FOR {command}"
        if using:
            sql += f" USING ({using})"
        if check:
            sql += f" WITH CHECK ({check})"
        op.execute(sql)


def split_sql(script: str) -> list[str]:
    """Split a script into statements at semicolons outside $$-quoted bodies and comments
    (asyncpg prepares each statement, so a script cannot go in one call)."""
    statements: list[str] = []
    buf: list[str] = []
    in_dollar = False
    i = 0
    while i < len(script):
        if script.startswith("$$", i):
            in_dollar = not in_dollar
            buf.append("$$")
            i += 2
            continue
        ch = script[i]
        if not in_dollar and script.startswith("--", i):
            end = script.find("\n", i)
            i = len(script) if end == -1 else end
            continue
        if ch == ";" and not in_dollar:
            stmt = "".join(buf).strip()
            if stmt:
                statements.append(stmt)
            buf = []
        else:
            buf.append(ch)
        i += 1
    tail = "".join(buf).strip()
    if tail:
        statements.append(tail)
    return statements


def execute_script(script: str) -> None:
    for statement in split_sql(script):
        op.execute(statement)
