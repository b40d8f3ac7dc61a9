"""Migrations (Alembic) and ``init-db``, run as an operator runs them.

Each test that changes a schema gets a database of its own; "nothing
changed" is always checked on the whole schema dump (pg_dump) and every row.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Column, MetaData, Text, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from alembic.script import ScriptDirectory

from harness.flask_cli import run_flask
from myapp.cli_db import TARGET_METADATA
from myapp.migrating import ADOPTION_REVISION
from myapp.migrating.config import alembic_config
from myapp.migrating.lock import MIGRATION_LOCK_KEY
from myapp.models import Base
from tests.support.commands import assert_only_error_line, start_flask_logging, wait_for_output
from tests.support.database import (
    Tables,
    assert_schema_unchanged,
    create_test_database,
    drop_test_database,
    schema_dump,
    table_names,
    upgrade_to_head,
)
from tests.support.premigration import create_premigration_schema

SCRIPTS = ScriptDirectory.from_config(alembic_config())
HEAD = SCRIPTS.get_current_head()


def _run_sql(url, *statements):
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))
    engine.dispose()


def _current(url) -> str:
    result = run_flask("db", "current", database_url=url)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def head_dump(database_without_tables):
    """The schema dump of a fresh database brought to head: the reference."""
    upgrade_to_head(database_without_tables)
    return schema_dump(database_without_tables)


@pytest.fixture
def premigration_database():
    """A database as the pre-migration ``init-db`` left it, with rows in it."""
    url = create_test_database()
    engine = create_engine(url, poolclass=NullPool)
    create_premigration_schema(engine)
    engine.dispose()
    _run_sql(
        url,
        "INSERT INTO users (name, email) VALUES ('Ada', 'ada@example.com'), ('Bob', 'BOB@example.com')",
        "INSERT INTO audit_events (user_id, action, detail)"
        " SELECT id, 'create', jsonb_build_object('name', name) FROM users",
        "UPDATE users SET name = 'Ada L.', version = 2 WHERE email = 'ada@example.com'",
    )
    yield url
    drop_test_database(url)


# --- a fresh database ------------------------------------------------------------


def test_init_db_creates_a_database_at_head_and_a_second_run_changes_nothing(database_url, head_dump):
    url = make_url(database_url).set(database=make_url(database_url).database + "_fresh")
    try:
        first = run_flask("init-db", database_url=url)
        assert first.returncode == 0, first.stderr
        assert "Created database" in first.stdout
        assert f"Upgraded the schema from empty to {HEAD}." in first.stdout
        assert "Running upgrade  -> 0001" in first.stderr
        assert _current(url) == f"{HEAD} (head)"
        dump = schema_dump(url)
        assert dump == head_dump

        second = run_flask("init-db", database_url=url)
        assert second.returncode == 0, second.stderr
        assert f"Schema is up to date (revision {HEAD})." in second.stdout
        assert "Running upgrade" not in second.stderr
        assert schema_dump(url) == dump
    finally:
        drop_test_database(url)


def test_round_trip_head_base_head_gives_the_fresh_schema(database_without_tables, head_dump):
    url = database_without_tables  # at head (head_dump)
    down = run_flask("db", "downgrade", "base", database_url=url)
    assert down.returncode == 0, down.stderr
    assert "Running downgrade 0001 -> " in down.stderr
    assert table_names(url) == {"alembic_version"}  # no table of the app left
    assert _current(url) == ""

    up = run_flask("db", "upgrade", database_url=url)
    assert up.returncode == 0, up.stderr
    assert schema_dump(url) == head_dump


def test_downgrade_one_step_then_to_0001_and_upgrade_again(database_without_tables, head_dump):
    url = database_without_tables
    assert run_flask("db", "downgrade", "-1", database_url=url).returncode == 0
    assert _current(url) == SCRIPTS.get_revision(HEAD).down_revision
    assert run_flask("db", "downgrade", "0001", database_url=url).returncode == 0
    assert "audit_events_user_id_idx" not in schema_dump(url)
    assert run_flask("db", "upgrade", HEAD, database_url=url).returncode == 0
    assert schema_dump(url) == head_dump


def _actor_key_validated(url) -> bool | None:
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        validated = conn.scalar(text(
            "SELECT convalidated FROM pg_constraint WHERE conname = 'audit_events_actor_id_fkey'"))
    engine.dispose()
    return validated


def test_the_actor_key_comes_not_valid_in_0003_and_validated_in_0004(database_without_tables):
    """0003 adds the foreign key without scanning audit_events; 0004 checks
    the old rows apart, under a lock that lets requests go on."""
    url = database_without_tables
    assert run_flask("db", "upgrade", "0003", database_url=url).returncode == 0
    assert _actor_key_validated(url) is False
    upgraded = run_flask("db", "upgrade", "0004", database_url=url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert _actor_key_validated(url) is True
    assert run_flask("db", "downgrade", "0003", database_url=url).returncode == 0
    assert _actor_key_validated(url) is False
    assert run_flask("db", "downgrade", "0002", database_url=url).returncode == 0
    assert _actor_key_validated(url) is None  # gone with its column
    assert "accounts" not in table_names(url)


def test_history_lists_every_revision_newest_first(database_url):
    result = run_flask("db", "history", database_url=database_url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"-> {HEAD} (head)," in lines[0]
    assert lines[-1].startswith("<base> -> 0001,")


def test_two_migration_runs_take_turns(database_without_tables, tmp_path):
    url = database_without_tables
    log = tmp_path / "init-db.log"
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as holder:  # another run holds the migration lock
        holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        holder.commit()
        second = start_flask_logging("init-db", database_url=url, log=log)
        waiting = wait_for_output(log, "Waiting for another migration", second, timeout=60)
        assert table_names(url) == set()  # it waited before looking or doing anything
    engine.dispose()  # the lock goes with the connection
    assert second.wait(timeout=120) == 0, log.read_text()
    assert waiting, log.read_text()
    assert _current(url) == f"{HEAD} (head)"


# --- db check ----------------------------------------------------------------------


def test_db_check_finds_the_models_and_the_migrations_in_agreement(database_url):
    result = run_flask("db", "check", database_url=database_url)
    assert result.returncode == 0, result.stderr
    assert "agree" in result.stdout


def test_db_check_names_a_column_only_the_models_have(app, runner, monkeypatch):
    models = MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(models)
    models.tables["users"].append_column(Column("nickname", Text))
    monkeypatch.setitem(app.extensions, TARGET_METADATA, models)

    result = runner.invoke(args=["db", "check"])
    assert result.exit_code == 1
    assert "add_column users.nickname" in result.stderr
    assert result.stderr.count("\n  ") == 1  # that one difference, nothing else


def test_db_check_sees_an_expression_index_and_a_check_constraint_of_another_definition(
    database_without_tables,
):
    url = database_without_tables
    upgrade_to_head(url)
    _run_sql(
        url,
        "DROP INDEX users_email_lower_key",
        "CREATE UNIQUE INDEX users_email_lower_key ON users (email)",
        "ALTER TABLE users DROP CONSTRAINT users_name_length",
        "ALTER TABLE users ADD CONSTRAINT users_name_length CHECK (char_length(name) <= 99)",
    )
    result = run_flask("db", "check", database_url=url)
    assert result.returncode == 1
    assert "remove_index users_email_lower_key on users" in result.stderr
    assert "add_index users_email_lower_key on users" in result.stderr
    assert "add_constraint users_name_length on users" in result.stderr
    assert "search_trgm" not in result.stderr  # the GIN expression index matches


# --- adopting a database made before migrations ------------------------------------


def test_a_premigration_database_is_adopted_with_every_row(premigration_database, head_dump):
    url = premigration_database
    engine = create_engine(url, poolclass=NullPool)
    assert Tables(engine).counts() == (2, 2)
    before = _premigration_rows(engine)

    result = run_flask("init-db", database_url=url)
    assert result.returncode == 0, result.stderr
    assert _premigration_rows(engine) == before  # every row kept as it was
    engine.dispose()
    assert f"stamped at {ADOPTION_REVISION}" in result.stdout
    assert _current(url) == f"{HEAD} (head)"
    assert schema_dump(url) == head_dump  # as if it had been made by the migrations


def _premigration_rows(engine) -> dict[str, list[tuple]]:
    """Every row of a pre-migration database, in the columns it had then
    (``Tables.snapshot`` reads tables and columns later revisions added)."""
    with engine.connect() as conn:
        return {
            "users": [tuple(r) for r in conn.execute(text("SELECT * FROM users ORDER BY id"))],
            "audit_events": [tuple(r) for r in conn.execute(text(
                "SELECT id, user_id, action, at, detail FROM audit_events ORDER BY id"))],
        }


@pytest.mark.parametrize("drift, named", [
    (["ALTER TABLE users DROP COLUMN updated_at"],
     "column users.updated_at: expected (timestamp with time zone NOT NULL DEFAULT now()),"
     " missing from the database"),
    (["DROP INDEX users_email_lower_key",
      "CREATE UNIQUE INDEX users_email_lower_key ON users (email)"],
     "index users.users_email_lower_key: the database has (CREATE UNIQUE INDEX"
     " users_email_lower_key ON users USING btree (email)), expected"),
    (["ALTER TABLE audit_events DROP CONSTRAINT audit_events_action"],
     "constraint audit_events.audit_events_action: expected"),
    (["CREATE TABLE notes (id int)"], "table notes: in the database, not expected"),
])
def test_a_drifted_premigration_database_is_refused_and_left_as_it_was(
    premigration_database, drift, named
):
    url = premigration_database
    _run_sql(url, *drift)
    engine = create_engine(url, poolclass=NullPool)
    before = _premigration_rows(engine)
    with assert_schema_unchanged(url):
        result = run_flask("init-db", database_url=url)
    assert _premigration_rows(engine) == before
    engine.dispose()
    assert result.returncode == 1
    assert_only_error_line(result, "init-db refused", "cannot be adopted", named, "nothing was changed")


# --- bad input: one line, the right status, nothing changed ---------------------------


def test_init_db_refuses_a_database_another_app_owns(database_without_tables):
    url = database_without_tables
    _run_sql(url, "CREATE TABLE invoices (id int PRIMARY KEY)", "INSERT INTO invoices VALUES (1)")
    with assert_schema_unchanged(url):
        result = run_flask("init-db", database_url=url)
    assert result.returncode == 1
    assert_only_error_line(result, "tables of another application (invoices)", "nothing was changed")
    assert table_names(url) == {"invoices"}


def test_downgrade_to_an_unknown_revision_is_one_line(database_url):
    with assert_schema_unchanged(database_url):
        result = run_flask("db", "downgrade", "nosuchrev", database_url=database_url)
    assert result.returncode == 1
    assert_only_error_line(result, "Can't locate revision identified by 'nosuchrev'")


@pytest.mark.parametrize("args", [
    ("db", "upgrade"), ("db", "downgrade", "base"), ("db", "current"), ("db", "check"),
])  # init-db: tests/test_cli.py
def test_an_unreachable_database_is_one_line(args):
    result = run_flask(*args, database_url="postgresql+psycopg2://nobody@127.0.0.1:1/nowhere")
    assert result.returncode == 1
    assert_only_error_line(result, "cannot reach the database", "127.0.0.1:1")


def test_init_db_drop_yes_drops_alembic_version_too(database_without_tables, head_dump):
    url = database_without_tables
    upgrade_to_head(url)
    _run_sql(url, "INSERT INTO users (name, email) VALUES ('Ada', 'ada@example.com')",
             "UPDATE alembic_version SET version_num = '0001'")  # as if 0002 were not applied
    result = run_flask("init-db", "--drop", "--yes", database_url=url)
    assert result.returncode == 0, result.stderr
    assert "Dropped every table of the app." in result.stdout
    # alembic_version went too: every migration ran again, from empty.
    assert f"Upgraded the schema from empty to {HEAD}." in result.stdout
    assert schema_dump(url) == head_dump
    engine = create_engine(url, poolclass=NullPool)
    assert Tables(engine).counts() == (0, 0)
    engine.dispose()


def test_revision_writes_the_next_numbered_file(database_url):
    number = f"{int(HEAD) + 1:04d}"
    written = Path(SCRIPTS.dir) / "versions" / f"{number}_add_notes.py"
    try:
        result = run_flask("db", "revision", "-m", "add notes", "--autogenerate", database_url=database_url)
        assert result.returncode == 0, result.stderr
        script = written.read_text()
    finally:
        written.unlink(missing_ok=True)  # leave the checkout as it was
    assert f"revision: str = '{number}'" in script
    assert f"down_revision: str | Sequence[str] | None = '{HEAD}'" in script
    assert "    pass\n" in script  # the models and head agree: nothing to do
