"""Adopting a database made before migrations existed (tables, no
``alembic_version``): only when its schema is exactly what the migrations
make up to :data:`ADOPTION_REVISION`, compared by PostgreSQL's own account
of both (:mod:`myapp.migrating.schema_diff`)."""

from __future__ import annotations

import logging

from alembic import command
from sqlalchemy import Connection, text

from myapp.migrating import schema_diff
from myapp.migrating.config import alembic_config, target_metadata

# What the pre-migration `init-db` (create_all) made is exactly the schema of
# this revision: 0001's tables plus 0002's audit history index. Such a
# database is stamped here, then upgraded.
ADOPTION_REVISION = "0002"


class InitRefused(Exception):
    """The database holds something init-db will not touch; nothing was changed."""


def refuse_another_apps(tables: set[str]) -> None:
    """Refuse a database whose tables are all some other application's."""
    ours = set(target_metadata().tables)
    if not tables & ours:
        names = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise InitRefused(
            f"the database holds tables of another application ({names}) and none of"
            " myapp's; use an empty database (nothing was changed)"
        )


def refuse_drift(conn: Connection) -> None:
    """Refuse an unversioned database whose schema is not the adoption revision's."""
    actual = schema_diff.describe(conn, conn.scalar(text("SELECT current_schema()")))
    conn.rollback()
    migration_log = logging.getLogger("alembic.runtime.migration")
    level = migration_log.level
    migration_log.setLevel(logging.WARNING)  # a rehearsal's "Running upgrade" would mislead
    try:
        expected = schema_diff.rehearse(
            conn,
            lambda scratch: command.upgrade(
                alembic_config(scratch, rehearsal=True), ADOPTION_REVISION
            ),
        )
    finally:
        migration_log.setLevel(level)
    found = schema_diff.differences(actual, expected)
    if found:
        raise InitRefused(
            f"the database has tables but no alembic_version, and its schema is not"
            f" revision {ADOPTION_REVISION}'s, so it cannot be adopted: {found[0]}"
            f" ({len(found)} difference{'s' if len(found) > 1 else ''}; nothing was changed)"
        )


def adopt(conn: Connection) -> None:
    """Record the adoption revision as applied; the rows stay as they are."""
    command.stamp(alembic_config(conn), ADOPTION_REVISION)
