"""A throw-away PostgreSQL database per test run, and ways to look inside it."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from alembic import command
from sqlalchemy import Connection, Engine, Row, create_engine, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from myapp.migrating.config import alembic_config

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


def upgrade_to_head(url: URL | str) -> None:
    """Bring the database's schema to the latest migration (``flask db upgrade``)."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            command.upgrade(alembic_config(conn), "head")
    finally:
        engine.dispose()


APP_TABLES = ("users", "audit_events", "accounts", "login_failures")


def truncate_tables(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(APP_TABLES)} RESTART IDENTITY"))


class Tables:
    """The app's tables, as a test reads them.

    ``bind`` is the test's own connection when the test runs inside a
    transaction that is rolled back at its end (it sees what the app's
    sessions wrote there), else an engine: a fresh connection each look.
    """

    def __init__(self, bind: Engine | Connection):
        self.bind = bind

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        if isinstance(self.bind, Connection):
            yield self.bind
        else:
            with self.bind.connect() as conn:
                yield conn

    def write(self, sql: str, params: dict | None = None) -> None:
        """Change the tables to arrange a test: in the test's transaction
        when it is rolled back at its end, else committed at once."""
        if isinstance(self.bind, Connection):
            self.bind.execute(text(sql), params or {})
        else:
            with self.bind.begin() as conn:
                conn.execute(text(sql), params or {})

    def scalar(self, sql: str, params: dict | None = None):
        with self.connect() as conn:
            return conn.scalar(text(sql), params or {})

    def snapshot(self) -> dict[str, list[tuple]]:
        """Every row of every table: two equal snapshots mean nothing was written."""
        with self.connect() as conn:
            return {
                table: [tuple(row) for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY id"))]
                for table in APP_TABLES
            }

    def counts(self) -> tuple[int, int]:
        """(users, audit_events)."""
        with self.connect() as conn:
            return (
                conn.scalar(text("SELECT count(*) FROM users")),
                conn.scalar(text("SELECT count(*) FROM audit_events")),
            )

    def emails(self) -> set[str]:
        with self.connect() as conn:
            return set(conn.scalars(text("SELECT email FROM users")))

    def audit(self, user_id: int) -> list[Row]:
        """The user's audit events, oldest first: (action, detail) rows."""
        with self.connect() as conn:
            return conn.execute(
                text("SELECT action, detail FROM audit_events WHERE user_id = :id ORDER BY id"),
                {"id": user_id},
            ).all()


@contextmanager
def assert_nothing_written(tables: Tables) -> Iterator[None]:
    """Fails unless every row of the app's tables is the same after the block."""
    before = tables.snapshot()
    yield
    assert tables.snapshot() == before, "the database changed"


def schema_dump(url: URL | str) -> str:
    """``pg_dump --schema-only``: the whole schema as PostgreSQL prints it.

    Without the ``\\restrict KEY`` lines of newer pg_dumps, whose key is new
    in every dump.
    """
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    dump = subprocess.run(
        ["pg_dump", "--schema-only", "--no-owner", "--no-privileges", f"--dbname={dsn}"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    return "".join(line for line in dump.splitlines(keepends=True)
                   if not line.startswith(("\\restrict ", "\\unrestrict ")))


@contextmanager
def assert_schema_unchanged(url: URL | str) -> Iterator[None]:
    """Fails unless the whole schema dump is the same after the block."""
    before = schema_dump(url)
    yield
    assert schema_dump(url) == before, "the schema changed"


def table_names(url: URL | str) -> set[str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
