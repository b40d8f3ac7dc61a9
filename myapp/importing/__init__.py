"""Bulk import of users from CSV: one service behind the web form and the CLI.

The whole import is ONE transaction: it commits every good row or, on a
fatal error (unreadable input, database lost), nothing. Bad rows are
rejected alone, with their line number and reason. The input is read as a
stream, one batch at a time, so memory stays flat however large the file is.

The steps, one module each:

* ``csv_input``  — bytes to UTF-8 text lines, CSV records, the header;
* ``batches``    — every row validated in Python (the forms' rules), a batch
  at a time, the next batch read ahead on a helper thread;
* ``lock``       — imports take turns (:class:`ImportInProgress`);
* ``inserting``  — each batch pre-checked, inserted under a SAVEPOINT, and
  split when the database refuses it (``statements`` holds its SQL);
* ``report``     — what comes back: created count, rejected lines.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from contextlib import closing

from sqlalchemy import orm

from myapp.importing.batches import read_ahead, validated_batches
from myapp.importing.csv_input import ImportFormatError, pasted_lines, text_lines
from myapp.importing.inserting import BatchInserter
from myapp.importing.lock import IMPORT_LOCK_KEY, ImportInProgress, take_turn
from myapp.importing.report import ImportReport, Rejected
from myapp.observability import metrics

__all__ = [
    "BATCH_SIZE", "IMPORT_LOCK_KEY", "ImportFormatError", "ImportInProgress", "ImportReport",
    "Rejected", "import_users", "pasted_lines", "text_lines",
]

# Rows per INSERT (and per SAVEPOINT). Larger batches mean fewer round trips,
# each of which also waits for the GIL the read-ahead thread is using;
# 5,000 imported ~20% faster than 1,000 (docs/performance.md). A batch the
# database refuses is split in halves, so a bad row costs ~13 retries.
BATCH_SIZE = 5000


def import_users(
    session: orm.Session,
    lines: Iterable[str],
    *,
    batch_size: int = BATCH_SIZE,
    actor_id: int | None = None,
) -> ImportReport:
    """Import CSV text (an iterable of lines, e.g. :func:`text_lines`) in one transaction.

    ``actor_id`` is the account importing (None from the command line).
    Raises, with nothing written, :class:`ImportFormatError` if the input
    has no ``name,email`` header, is not CSV, or is not UTF-8, and
    :class:`ImportInProgress` if another import's transaction is under way.
    """
    report = ImportReport()
    # closing(): on any error the read-ahead thread is stopped here, on this
    # thread, not whenever the garbage collector gets to the generator.
    with closing(read_ahead(validated_batches(lines, batch_size))) as batches:
        first = next(batches)  # header problems surface here, before any write
        with session.begin():
            take_turn(session)
            inserter = BatchInserter(session, report, actor_id)
            for batch in itertools.chain([first], batches):
                report.rejected += batch.invalid
                if batch.rows:
                    inserter.add_batch(batch.rows)
    report.rejected.sort(key=lambda rejected: rejected.line)
    metrics.record_import(created=report.created, rejected=len(report.rejected))
    return report
