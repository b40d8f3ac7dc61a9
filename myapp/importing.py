"""Bulk import of users from CSV: one service behind the web form and the CLI.

The whole import is ONE transaction: it commits every good row or, on a
fatal error (unreadable input, database lost), nothing. Bad rows are
rejected alone, with their line number and reason:

1. Every row is validated in Python first (the same rules as the forms).
2. Good rows go to the database in batches. A pre-check per batch finds
   addresses that are already taken — by an existing user, or by an earlier
   row of this same file, which this transaction has already inserted.
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

from myapp.models import AuditEvent, User
from myapp.users import EmailTaken, is_email_conflict
from myapp.validation import UserFields, clean_user

# Rows per INSERT (and per SAVEPOINT). Larger batches mean fewer round trips,
# each of which also waits for the GIL the read-ahead thread is using;
# 5,000 imported ~20% faster than 1,000 (docs/performance.md). A batch the
# database refuses is split in halves, so a bad row costs ~13 retries.
BATCH_SIZE = 5000
HEADER = ("name", "email")


class ImportFormatError(ValueError):
    """The input is not a CSV with a ``name,email`` header, or not UTF-8 text."""


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

    @property
    def key(self) -> str:
        return self.fields.email.lower()


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


def _owners_statement():
    """Which of ``:keys`` (lowercased addresses) are taken, and by which line of this run.

    Rows this transaction has already inserted are visible to it, so earlier
    lines of the file count as taken. Each key is looked up on its own through
    a LATERAL subquery with LIMIT 1 (the index is unique, so this changes no
    result): the planner cannot flatten it into a hash join, and always
    probes the ``lower(email)`` index — even in a table filled within this
    very transaction, whose statistics still say "empty". (A plain
    ``= ANY(:keys)`` or join then degrades into a sequential scan per batch,
    and the import into quadratic time.)
    """
    keys = (
        func.unnest(bindparam("keys", type_=ARRAY(Text)))
        .table_valued("key")
        .render_derived(name="keys")
    )
    owner = (
        select(User.id)
        .where(func.lower(User.email) == keys.c.key)
        .limit(1)
        .lateral("owner")
    )
    # Only for the (few) taken addresses: their audit row from this run, if any.
    line_in_this_run = (
        select(AuditEvent.detail["line"].as_integer())
        .where(
            AuditEvent.user_id == owner.c.id,
            AuditEvent.action == "create",
            AuditEvent.detail["import"].astext == bindparam("run"),
        )
        .scalar_subquery()
    )
    return select(keys.c.key, line_in_this_run).select_from(keys).join(owner, true())


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


_OWNERS = _owners_statement()
_INSERT_BATCH = _insert_batch_statement()


class _Importer:
    """Inserts validated rows for one import run, inside the caller's transaction."""

    def __init__(self, session: Session, report: ImportReport):
        self.session = session
        self.report = report
        # Tags this run's audit rows, so a duplicate can name the earlier line.
        self.run = secrets.token_hex(8)

    def add_batch(self, batch: list[_Row]) -> None:
        fresh = self._reject_taken(self._reject_repeats(batch))
        if fresh:
            self._insert_or_split(fresh)

    def _reject_repeats(self, batch: list[_Row]) -> list[_Row]:
        """Drop rows whose address appears earlier in the same batch."""
        first_line: dict[str, int] = {}
        kept = []
        for row in batch:
            if row.key in first_line:
                self._reject(row, f"Duplicate of line {first_line[row.key]}.")
            else:
                first_line[row.key] = row.line
                kept.append(row)
        return kept

    def _reject_taken(self, batch: list[_Row]) -> list[_Row]:
        """Drop rows whose address is already in the database (one query)."""
        taken = dict(self._owners([row.key for row in batch]))
        kept = []
        for row in batch:
            if row.key in taken:
                self._reject_as_taken(row, taken[row.key])
            else:
                kept.append(row)
        return kept

    def _owners(self, keys: list[str]):
        """(lowercased email, line in this import or None) for taken addresses."""
        return self.session.execute(_OWNERS, {"keys": keys, "run": self.run}).all()

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


def import_users(
    session: Session,
    lines: Iterable[str],
    *,
    batch_size: int = BATCH_SIZE,
    on_batch: Callable[[], None] = lambda: None,
) -> ImportReport:
    """Import CSV text (an iterable of lines, e.g. a text file) in one transaction.

    Raises :class:`ImportFormatError` — with nothing written — if the input
    has no ``name,email`` header, is not CSV, or is not UTF-8.
    """
    report = ImportReport()
    # closing(): on any error the read-ahead thread is stopped here, on this
    # thread, not whenever the garbage collector gets to the generator.
    with closing(_read_ahead(_validated_batches(lines, batch_size))) as batches:
        first = next(batches)  # header problems surface here, before any write
        with session.begin():
            importer = _Importer(session, report)
            for batch in itertools.chain([first], batches):
                report.rejected += batch.invalid
                if batch.rows:
                    importer.add_batch(batch.rows)
                on_batch()
    report.rejected.sort(key=lambda rejected: rejected.line)
    return report
