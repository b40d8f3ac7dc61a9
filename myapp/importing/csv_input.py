"""CSV text in: bytes decoded as UTF-8 lines, records numbered, the header checked."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from myapp.config import MAX_UPLOAD_BYTES

HEADER = ("name", "email")


class ImportFormatError(ValueError):
    """The input is not a CSV with a ``name,email`` header, or not UTF-8 text."""


def text_lines(binary: BinaryIO) -> io.TextIOWrapper:
    """A binary file (an upload, a file on disk) read as CSV text lines.

    ``utf-8-sig`` drops the byte-order mark spreadsheet programs write, and
    ``newline=""`` leaves line endings to the csv module (a quoted field may
    hold one). Bytes that are not UTF-8 raise as they are read, and
    :func:`records` turns that into an :class:`ImportFormatError`.
    """
    return io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")


def pasted_lines(text: str) -> io.StringIO:
    """Pasted CSV text, read exactly as :func:`text_lines` reads a file."""
    return io.StringIO(text.removeprefix("\ufeff"), newline="")


def _allow_fields_as_large_as_an_upload() -> None:
    # The csv module refuses a field over 131,072 characters, and with it the
    # whole file; a field as large as an upload must instead reach
    # validation, which rejects just its row. The limit is process-wide, so it
    # is only ever raised, and only when an import runs (not at import time).
    # A CLI file may exceed the upload cap: a larger field there still
    # refuses the file — no name or address is that long.
    if csv.field_size_limit() < MAX_UPLOAD_BYTES:
        csv.field_size_limit(MAX_UPLOAD_BYTES)


def records(lines: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    """(first line number, cells) for every non-blank CSV record."""
    _allow_fields_as_large_as_an_upload()
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


def header_columns(records: Iterator[tuple[int, list[str]]]) -> tuple[int, int, int]:
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
