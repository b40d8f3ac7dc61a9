"""Schema changes on a table that is serving traffic, for migration scripts.

``CREATE INDEX`` blocks every write to its table until the index is built:
on a million rows, seconds of 503s. ``CREATE INDEX CONCURRENTLY`` lets
reads and writes go on (it takes ``SHARE UPDATE EXCLUSIVE``, which conflicts
with neither) at the price of three rules, which
:func:`create_index_concurrently` follows so a migration does not have to:

* It cannot run inside a transaction block, so it runs in Alembic's
  ``autocommit_block`` (which commits the migration's transaction so far:
  keep such a revision to the index alone).
* It waits for every transaction that could still write the table; under
  the migration's ``lock_timeout`` a long one makes it fail instead of
  stalling the deploy. A failed build leaves an INVALID index behind (kept
  up to date by every write, used by no query), so each attempt first drops
  an invalid leftover, and a lock timeout or deadlock is retried a few times.
* A valid index of that name means an earlier run built it and stopped
  before Alembic recorded the revision: it is kept, not built twice.

docs/migrations.md shows how to use them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from alembic import context, op
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

log = logging.getLogger("alembic.runtime.migration")

# SQLSTATEs worth another attempt: lock_not_available (lock_timeout ran
# out) and deadlock_detected. Anything else is a real error.
RETRYABLE = {"55P03", "40P01"}
ATTEMPTS = 4
FIRST_PAUSE_SECONDS = 1.0

_INDEX_STATE = text(
    "SELECT x.indisvalid FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
    " WHERE i.relname = :name AND i.relnamespace = current_schema()::regnamespace"
)


def create_index_concurrently(
    index_name: str,
    table_name: str,
    columns: Sequence[Any],
    *,
    attempts: int = ATTEMPTS,
    pause_seconds: float = FIRST_PAUSE_SECONDS,
    **kw: Any,
) -> None:
    """``op.create_index(...)``, built without blocking writes to the table.

    Takes ``op.create_index``'s arguments (``unique=True``,
    ``postgresql_using="gin"``, ``sa.text(...)`` columns...).
    """
    if _rehearsal():
        # init-db's rehearsal replays revisions inside one transaction that it
        # rolls back: a plain CREATE INDEX gives the same definition there.
        op.create_index(index_name, table_name, columns, **kw)
        return
    bind = op.get_bind()

    def build() -> None:
        valid = bind.scalar(_INDEX_STATE, {"name": index_name})
        if valid:
            log.info("Index %s is already built; keeping it", index_name)
            return
        if valid is not None:
            log.info("Dropping %s, left INVALID by a failed build", index_name)
            op.drop_index(index_name, table_name=table_name,
                          postgresql_concurrently=True, if_exists=True)
        op.create_index(index_name, table_name, columns, postgresql_concurrently=True, **kw)

    with op.get_context().autocommit_block():
        _retried(f"Building {index_name}", build, attempts, pause_seconds)


def drop_index_concurrently(index_name: str, table_name: str) -> None:
    """``DROP INDEX CONCURRENTLY IF EXISTS``: waits for the index's readers
    instead of locking out the table's."""
    if _rehearsal():
        op.drop_index(index_name, table_name=table_name, if_exists=True)
        return
    with op.get_context().autocommit_block():
        op.drop_index(index_name, table_name=table_name,
                      postgresql_concurrently=True, if_exists=True)


def validate_constraint(
    constraint_name: str,
    table_name: str,
    *,
    attempts: int = ATTEMPTS,
    pause_seconds: float = FIRST_PAUSE_SECONDS,
) -> None:
    """``ALTER TABLE … VALIDATE CONSTRAINT`` of a constraint added ``NOT VALID``.

    The scan that checks the existing rows then holds only ``SHARE UPDATE
    EXCLUSIVE`` on the table (reads and writes go on), and in its own
    transaction: not under the ``ACCESS EXCLUSIVE`` an earlier ``ALTER
    TABLE`` of the same revision would hold until the revision commits.
    A lock timeout or deadlock is retried like an index build.
    """
    statement = text(
        f'ALTER TABLE "{table_name}" VALIDATE CONSTRAINT "{constraint_name}"'
    )
    if _rehearsal():
        op.execute(statement)
        return
    bind = op.get_bind()
    with op.get_context().autocommit_block():
        _retried(f"Validating {constraint_name}", lambda: bind.execute(statement),
                 attempts, pause_seconds)


def _retried(doing: str, step: Callable[[], object], attempts: int, pause_seconds: float) -> None:
    """Run ``step``, again after a lock timeout or a deadlock, ``attempts``
    times at most, pausing twice as long each time."""
    for attempt in range(1, attempts + 1):
        try:
            step()
            return
        except OperationalError as err:
            code = getattr(err.orig, "pgcode", None)
            if code not in RETRYABLE or attempt == attempts:
                raise
            first_line = str(err.orig).strip().splitlines()[0]
            log.warning("%s, attempt %d of %d: %s; retrying in %.0f s",
                        doing, attempt, attempts, first_line, pause_seconds)
        # Give the long transaction that was in the way time to end.
        time.sleep(pause_seconds)
        pause_seconds *= 2


def _rehearsal() -> bool:
    return bool(context.config.attributes.get("rehearsal"))
