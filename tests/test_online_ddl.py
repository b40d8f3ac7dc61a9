"""``create_index_concurrently`` (myapp/migrating/online_ddl.py), through revision 0002.

Each test takes a database of its own to revision 0001, sets up what a real
deployment can meet — an INVALID index from a failed build, a long
transaction in the way, an index an interrupted run already built — and
runs ``flask db upgrade`` as an operator would.
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

from harness.flask_cli import run_flask
from tests.support.commands import start_flask_logging, wait_for_output

HISTORY_INDEX = "audit_events_user_id_idx"
HISTORY_INDEX_DEF = (
    f"CREATE INDEX {HISTORY_INDEX} ON public.audit_events USING btree (user_id, id DESC)"
)


@pytest.fixture
def at_0001(database_without_tables):
    result = run_flask("db", "upgrade", "0001", database_url=database_without_tables)
    assert result.returncode == 0, result.stderr
    engine = create_engine(database_without_tables, poolclass=NullPool,
                           isolation_level="AUTOCOMMIT")
    yield database_without_tables, engine
    engine.dispose()


def _history_index(engine):
    """(definition, valid) of the history index, or None."""
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT pg_get_indexdef(x.indexrelid), x.indisvalid FROM pg_index x"
                 " WHERE x.indexrelid = to_regclass(:name)"),
            {"name": HISTORY_INDEX},
        ).one_or_none()


def test_an_invalid_index_left_by_a_failed_build_is_dropped_and_built_again(at_0001):
    url, engine = at_0001
    with engine.connect() as conn:
        conn.execute(text("INSERT INTO audit_events (user_id, action) VALUES (1, 'create'), (2, 'create')"))
        # A concurrent build that fails (here: duplicates) leaves its index INVALID.
        with pytest.raises(IntegrityError):
            conn.execute(text(f"CREATE UNIQUE INDEX CONCURRENTLY {HISTORY_INDEX} ON audit_events (action)"))
    assert _history_index(engine).indisvalid is False

    result = run_flask("db", "upgrade", database_url=url)
    assert result.returncode == 0, result.stderr
    assert f"Dropping {HISTORY_INDEX}, left INVALID by a failed build" in result.stderr
    assert tuple(_history_index(engine)) == (HISTORY_INDEX_DEF, True)


def test_a_valid_index_an_interrupted_run_built_is_kept(at_0001):
    url, engine = at_0001
    with engine.connect() as conn:
        conn.execute(text(f"CREATE INDEX {HISTORY_INDEX} ON audit_events (user_id, id DESC)"))
        oid = conn.scalar(text("SELECT to_regclass(:name)::oid"), {"name": HISTORY_INDEX})

    result = run_flask("db", "upgrade", database_url=url)
    assert result.returncode == 0, result.stderr
    assert f"Index {HISTORY_INDEX} is already built; keeping it" in result.stderr
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT to_regclass(:name)::oid"), {"name": HISTORY_INDEX}) == oid


def test_a_build_stopped_by_lock_timeout_is_retried_once_the_long_transaction_ends(
    at_0001, tmp_path
):
    url, engine = at_0001
    log = tmp_path / "db-upgrade.log"
    writer = engine.connect()
    try:
        # A write transaction left open: CREATE INDEX CONCURRENTLY must wait
        # for it, longer than the migration's lock_timeout allows.
        writer.execute(text("BEGIN"))
        writer.execute(text("INSERT INTO audit_events (user_id, action) VALUES (1, 'create')"))
        upgrade = start_flask_logging("db", "upgrade", database_url=url, log=log,
                                      env={"MIGRATION_LOCK_TIMEOUT_MS": "300"})
        retrying = wait_for_output(log, "attempt 1 of 4", upgrade, timeout=60)
        writer.execute(text("COMMIT"))
        assert upgrade.wait(timeout=120) == 0, log.read_text()
    finally:
        writer.close()
    output = log.read_text()
    assert retrying, output
    assert "canceling statement due to lock timeout; retrying in 1 s" in output
    assert tuple(_history_index(engine)) == (HISTORY_INDEX_DEF, True)

