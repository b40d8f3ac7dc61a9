"""Provisioning the database and running its migrations (Alembic).

* :func:`alembic_config` is the Alembic configuration, built in code from
  the app's validated settings: there is no ``alembic.ini`` to keep in step.
* :func:`migration_engine` is what every migration runs on: one connection
  (``NullPool``), no ``statement_timeout`` (an index build may take
  minutes) but a short ``lock_timeout``: a DDL statement queued behind a long
  transaction would make every request queue behind *it*; it fails instead,
  and the deploy is retried.
* :func:`init_database` is ``flask init-db``: create the database if
  missing, adopt a database made before migrations existed, upgrade to head.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, MetaData, create_engine, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from myapp import schema_diff

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

# What the pre-migration `init-db` (create_all) made is exactly the schema of
# this revision: 0001's tables plus 0002's audit history index. Such a
# database is stamped here, then upgraded.
ADOPTION_REVISION = "0002"

class InitRefused(Exception):
    """The database holds something init-db will not touch; nothing was changed."""


def target_metadata() -> MetaData:
    """The models' tables: what ``db check`` and ``--autogenerate`` compare against."""
    from myapp.models import Base

    return Base.metadata


def app_settings() -> Mapping[str, Any]:
    """The app's validated settings (for ``alembic`` run by hand)."""
    from myapp import create_app

    return create_app().config


def migration_engine(settings: Mapping[str, Any]) -> Engine:
    options = (
        f"-c lock_timeout={settings['MIGRATION_LOCK_TIMEOUT_MS']}"
        # Building an index on a big table legitimately takes long; it is the
        # locks a migration waits for that must be short.
        " -c statement_timeout=0"
    )
    return create_engine(
        settings["DATABASE_URL"],
        poolclass=NullPool,
        connect_args={
            "connect_timeout": settings["DB_CONNECT_TIMEOUT"],
            "options": options,
            "application_name": "myapp-migrate",
        },
    )


def alembic_config(
    connection: Connection | None = None, *, stdout: TextIO | None = None, **attributes: Any
) -> Config:
    """Alembic's config for ``migrations/``; ``connection`` is used by env.py."""
    config = Config(stdout=stdout or sys.stdout)
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # New revisions are numbered (0003_add_accounts.py): their order reads
    # at a glance, and two branches adding the same number collide in git.
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    config.attributes.update(attributes)
    return config


# pg_advisory_lock key: one migration run at a time on a database.
MIGRATION_LOCK_KEY = 0x6D79617070  # "myapp"


@contextmanager
def one_at_a_time(conn: Connection, on_wait: Callable[[], None] = lambda: None) -> Iterator[None]:
    """Hold the migration lock of ``conn``'s database while the block runs.

    Two deploys upgrading at once would both try to create the same tables;
    with this the second waits for the first, then finds nothing to do. A
    session-level advisory lock (taken without ``lock_timeout``: waiting for
    another migration is right), so it needs a direct connection, not one
    through PgBouncer in transaction mode. ``on_wait`` is called before
    waiting, if another run holds it.
    """
    with conn.begin():
        taken = conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    if not taken:
        on_wait()
        with conn.begin():
            conn.execute(text("SET LOCAL lock_timeout = 0"))
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    try:
        yield
    finally:
        if conn.in_transaction():
            conn.rollback()
        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        conn.commit()


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


# --- init-db -----------------------------------------------------------------


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
    not the app's). All of it under :func:`one_at_a_time`.
    """
    created = create_database_if_missing(settings["DATABASE_URL"], settings["DB_CONNECT_TIMEOUT"])
    engine = migration_engine(settings)
    try:
        with engine.connect() as conn, one_at_a_time(conn, on_wait):
            tables = set(inspect(conn).get_table_names())
            versioned = "alembic_version" in tables
            conn.commit()  # env.py must find no transaction open
            if not versioned and tables:
                _refuse_another_apps(tables)
            if drop:
                drop_app_tables(conn)
                versioned, tables = False, set()
            adopted = False
            if not versioned and tables:
                _refuse_drift(conn)
                command.stamp(alembic_config(conn), ADOPTION_REVISION)
                adopted = True
            before = current_revision(conn)
            conn.commit()
            command.upgrade(alembic_config(conn), "head")
            return InitReport(created, drop, adopted, before, current_revision(conn))
    finally:
        engine.dispose()


def _refuse_another_apps(tables: set[str]) -> None:
    ours = set(target_metadata().tables)
    if not tables & ours:
        names = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise InitRefused(
            f"the database holds tables of another application ({names}) and none of"
            " myapp's; use an empty database (nothing was changed)"
        )


def _refuse_drift(conn: Connection) -> None:
    """Compare an unversioned database with the adoption revision's schema."""
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


def drop_app_tables(conn: Connection) -> None:
    """Drop every table of the app and ``alembic_version``, in one transaction."""
    with conn.begin():
        target_metadata().drop_all(conn, checkfirst=True)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))


# --- creating the database -----------------------------------------------------


def create_database_if_missing(url: str | URL, connect_timeout: int = 3) -> bool:
    """Create the database named in ``url``; return True if it was created.

    The database itself is tried first, so a deployment role that may use
    its database but not the ``postgres`` one gets through when there is
    nothing to create. Only when that fails does it ask the server, through
    ``postgres``, whether the database exists (which also reports an
    unreachable server as such).
    """
    url = make_url(url)
    if _can_connect(url, connect_timeout):
        return False
    admin = create_engine(
        url.set(database="postgres"),
        isolation_level="AUTOCOMMIT",  # CREATE DATABASE cannot run in a transaction
        poolclass=NullPool,
        connect_args={"connect_timeout": connect_timeout},
    )
    try:
        with admin.connect() as conn:
            exists = conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": url.database},
            )
            if exists:
                return False
            quoted = conn.dialect.identifier_preparer.quote(url.database)
            conn.exec_driver_sql(f"CREATE DATABASE {quoted}")
            return True
    finally:
        admin.dispose()


def _can_connect(url: URL, connect_timeout: int) -> bool:
    probe = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": connect_timeout})
    try:
        with probe.connect():
            return True
    except OperationalError:
        return False
    finally:
        probe.dispose()
