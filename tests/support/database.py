"""A throw-away PostgreSQL database per test run, and ways to look inside it."""

from __future__ import annotations

import os
import secrets

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

ADMIN_URL_VARIABLE = "TEST_DATABASE_ADMIN_URL"
DEFAULT_ADMIN_URL = "postgresql+psycopg2:///postgres"


class ServerUnreachable(RuntimeError):
    pass


def admin_url() -> URL:
    return make_url(os.environ.get(ADMIN_URL_VARIABLE) or DEFAULT_ADMIN_URL)


def _admin_engine() -> Engine:
    return create_engine(
        admin_url(),
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args={"connect_timeout": 3},
    )


def create_test_database() -> URL:
    """Create an empty, uniquely named database; return its URL."""
    url = admin_url()
    name = f"myapp_test_{os.getpid()}_{secrets.token_hex(3)}"
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except OperationalError as err:
        reason = str(err.orig).strip().splitlines()[0]
        raise ServerUnreachable(
            f"Cannot reach PostgreSQL at {url.render_as_string(hide_password=True)} "
            f"({reason}). Point the tests at a server with "
            f"{ADMIN_URL_VARIABLE}=postgresql+psycopg2://USER@HOST:PORT/postgres"
        ) from None
    finally:
        engine.dispose()
    return url.set(database=name)


def drop_test_database(url: URL) -> None:
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    finally:
        engine.dispose()


def table_snapshot(engine: Engine) -> dict[str, list[tuple]]:
    """Every row of the app's tables: compare two snapshots to prove nothing was written."""
    with engine.connect() as conn:
        return {
            table: [tuple(row) for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY id"))]
            for table in ("users", "audit_events")
        }


def row_counts(engine: Engine) -> tuple[int, int]:
    """(users, audit_events)."""
    with engine.connect() as conn:
        return (
            conn.scalar(text("SELECT count(*) FROM users")),
            conn.scalar(text("SELECT count(*) FROM audit_events")),
        )


def truncate_tables(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE users, audit_events RESTART IDENTITY"))
