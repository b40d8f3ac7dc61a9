"""Alembic's environment: how `flask db ...` and `init-db` run migrations.

myapp/migrating/ builds the Alembic config in code (there is no
alembic.ini) and hands over the connection it opened: NullPool, the
migration's short ``lock_timeout``, the migration lock held. Given none (a
script driving Alembic's API with only this directory), this file opens one
the same way, from the app's own validated settings.
"""

from __future__ import annotations

from alembic import context

from myapp.migrating import autogen_exact
from myapp.migrating.config import app_settings, migration_engine, target_metadata

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = migration_engine(app_settings())
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=config.attributes.get("target_metadata") or target_metadata(),
        # Each revision commits on its own: a failure in revision N leaves
        # 1..N-1 applied and recorded, and an autocommit_block (CREATE INDEX
        # CONCURRENTLY) commits only its own revision's work before it.
        transaction_per_migration=True,
        compare_type=True,
        compare_server_default=True,
        # Alembic misreads expression and GIN indexes and skips CHECK
        # constraints: myapp.migrating.autogen_exact compares those, exactly.
        include_object=autogen_exact.include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("Offline (--sql) migrations are not supported: run them against the database.")
run_migrations_online()
