"""Imports take turns: one at a time per database, the others refused at once.

Two imports of overlapping rows used to wait on each other's uncommitted
unique keys — until a deadlock or ``statement_timeout`` ended one of them
with the 503 page of a database error. Now an import takes a
transaction-level advisory lock first; here the test holds that lock from
its own connection, exactly as a running import would.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from sqlalchemy import event, text

from harness.flask_cli import run_flask
from myapp import db, importing
from tests.support.database import assert_nothing_written
from tests.support.forms import upload

# Every test here holds the import lock or inserts from a connection, thread
# or process of its own: the others must see what is committed.
pytestmark = pytest.mark.commits

ROWS = "name,email\n" + "".join(f"User {n},user{n}@example.com\n" for n in range(10))
EMAILS = {f"user{n}@example.com" for n in range(10)}


@contextmanager
def another_import_running(engine):
    """Hold the import lock in a transaction of our own, as a running import does."""
    with engine.connect() as conn, conn.begin():
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": importing.IMPORT_LOCK_KEY})
        yield


def lock_is_free(engine) -> bool:
    with engine.connect() as conn, conn.begin():
        return conn.scalar(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": importing.IMPORT_LOCK_KEY}
        )


@pytest.mark.parametrize("field", ["file", "csv"])
def test_web_import_while_another_runs_is_409_and_writes_nothing(
    client, inspect_engine, field, tables
):
    with another_import_running(inspect_engine), assert_nothing_written(tables):
        response = upload(client, ROWS, field=field)
    html = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "Another import is running. Nothing was imported" in html
    assert 'name="csrf_token"' in html  # the form again, ready to retry
    if field == "csv":
        assert "user9@example.com" in html  # the pasted text is kept

    retry = upload(client, ROWS, field=field)
    assert retry.status_code == 200
    assert "created 10, rejected 0" in retry.get_data(as_text=True)
    assert tables.emails() == EMAILS


def test_cli_import_while_another_runs_is_exit_2_and_writes_nothing(
    database_url, inspect_engine, tmp_path, tables
):
    path = tmp_path / "users.csv"
    path.write_text(ROWS)
    with another_import_running(inspect_engine), assert_nothing_written(tables):
        result = run_flask("import-users", str(path), database_url=database_url)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        "Error: Another import is running. Nothing was imported; try again when it has finished."
    ]
    assert "Traceback" not in result.stderr + result.stdout

    retry = run_flask("import-users", str(path), database_url=database_url)
    assert retry.returncode == 0, retry.stderr
    assert tables.emails() == EMAILS


def import_in_own_session(app, content: str):
    """An import on this thread, with this thread's own session (like another request)."""
    with app.app_context():
        return importing.import_users(db.Session(), io.StringIO(content))


def test_an_import_holds_its_turn_until_it_commits(app, inspect_engine, tables):
    """A second import of the same rows, started while the first is inside
    its transaction, is refused at once instead of waiting on its rows."""
    seen = []

    def second_import_meanwhile(conn, cursor, statement, parameters, context, executemany):
        if "INSERT INTO users" in statement and not seen:
            seen.append(lock_is_free(inspect_engine))
            with ThreadPoolExecutor(1) as other_thread:
                seen.append(other_thread.submit(import_in_own_session, app, ROWS))

    engine = db.engine()
    event.listen(engine, "before_cursor_execute", second_import_meanwhile)
    try:
        first = import_in_own_session(app, ROWS)
    finally:
        event.remove(engine, "before_cursor_execute", second_import_meanwhile)
    lock_was_free, second = seen
    assert lock_was_free is False
    with pytest.raises(importing.ImportInProgress):
        second.result()
    assert (first.created, first.rejected) == (10, [])
    assert tables.counts() == (10, 10)


def test_the_turn_ends_with_the_import_even_a_failed_one(app, inspect_engine, tables):
    def rows_then_a_read_error():
        yield from io.StringIO(ROWS)
        raise OSError("the disk went away")

    with app.app_context(), pytest.raises(OSError):
        # Two rows a batch: the first batch is inserted before the error.
        importing.import_users(db.Session(), rows_then_a_read_error(), batch_size=2)
    assert tables.counts() == (0, 0)
    assert lock_is_free(inspect_engine)
    assert import_in_own_session(app, ROWS).created == 10
    assert lock_is_free(inspect_engine)
