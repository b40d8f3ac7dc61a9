"""Insert validated batches; a batch the database refuses is split until the
bad rows stand alone.

1. A pre-check per batch finds addresses that repeat an earlier row of the
   batch or are already taken — by an existing user, or by an earlier row of
   this same file, which this transaction has already inserted. PostgreSQL
   computes the keys (its ``lower()``, as the unique index does): Python's
   ``str.lower()`` differs for some letters ("İ", a final "Σ") and would
   blame the wrong row.
2. Each batch is inserted under its own SAVEPOINT (``begin_nested()``). If
   the database still refuses it — another transaction took an address a
   moment ago — only that savepoint is rolled back, the batch is split in
   two, and each half is retried, until the offending rows stand alone.
"""

from __future__ import annotations

import secrets

from sqlalchemy import orm
from sqlalchemy.exc import IntegrityError

from myapp.importing.batches import Row
from myapp.importing.report import ImportReport, Rejected
from myapp.importing.statements import INSERT_BATCH, SCREEN
from myapp.users import EmailTaken, is_email_conflict


class BatchInserter:
    """Inserts validated rows for one import run, inside the caller's transaction."""

    def __init__(self, session: orm.Session, report: ImportReport, actor_id: int | None):
        self.session = session
        self.report = report
        self.actor_id = actor_id  # the account importing, for the audit rows
        # Tags this run's audit rows, so a duplicate can name the earlier line.
        self.run = secrets.token_hex(8)

    def add_batch(self, batch: list[Row]) -> None:
        fresh = self._screen(batch)
        if fresh:
            self._insert_or_split(fresh)

    def _screen(self, batch: list[Row]) -> list[Row]:
        """Drop rows whose address repeats an earlier row of the batch, or is
        already in the database (one query)."""
        screened = self.session.execute(
            SCREEN, {"emails": [row.fields.email for row in batch], "run": self.run}
        )
        first_line: dict[str, int] = {}
        kept = []
        for row, (key, owner, earlier_line) in zip(batch, screened, strict=True):
            if key in first_line:
                self._reject(row, f"Duplicate of line {first_line[key]}.")
                continue
            first_line[key] = row.line
            if owner is None:
                kept.append(row)
            elif earlier_line is None:
                self._reject(row, EmailTaken.message)
            else:
                self._reject(row, f"Duplicate of line {earlier_line}.")
        return kept

    def _insert_or_split(self, batch: list[Row]) -> None:
        try:
            with self.session.begin_nested():  # SAVEPOINT ... RELEASE, or ROLLBACK TO
                self._insert(batch)
        except IntegrityError as err:
            if len(batch) > 1:
                middle = len(batch) // 2
                self._insert_or_split(batch[:middle])
                self._insert_or_split(batch[middle:])
            elif is_email_conflict(err):
                # Taken since the pre-check, by a concurrent transaction.
                self._reject(batch[0], EmailTaken.message)
            else:
                raise
        else:
            self.report.created += len(batch)

    def _insert(self, batch: list[Row]) -> None:
        """One statement for the whole batch: its users and their audit rows."""
        self.session.execute(
            INSERT_BATCH,
            {
                "names": [row.fields.name for row in batch],
                "emails": [row.fields.email for row in batch],
                "lines": [row.line for row in batch],
                "run": self.run,
                "actor_id": self.actor_id,
            },
        )

    def _reject(self, row: Row, reason: str) -> None:
        self.report.rejected.append(Rejected(row.line, reason))
