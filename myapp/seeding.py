"""Generate demo and benchmark users fast, entirely inside PostgreSQL.

One ``INSERT ... SELECT FROM generate_series`` per batch creates the users
and, through a data-modifying CTE, their ``create`` audit events: no rows
travel between Python and the server. Each batch is its own short
transaction, so a large seed never holds locks for long and reports progress.

Two exceptions, both measured with ``bench/run`` (docs/performance.md):

* Seeding an *empty* table runs as one transaction that drops the GIN
  trigram search index, inserts every batch and builds it once at the end.
  Keeping a GIN trigram index up to date row by row costs more than building
  it in one go (1,000,000 users: about half the time). ``DROP INDEX`` locks
  the table until the commit: a server running meanwhile waits (and answers
  503 once ``statement_timeout`` passes) for the seed's whole duration —
  seeding an empty table is a set-up step, before serving. An interrupted
  seed rolls back entirely, index included.
* After any seed, the trigram index's pending list (rows GIN has not yet
  merged into the index, which every search scans) is merged, and the
  planner's statistics are refreshed: without them PostgreSQL may answer a
  rare ``?q=`` by walking the whole primary key instead of the index.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from sqlalchemy import func, insert, literal, orm, select, text
from sqlalchemy.dialects.postgresql import JSONB

from myapp.models import SEARCH_INDEX, AuditEvent, User

BATCH_SIZE = 50_000


def _seed_batch_statement(run: str, first: int, last: int):
    n = func.generate_series(first, last).table_valued("n").render_derived()
    created = (
        insert(User)
        .from_select(
            [User.name, User.email],
            select(
                func.concat("Demo User ", n.c.n),
                func.concat("demo-", run, "-", n.c.n, "@example.com"),
            ),
        )
        .returning(User.id)
        .cte("created")
    )
    return insert(AuditEvent).from_select(
        [AuditEvent.user_id, AuditEvent.action, AuditEvent.detail],
        select(
            created.c.id,
            literal("create"),
            literal({"source": "seed-users"}, JSONB),
        ),
    )


def _batches(run: str, count: int, batch_size: int):
    """(statement, size) for each batch of a seed of ``count`` users."""
    for first in range(1, count + 1, batch_size):
        last = min(first + batch_size - 1, count)
        yield _seed_batch_statement(run, first, last), last - first + 1


def _no_timeout(session: orm.Session) -> None:
    # A seed legitimately runs longer than a web request may.
    session.execute(text("SET LOCAL statement_timeout = 0"))


def seed_users(
    session: orm.Session,
    count: int,
    *,
    batch_size: int = BATCH_SIZE,
    on_batch: Callable[[int], None] = lambda done: None,
) -> int:
    """Insert ``count`` generated users; call ``on_batch(n)`` after each batch."""
    # A fresh token per run keeps emails unique when seeding twice.
    run = secrets.token_hex(4)
    with session.begin():
        empty = session.scalar(select(User.id).limit(1)) is None
    if empty:
        # One transaction: the search index dropped, the table filled, the index built once.
        with session.begin():
            _no_timeout(session)
            SEARCH_INDEX.drop(session.connection())
            for statement, size in _batches(run, count, batch_size):
                session.execute(statement)
                on_batch(size)
            session.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
            SEARCH_INDEX.create(session.connection())
    else:
        for statement, size in _batches(run, count, batch_size):
            with session.begin():
                _no_timeout(session)
                session.execute(statement)
            on_batch(size)
    with session.begin():
        _no_timeout(session)
        session.execute(
            text("SELECT gin_clean_pending_list(CAST(:index AS regclass))"),
            {"index": SEARCH_INDEX.name},
        )
        session.execute(text("ANALYZE users, audit_events"))
    return count
