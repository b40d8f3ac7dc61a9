"""Migrations take turns: one run at a time on a database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text

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

