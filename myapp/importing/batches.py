"""Rows validated in Python, handed on a batch at a time, read ahead on a helper thread."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from myapp.importing.csv_input import header_columns, records
from myapp.importing.report import Rejected
from myapp.validation import UserFields, clean_user


@dataclass(frozen=True)
class Row:
    """A valid row and the line it came from: a rejection must name its line."""

    line: int
    fields: UserFields


@dataclass
class Batch:
    rows: list[Row] = field(default_factory=list)  # valid, to insert
    invalid: list[Rejected] = field(default_factory=list)


def validated_batches(lines: Iterable[str], size: int) -> Iterator[Batch]:
    """Parse and validate the input, ``size`` valid rows at a time.

    The header is checked on the first ``next()``, before anything is written.
    """
    numbered = records(lines)
    width, name_at, email_at = header_columns(numbered)
    batch = Batch()
    for line, cells in numbered:
        if len(cells) != width:
            batch.invalid.append(Rejected(line, f"Expected {width} columns, found {len(cells)}."))
            continue
        fields, errors = clean_user(cells[name_at], cells[email_at])
        if errors:
            batch.invalid.append(Rejected(line, "; ".join(errors.values())))
            continue
        batch.rows.append(Row(line, fields))
        if len(batch.rows) == size:
            yield batch
            batch = Batch()
    yield batch


def read_ahead(batches: Iterator[Batch]) -> Iterator[Batch]:
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
