"""Imports take turns: one advisory lock, held for the import's transaction.

Overlapping imports would otherwise wait on each other's uncommitted unique
keys — until a deadlock or ``statement_timeout`` ended one of them.
"""

from __future__ import annotations

from sqlalchemy import func, orm, select

# Any fixed bigint no other advisory lock in the database uses; this one
# spells "myappimp".
IMPORT_LOCK_KEY = 0x6D79_6170_7069_6D70


class ImportInProgress(RuntimeError):
    """Another import is running; this one wrote nothing."""

    message = "Another import is running. Nothing was imported; try again when it has finished."


def take_turn(session: orm.Session) -> None:
    """Hold the import lock until this transaction ends, or raise ImportInProgress.

    A ``try`` lock, so a second import is refused at once rather than kept
    waiting; an ``xact`` lock, so COMMIT, ROLLBACK or a lost connection
    always releases it (a session-level lock would stay with the pooled
    connection).
    """
    if not session.scalar(select(func.pg_try_advisory_xact_lock(IMPORT_LOCK_KEY))):
        raise ImportInProgress(ImportInProgress.message)
