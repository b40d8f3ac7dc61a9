"""The session practices of the seed guide, checked against myapp's own
session factory and engine: teardown, thread isolation, object states,
flush vs commit vs rollback, and the per-connection server settings."""

from __future__ import annotations

import os
import threading

import pytest
from sqlalchemy import delete, func, insert, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from myapp import PROJECT_ROOT, config, db, errors
from myapp.models import User
from myapp.sessions import WriteOutsideTransaction


@pytest.mark.commits  # the pool itself is checked: no test connection may hold one
def test_teardown_removes_the_session_after_each_request(client):
    response = client.get("/users")
    assert response.status_code == 200
    # The request ran in this thread; teardown_appcontext must have removed
    # the thread's session and returned its connection to the pool.
    assert not db.Session.registry.has()
    assert db.engine().pool.checkedout() == 0


@pytest.mark.commits  # the pool itself is checked
def test_teardown_removes_the_session_after_a_failed_request(client):
    assert client.get("/users/424242").status_code == 404
    assert not db.Session.registry.has()
    assert db.engine().pool.checkedout() == 0


@pytest.mark.commits  # the pool itself is checked
def test_teardown_removes_the_session_after_a_cli_command(runner):
    result = runner.invoke(args=["seed-users", "--count", "3"])
    assert result.exit_code == 0, result.output
    assert not db.Session.registry.has()
    assert db.engine().pool.checkedout() == 0


def test_teardown_never_commits(app):
    # A view that adds an object but never commits leaves nothing behind.
    with app.app_context():
        db.Session().add(User(name="Uncommitted", email="uncommitted@example.com"))
        db.Session().flush()
    with app.app_context():
        assert db.Session().scalar(select(User).filter_by(name="Uncommitted")) is None


