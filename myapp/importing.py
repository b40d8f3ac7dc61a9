"""Bulk import of users from CSV: one service behind the web form and the CLI.

The whole import is ONE transaction: it commits every good row or, on a
fatal error (unreadable input, database lost), nothing. Imports take turns:
the transaction starts by taking an advisory lock, and an import that finds
it taken is refused at once (:class:`ImportInProgress`). Bad rows are
rejected alone, with their line number and reason:

1. Every row is validated in Python first (the same rules as the forms).
2. Good rows go to the database in batches. A pre-check per batch finds
   addresses that repeat an earlier row of the batch or are already taken —
   by an existing user, or by an earlier row of this same file, which this
   transaction has already inserted. PostgreSQL computes the keys (its
   ``lower()``, as the unique index does): Python's ``str.lower()`` differs
   for some letters ("İ", a final "Σ") and would blame the wrong row.
3. Each batch is inserted under its own SAVEPOINT (``begin_nested()``). If
   the database still refuses it — another transaction took an address a
   moment ago — only that savepoint is rolled back, the batch is split in
   two, and each half is retried, until the offending rows stand alone.

The input is read as a stream, one batch at a time, so memory stays flat
however large the file is.
"""

from __future__ import annotations

import csv
import itertools
import secrets
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import Integer, Text, bindparam, func, insert, literal, select, true
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from myapp.config import MAX_UPLOAD_BYTES
from myapp.models import AuditEvent, User
from myapp.users import EmailTaken, is_email_conflict
from myapp.validation import UserFields, clean_user

# Rows per INSERT (and per SAVEPOINT). Larger batches mean fewer round trips,
# each of which also waits for the GIL the read-ahead thread is using;
# 5,000 imported ~20% faster than 1,000 (docs/performance.md). A batch the
# database refuses is split in halves, so a bad row costs ~13 retries.
BATCH_SIZE = 5000
HEADER = ("name", "email")

# The key of the advisory lock an import holds for its whole transaction.
# Overlapping imports would otherwise wait on each other's uncommitted
# unique keys — until a deadlock or statement_timeout ends one of them.
# Any fixed bigint no other advisory lock in the database uses; this one
# spells "myappimp".
IMPORT_LOCK_KEY = 0x6D79_6170_7069_6D70

# The csv module refuses a field over 131,072 characters, and with it the
# whole file; a field as large as an upload must instead reach validation,
# which rejects just its row. The limit is process-wide, so it is set once,
# here, and only ever raised. (A CLI file may exceed the upload cap; a field
# over 5 MB there still refuses the file — no name or address is that long.)
csv.field_size_limit(max(csv.field_size_limit(), MAX_UPLOAD_BYTES))


class ImportFormatError(ValueError):
    """The input is not a CSV with a ``name,email`` header, or not UTF-8 text."""


class ImportInProgress(RuntimeError):
    """Another import is running; this one wrote nothing."""

    message = "Another import is running. Nothing was imported; try again when it has finished."


@dataclass(frozen=True)
class Rejected:
    line: int
    reason: str


@dataclass
class ImportReport:
    created: int = 0
    rejected: list[Rejected] = field(default_factory=list)


@dataclass(frozen=True)
class _Row:
    line: int
    fields: UserFields


