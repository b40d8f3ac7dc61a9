"""The flask commands of the contract, run as an operator runs them."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from harness.flask_cli import run_flask
from tests.support.commands import assert_one_error_line


def test_init_db_on_an_unreachable_server_is_one_line_and_exit_1():
    result = run_flask("init-db", database_url="postgresql+psycopg2://nobody@127.0.0.1:1/nowhere")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot reach the database" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.commits  # a `flask` subprocess must see the seeded users
def test_init_db_drop_yes_empties_the_tables(database_url, runner, tables):
    assert runner.invoke(args=["seed-users", "--count", "5"]).exit_code == 0
    assert tables.counts() == (5, 5)
    result = run_flask("init-db", "--drop", "--yes", database_url=database_url)
    assert result.returncode == 0, result.stderr
    assert tables.counts() == (0, 0)


def test_init_db_drop_without_yes_asks_and_aborts(runner, tables):
    assert runner.invoke(args=["seed-users", "--count", "2"]).exit_code == 0
    result = runner.invoke(args=["init-db", "--drop"], input="n\n")
    assert result.exit_code != 0
    assert tables.counts() == (2, 2)


def test_seed_users_inserts_users_with_audit_rows(database_url, tables):
    result = run_flask("seed-users", "--count", "1234", database_url=database_url)
    assert result.returncode == 0, result.stderr
    assert "Inserted 1234 users" in result.stdout
    assert tables.counts() == (1234, 1234)
    again = run_flask("seed-users", "--count", "10", database_url=database_url)
    assert again.returncode == 0, again.stderr  # a second run never collides on emails
    assert tables.counts() == (1244, 1244)


def test_seed_users_rejects_a_bad_count(runner, tables):
    for count in ("0", "-3", "many"):
        result = runner.invoke(args=["seed-users", "--count", count])
        assert result.exit_code == 2
    assert tables.counts() == (0, 0)


@pytest.mark.parametrize("url, env, named", [
    ("notaurl", {}, "DATABASE_URL is not a database URL"),
    ("mysql://localhost/x", {}, "DATABASE_URL must be a PostgreSQL URL"),
    ("postgresql+asyncpg://localhost/x", {}, "DATABASE_URL must use the psycopg2 driver"),
    ("postgresql+psycopg2:///unused", {"DB_POOL_TIMEOUT": "abc"}, "DB_POOL_TIMEOUT must be a whole number"),
])
def test_a_malformed_setting_is_one_line_naming_it_and_exit_1(url, env, named):
    result = run_flask("init-db", database_url=url, env=env, timeout=60)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: {named}")
    assert "Traceback" not in result.stderr + result.stdout


def test_a_bare_postgresql_url_means_psycopg2(database_url):
    # What most tools print; SQLAlchemy alone would look for psycopg 3.
    bare = database_url.set(drivername="postgresql").render_as_string(hide_password=False)
    assert bare.startswith("postgresql://")
    result = run_flask("init-db", database_url=bare, timeout=60)
    assert result.returncode == 0, result.stderr


# --- a database error of any kind is one line, not a traceback ---------------


def test_seed_users_on_a_database_without_tables_is_one_line(database_without_tables):
    result = run_flask("seed-users", "--count", "3", database_url=database_without_tables)
    assert result.returncode == 1
    assert_one_error_line(result, 'relation "users" does not exist')


def test_init_db_refused_by_the_database_is_one_line(database_url):
    # A schema change that cannot get its lock within lock_timeout (a
    # transaction holds the table) fails with the database's own reason.
    engine = create_engine(database_url, poolclass=NullPool)
    with engine.connect() as blocker, blocker.begin():
        blocker.execute(text("LOCK TABLE users IN ACCESS SHARE MODE"))
        result = run_flask("init-db", "--drop", "--yes", database_url=database_url,
                           env={"MIGRATION_LOCK_TIMEOUT_MS": "200"})
    engine.dispose()
    assert result.returncode == 1
    assert_one_error_line(result, "lock timeout")


@pytest.mark.commits  # a `flask` subprocess writes the imported user
def test_cli_commands_write_no_metric_files_into_a_servers_directory(database_url, tmp_path):
    """A server's PROMETHEUS_MULTIPROC_DIR in the environment: a CLI command
    is no gunicorn worker, nothing would ever retire its files."""
    csv = tmp_path / "users.csv"
    csv.write_text("name,email\nAda,ada@example.com\n")
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    result = run_flask("import-users", str(csv), database_url=database_url,
                       env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    assert result.returncode == 0, result.stderr
    assert "created 1, rejected 0" in result.stdout
    assert list(metrics_dir.iterdir()) == []
