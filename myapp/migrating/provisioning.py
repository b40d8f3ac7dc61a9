"""Creating the database ``init-db`` is pointed at, when it does not exist yet."""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

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