@pytest.mark.commits  # threads
def test_one_registry_gives_each_thread_its_own_session(app):
    seen = {}
    barrier = threading.Barrier(2)

    def grab(key):
        with app.app_context():
            seen[key] = db.Session()
            barrier.wait()  # both threads hold their session at the same time

    threads = [threading.Thread(target=grab, args=(k,)) for k in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen["a"] is not seen["b"]


@pytest.mark.commits  # threads
def test_rollback_in_one_thread_leaves_the_other_threads_pending_objects(app):
    added = threading.Event()
    rolled_back = threading.Event()
    result = {}

    def keeper():
        with app.app_context():
            user = User(name="Keeper", email="keeper@example.com")
            db.Session().add(user)
            added.set()
            rolled_back.wait(10)
            result["state"] = inspect(user)
            result["pending"] = inspect(user).pending
            result["in_session"] = user in db.Session()

    def roller():
        with app.app_context():
            added.wait(10)
            session = db.Session()
            session.add(User(name="Roller", email="roller@example.com"))
            session.rollback()
            result["roller_new"] = list(session.new)
            rolled_back.set()

    threads = [threading.Thread(target=keeper), threading.Thread(target=roller)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert result["roller_new"] == []
    assert result["pending"] is True
    assert result["in_session"] is True


@pytest.fixture
def session(app):
    """This thread's session, inside an app context of the test's own."""
    with app.app_context():
        yield db.Session()


def test_object_states_through_inspect(session):
    user = User(name="Alice", email="alice@example.com")
    assert inspect(user).transient

    session.add(user)
    assert inspect(user).pending

    session.commit()  # the auto-begun transaction; commit flushes first
    assert inspect(user).persistent
    user_id = user.id

    session.delete(user)
    session.flush()
    assert inspect(user).deleted

    session.rollback()  # the delete is undone; the user is back
    assert inspect(user).persistent
    assert user.name == "Alice"  # rollback expired it: this reloads the row

    session.close()
    assert inspect(user).detached
    # Loaded attributes stay readable on a detached object.
    assert user.name == "Alice" and user.id == user_id


def _visible_elsewhere(engine, email) -> bool:
    with engine.connect() as conn:
        return bool(conn.scalar(text("SELECT count(*) FROM users WHERE email = :e"), {"e": email}))


@pytest.mark.commits  # another connection looks
def test_flush_sends_sql_and_assigns_the_id_but_does_not_commit(session, inspect_engine):
    user = User(name="Flush", email="flush@example.com")
    session.begin()  # writes only ever inside an explicit transaction (see below)
    session.add(user)
    assert user.id is None
    session.flush()
    assert user.id is not None  # id available
    assert not _visible_elsewhere(inspect_engine, "flush@example.com")  # not committed
    session.rollback()
    assert not _visible_elsewhere(inspect_engine, "flush@example.com")


@pytest.mark.commits  # another connection looks
def test_commit_makes_changes_visible_to_other_connections(session, inspect_engine):
    user = User(name="Commit", email="commit@example.com")
    with session.begin():
        session.add(user)
    assert user.id is not None
    assert _visible_elsewhere(inspect_engine, "commit@example.com")
    # expire_on_commit=False: no reload needed to read it after commit.
    assert "name" not in inspect(user).expired_attributes


@pytest.mark.commits  # another connection looks
def test_rollback_discards_the_insert_and_resets_the_object(session, inspect_engine):
    user = User(name="Rollback", email="rollback@example.com")
    session.begin()
    session.add(user)
    session.flush()
    session.rollback()
    assert inspect(user).transient  # back to a plain object
    assert not _visible_elsewhere(inspect_engine, "rollback@example.com")


@pytest.mark.commits  # another connection looks
def test_savepoint_rolls_back_only_its_own_work(session, inspect_engine):
    with session.begin():
        session.add(User(name="Kept", email="kept@example.com"))
        savepoint = session.begin_nested()
        session.add(User(name="Dropped", email="dropped@example.com"))
        session.flush()
        savepoint.rollback()
    assert _visible_elsewhere(inspect_engine, "kept@example.com")
    assert not _visible_elsewhere(inspect_engine, "dropped@example.com")


@pytest.mark.commits  # a session on the engine, as in production
def test_reads_outside_a_transaction_run_in_autocommit(session):
    """myapp/sessions.py: no BEGIN around reads; each statement is its own
    transaction (now() is the transaction's start), unless begin() says so."""
    first, second = session.scalar(select(func.now())), session.scalar(select(func.now()))
    assert first != second
    session.close()
    with session.begin():
        first, second = session.scalar(select(func.now())), session.scalar(select(func.now()))
    assert first == second


@pytest.mark.commits  # another connection looks
def test_a_write_outside_an_explicit_transaction_fails_loudly(session, inspect_engine):
    """Outside ``with session.begin():`` reads run in autocommit, so a write
    there would be committed statement by statement: it raises instead."""
    session.add(User(name="Loose", email="loose@example.com"))
    with pytest.raises(WriteOutsideTransaction):
        session.flush()
    session.rollback()
    with pytest.raises(WriteOutsideTransaction):
        session.execute(insert(User).values(name="Loose", email="loose@example.com"))
    with pytest.raises(WriteOutsideTransaction):
        session.execute(delete(User))
    session.rollback()
    assert not _visible_elsewhere(inspect_engine, "loose@example.com")


def test_each_connection_carries_server_side_limits_and_a_name(app):
    with app.app_context():
        session = db.Session()
        statement_timeout = session.scalar(text("SHOW statement_timeout"))
        idle_timeout = session.scalar(text("SHOW idle_in_transaction_session_timeout"))
        name = session.scalar(text("SELECT current_setting('application_name')"))
    assert statement_timeout == "10s"
    assert idle_timeout == "30s"
    assert name == f"myapp[{os.getpid()}]"


def test_pool_is_sized_from_the_config(config):
    pool = db.engine().pool
    assert pool.size() == config["DB_POOL_SIZE"]
    assert pool._max_overflow == 0
    # No ping on every checkout: only after idle (tests/test_round_trips.py).
    assert pool._pre_ping is False


@pytest.mark.commits  # threads hold every connection of the pool
def test_exhausted_pool_answers_503_after_the_pool_timeout(app, config, client):
    """Every connection busy: a request waits DB_POOL_TIMEOUT, then gets the
    site's 503 page — and the pool is whole again afterwards."""
    size = config["DB_POOL_SIZE"]
    holding = threading.Barrier(size + 1)
    release = threading.Event()

    def hold_a_connection():
        with app.app_context():
            db.Session().execute(text("SELECT 1"))  # checks out and keeps a connection
            holding.wait()
            release.wait(30)

    holders = [threading.Thread(target=hold_a_connection) for _ in range(size)]
    for holder in holders:
        holder.start()
    try:
        holding.wait()
        assert db.engine().pool.checkedout() == size
        response = client.get("/users")
        assert response.status_code == 503
        assert "could not handle this request" in response.get_data(as_text=True)
        assert response.headers["Retry-After"] == "5"
        assert client.get("/healthz").json == {"status": "error", "database": "unavailable"}
    finally:
        release.set()
        for holder in holders:
            holder.join()
    assert db.engine().pool.checkedout() == 0
    assert client.get("/users").status_code == 200


@pytest.mark.commits  # another connection renames the table
def test_a_database_without_tables_is_a_503_page_and_the_log_says_run_init_db(
    client, inspect_engine, caplog
):
    with inspect_engine.begin() as conn:
        conn.execute(text("ALTER TABLE users RENAME TO users_elsewhere"))
    try:
        response = client.get("/users")
    finally:
        with inspect_engine.begin() as conn:
            conn.execute(text("ALTER TABLE users_elsewhere RENAME TO users"))
    html = response.get_data(as_text=True)
    assert response.status_code == 503
    assert "could not handle this request" in html and "Traceback" not in html
    assert "run `flask --app app init-db`" in caplog.text


def test_any_other_programming_error_stays_a_500(app):
    """Only a missing table is an outage; other SQL errors are bugs (500)."""
    with app.test_request_context("/users"):
        with pytest.raises(ProgrammingError) as caught:
            db.Session().execute(text("SELECT * FROM"))
        db.Session.remove()
        with pytest.raises(ProgrammingError):
            errors.database_without_tables(caught.value)


def test_an_application_name_in_the_url_wins(database_url):
    """Behind PgBouncer one name for all workers spares a SET per hand-over."""
    settings = config.from_environment(PROJECT_ROOT / "instance", {"SECRET_KEY": "x"})
    settings["DATABASE_URL"] = make_url(database_url).update_query_dict(
        {"application_name": "myapp"})
    engine = db.build_engine(settings)
    try:
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT current_setting('application_name')")) == "myapp"
    finally:
        engine.dispose()
