"""The database's schema, by Alembic migrations (``migrations/``).

This module is ``flask init-db`` (:func:`init_database`); the steps, one
module each:

* ``config``        — Alembic's config built in code, the connection every
  migration runs on (short ``lock_timeout``), the next revision's number;
* ``lock``          — migration runs take turns (:func:`one_at_a_time`);
* ``provisioning``  — create the database if it is missing;
* ``adoption``      — adopt a database made before migrations existed, or
  refuse it (:class:`InitRefused`), by ``schema_diff``'s exact comparison;
* ``autogen_exact`` — exact index and CHECK comparison for ``db check`` and
  ``db revision --autogenerate``; ``diff_text`` words its findings;
* ``online_ddl``    — ``create_index_concurrently`` for revisions on live tables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from alembic import command
from sqlalchemy import Connection, inspect, text

from myapp.migrating.adoption import ADOPTION_REVISION, InitRefused, adopt
from myapp.migrating.adoption import refuse_another_apps, refuse_drift
from myapp.migrating.config import alembic_config, current_revision, migration_engine
from myapp.migrating.config import target_metadata
from myapp.migrating.lock import one_at_a_time
from myapp.migrating.provisioning import create_database_if_missing
from myapp.role_settings import apply_role_settings

__all__ = ["ADOPTION_REVISION", "InitRefused", "InitReport", "init_database"]


@dataclass(frozen=True)
class InitReport:
    created_database: bool
    dropped: bool
    adopted: bool
    before: str | None  # revision before the upgrade
    after: str | None


def init_database(
    settings: Mapping[str, Any], *, drop: bool = False, on_wait: Callable[[], None] = lambda: None
) -> InitReport:
    """``flask init-db``: create the database if missing, then upgrade to head.

    A database without ``alembic_version`` but with tables was made by the
    pre-migration init-db: if its schema is exactly what the migrations make
    up to :data:`ADOPTION_REVISION`, it is stamped at that revision (its rows
    untouched) and upgraded; otherwise :class:`InitRefused` names the first
    difference, and nothing has changed. ``drop`` first drops every table of
    the app and ``alembic_version`` (after the same check for tables that are
    not the app's). Then the app's session limits become the role's defaults
    in this database (:mod:`myapp.role_settings`). All of it under
    :func:`one_at_a_time`.
    """
    created = create_database_if_missing(settings["DATABASE_URL"], settings["DB_CONNECT_TIMEOUT"])
    engine = migration_engine(settings)
    try:
        with engine.connect() as conn, one_at_a_time(conn, on_wait):
            tables = set(inspect(conn).get_table_names())
            versioned = "alembic_version" in tables
            conn.commit()  # env.py must find no transaction open
            if not versioned and tables:
                refuse_another_apps(tables)
            if drop:
                drop_app_tables(conn)
                versioned, tables = False, set()
            adopted = False
            if not versioned and tables:
                refuse_drift(conn)
                adopt(conn)
                adopted = True
            before = current_revision(conn)
            conn.commit()
            command.upgrade(alembic_config(conn), "head")
            # The app's session limits as the role's defaults in this database:
            # they hold through PgBouncer, which refuses per-connection options.
            apply_role_settings(engine, settings)
            return InitReport(created, drop, adopted, before, current_revision(conn))
    finally:
        engine.dispose()


def drop_app_tables(conn: Connection) -> None:
    """Drop every table of the app and ``alembic_version``, in one transaction."""
    with conn.begin():
        target_metadata().drop_all(conn, checkfirst=True)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