def _records(lines: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    """(first line number, cells) for every non-blank CSV record."""
    reader = csv.reader(lines)
    next_line = 1
    try:
        for cells in reader:
            line, next_line = next_line, reader.line_num + 1
            if any(cell.strip() for cell in cells):
                yield line, cells
    except csv.Error as err:
        raise ImportFormatError(f"Line {reader.line_num}: this is not valid CSV ({err}).") from None
    except UnicodeDecodeError:
        raise ImportFormatError(
            f"Line {reader.line_num + 1}: the file is not UTF-8 text. "
            "Save it as CSV UTF-8 and try again."
        ) from None


def _header_columns(records: Iterator[tuple[int, list[str]]]) -> tuple[int, int, int]:
    """Read the header; return (column count, name index, email index)."""
    try:
        _, header = next(records)
    except StopIteration:
        raise ImportFormatError("The file is empty: expected a header line “name,email”.") from None
    columns = [cell.strip().lower() for cell in header]
    if not set(HEADER) <= set(columns):
        raise ImportFormatError(
            "The first line must be the header “name,email” "
            f"(found “{','.join(header)[:80]}”)."
        )
    return len(columns), columns.index("name"), columns.index("email")


@dataclass
class _Batch:
    rows: list[_Row] = field(default_factory=list)  # valid, to insert
    invalid: list[Rejected] = field(default_factory=list)


def _validated_batches(lines: Iterable[str], size: int) -> Iterator[_Batch]:
    """Parse and validate the input, ``size`` valid rows at a time.

    The header is checked on the first ``next()``, before anything is written.
    """
    records = _records(lines)
    width, name_at, email_at = _header_columns(records)
    batch = _Batch()
    for line, cells in records:
        if len(cells) != width:
            batch.invalid.append(Rejected(line, f"Expected {width} columns, found {len(cells)}."))
            continue
        fields, errors = clean_user(cells[name_at], cells[email_at])
        if errors:
            batch.invalid.append(Rejected(line, "; ".join(errors.values())))
            continue
        batch.rows.append(_Row(line, fields))
        if len(batch.rows) == size:
            yield batch
            batch = _Batch()
    yield batch


def _read_ahead(batches: Iterator[_Batch]) -> Iterator[_Batch]:
    """Yield each batch while a helper thread parses and validates the next.

    Validation is pure Python; inserting is mostly waiting for PostgreSQL,
    which releases the GIL — so the two overlap. The helper thread only
    reads text: it never sees the session, which stays on the caller's thread.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="csv-reader") as reader:
        upcoming = reader.submit(next, batches, None)
        while (batch := upcoming.result()) is not None:
            upcoming = reader.submit(next, batches, None)
            yield batch


def _screen_statement():
    """For each address of ``:emails``, in order: its key and, if taken, by whom.

    Returns (key, owner id or NULL, line in this run or NULL). The key is
    PostgreSQL's ``lower()``, the very expression of the unique index. Rows
    this transaction has already inserted are visible to it, so earlier
    lines of the file count as taken. Each key is looked up on its own
    through a LATERAL subquery with LIMIT 1 (the index is unique, so this
    changes no result): the planner cannot flatten it into a hash join, and
    always probes the ``lower(email)`` index — even in a table filled within
    this very transaction, whose statistics still say "empty". (A plain
    ``= ANY(:keys)`` or join then degrades into a sequential scan per batch,
    and the import into quadratic time.)
    """
    emails = (
        func.unnest(bindparam("emails", type_=ARRAY(Text)))
        .table_valued("email", with_ordinality="position")
        .render_derived(name="batch")
    )
    key = func.lower(emails.c.email)
    # Only for the (few) taken addresses: their audit row from this run, if any.
    line_in_this_run = (
        select(AuditEvent.detail["line"].as_integer())
        .where(
            AuditEvent.user_id == User.id,
            AuditEvent.action == "create",
            AuditEvent.detail["import"].astext == bindparam("run"),
        )
        .scalar_subquery()
    )
    owner = (
        select(User.id, line_in_this_run.label("line"))
        .where(func.lower(User.email) == key)
        .limit(1)
        .lateral("owner")
    )
    return (
        select(key, owner.c.id, owner.c.line)
        .select_from(emails)
        .outerjoin(owner, true())
        .order_by(emails.c.position)
    )


def _insert_batch_statement():
    """INSERT the batch's users and, through a data-modifying CTE, their audit rows.

    The rows arrive as three arrays (one bound parameter each) and are
    turned back into rows by ``unnest``: one short statement per batch, not
    one per row, and no per-row work in Python.
    """
    rows = (
        func.unnest(
            bindparam("names", type_=ARRAY(Text)),
            bindparam("emails", type_=ARRAY(Text)),
            bindparam("lines", type_=ARRAY(Integer)),
        )
        .table_valued("name", "email", "line")
        .render_derived(name="batch")
    )
    # Core tables, not ORM entities: this is a plain INSERT ... SELECT, with
    # none of the ORM's per-object bookkeeping.
    users, audit_events = User.__table__, AuditEvent.__table__
    created = (
        insert(users)
        .from_select(["name", "email"], select(rows.c.name, rows.c.email))
        .returning(users.c.id, users.c.email)
        .cte("created")
    )
    detail = func.jsonb_build_object(
        "name", rows.c.name,
        "email", rows.c.email,
        "source", "import",
        "import", bindparam("run", type_=Text),
        "line", rows.c.line,
    )
    return insert(audit_events).from_select(
        ["user_id", "action", "detail"],
        select(created.c.id, literal("create"), detail).join_from(
            created, rows, created.c.email == rows.c.email
        ),
    )


_SCREEN = _screen_statement()
_INSERT_BATCH = _insert_batch_statement()


class _Importer:
    """Inserts validated rows for one import run, inside the caller's transaction."""

    def __init__(self, session: Session, report: ImportReport):
        self.session = session
        self.report = report
        # Tags this run's audit rows, so a duplicate can name the earlier line.
        self.run = secrets.token_hex(8)

    def add_batch(self, batch: list[_Row]) -> None:
        fresh = self._screen(batch)
        if fresh:
            self._insert_or_split(fresh)

    def _screen(self, batch: list[_Row]) -> list[_Row]:
        """Drop rows whose address repeats an earlier row of the batch, or is
        already in the database (one query)."""
        screened = self.session.execute(
            _SCREEN, {"emails": [row.fields.email for row in batch], "run": self.run}
        )
        first_line: dict[str, int] = {}
        kept = []
        for row, (key, owner, earlier_line) in zip(batch, screened, strict=True):
            if key in first_line:
                self._reject(row, f"Duplicate of line {first_line[key]}.")
                continue
            first_line[key] = row.line
            if owner is not None:
                self._reject_as_taken(row, earlier_line)
            else:
                kept.append(row)
        return kept

    def _reject_as_taken(self, row: _Row, earlier_line: int | None) -> None:
        if earlier_line is None:
            self._reject(row, EmailTaken.message)
        else:
            self._reject(row, f"Duplicate of line {earlier_line}.")

    def _insert_or_split(self, batch: list[_Row]) -> None:
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

    def _insert(self, batch: list[_Row]) -> None:
        """One statement for the whole batch: its users and their audit rows."""
        self.session.execute(
            _INSERT_BATCH,
            {
                "names": [row.fields.name for row in batch],
                "emails": [row.fields.email for row in batch],
                "lines": [row.line for row in batch],
                "run": self.run,
            },
        )

    def _reject(self, row: _Row, reason: str) -> None:
        self.report.rejected.append(Rejected(row.line, reason))


def _take_turn(session: Session) -> None:
    """Hold the import lock until this transaction ends, or raise ImportInProgress.

    A ``try`` lock, so a second import is refused at once rather than kept
    waiting; an ``xact`` lock, so COMMIT, ROLLBACK or a lost connection
    always releases it (a session-level lock would stay with the pooled
    connection).
    """
    if not session.scalar(select(func.pg_try_advisory_xact_lock(IMPORT_LOCK_KEY))):
        raise ImportInProgress(ImportInProgress.message)


def import_users(
    session: Session,
    lines: Iterable[str],
    *,
    batch_size: int = BATCH_SIZE,
    on_batch: Callable[[], None] = lambda: None,
) -> ImportReport:
    """Import CSV text (an iterable of lines, e.g. a text file) in one transaction.

    Raises, with nothing written, :class:`ImportFormatError` if the input
    has no ``name,email`` header, is not CSV, or is not UTF-8, and
    :class:`ImportInProgress` if another import's transaction is under way.
    """
    report = ImportReport()
    # closing(): on any error the read-ahead thread is stopped here, on this
    # thread, not whenever the garbage collector gets to the generator.
    with closing(_read_ahead(_validated_batches(lines, batch_size))) as batches:
        first = next(batches)  # header problems surface here, before any write
        with session.begin():
            _take_turn(session)
            importer = _Importer(session, report)
            for batch in itertools.chain([first], batches):
                report.rejected += batch.invalid
                if batch.rows:
                    importer.add_batch(batch.rows)
                on_batch()
    report.rejected.sort(key=lambda rejected: rejected.line)
    return report
