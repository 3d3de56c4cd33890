"""Alembic environment. `core.migrate` hands us an open connection already acting as the owner role."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from core.db import Base
from core.events import load_handlers
from core.features import load_models

load_models()
load_handlers()
target_metadata = Base.metadata


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    if type_ == "schema":
        return name in set(context.config.attributes.get("schemas", ()))
    return True


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_schemas=True,
        include_name=include_name,
        compare_type=True,
        version_table_schema="atlilith_meta",
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `atlilith migrate`, which prepares roles and the connection")
run(connection)
