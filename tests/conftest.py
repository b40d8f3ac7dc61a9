"""Fixtures: a real PostgreSQL database per test run, the app, clean tables.

The database is created when the run starts and dropped when it ends. If no
server is reachable the run stops at once, with one line saying how to point
it at one. pytest-flask provides ``config`` (``app.config``) and the
``options`` marker; its ``client`` and its request context are replaced
below, each saying why.

Every test that touches the database starts with empty tables but for one
account per role (tests/support/accounts.py; ``client`` is signed in as the
editor), one of two ways:

* **Rolled back** (the default for tests that use the app in this process):
  the test runs inside one transaction on one connection, which every session
  of the app joins — their own transactions become SAVEPOINTs
  (``join_transaction_mode="create_savepoint"``, SQLAlchemy's "joining a
  session into an external transaction") — and is rolled back at its end.
  Read through ``tables``, which uses that same connection.
* **Committed**, for tests marked ``commits`` or ``server``: another
  connection or process must see what the app commits (gunicorn, a ``flask``
  subprocess, threads with connections of their own, the pool itself, a
  second connection the test opens), or ``now()`` must move between
  transactions. Their tables are emptied with TRUNCATE (ids restarting at
  1) before they start and when they end.
"""

from __future__ import annotations

import functools

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from myapp import PROJECT_ROOT, config, create_app, db
from myapp.migrating import init_database
from myapp.models import Role
from tests.support import accounts, database, factories, fault_report


@pytest.fixture(scope="session")
def database_url():
    try:
        url = database.create_test_database()
    except database.ServerUnreachable as err:
        pytest.exit(str(err), returncode=3)
    # What init-db does: the schema by the migrations, and the app's session
    # limits as the role's defaults there.
    init_database(config.from_environment(PROJECT_ROOT / "instance",
                                          {"DATABASE_URL": url.render_as_string(hide_password=False),
                                           "SECRET_KEY": "unused"}))
    yield url
    db.Session.remove()
    database.drop_test_database(url)


@pytest.fixture
def database_without_tables():
    """A second, empty database (no init-db), dropped after the test."""
    url = database.create_test_database()
    yield url
    database.drop_test_database(url)


@pytest.fixture(scope="session")
def app(database_url):
    return create_app(
        {
            "DATABASE_URL": database_url,
            "SECRET_KEY": "test-secret-key",
            "DB_POOL_SIZE": 8,
            "DB_POOL_TIMEOUT": 2,
        }
    )


@pytest.fixture(autouse=True)
def _push_request_context():
    """Replaces pytest-flask's autouse fixture of this name (only the same
    name overrides it), which pushes one request context around each whole
    test: in Flask 3.1 every ``client`` request would then reuse that app
    context, ``teardown_appcontext`` — ``Session.remove()`` — would not run
    between requests, and one session would serve them all, as production
    never does. Tests that need a context push their own."""


@pytest.fixture
def new_client(app):
    """``new_client(role=Role.EDITOR)``: a test client signed in as the
    standard account of ``role`` (None: anonymous), used outside any
    context, so each request tears down.

    Not pytest-flask's way, which enters ``with app.test_client()``: that
    keeps each request's context until the next request, so the session
    would be removed one request late (and a request sent from another
    thread would fail to pop its context)."""

    def make(role: Role | None = Role.EDITOR):
        return accounts.sign_in_test_client(app.test_client(), role)

    return make


@pytest.fixture
def client(new_client):
    """A test client signed in as the editor: what most tests exercise.
    Replaces pytest-flask's (see ``new_client``)."""
    return new_client()


@pytest.fixture
def anonymous_client(new_client):
    return new_client(None)


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture(scope="session")
def inspect_engine(database_url):
    """A separate engine: a connection of the test's own, apart from the app's."""
    engine = create_engine(database_url, poolclass=NullPool)
    yield engine
    engine.dispose()


def _rolls_back(request) -> bool:
    return "app" in request.fixturenames and not any(
        request.node.get_closest_marker(marker) for marker in ("commits", "server")
    )


@pytest.fixture(autouse=True)
def _database_bind(request):
    """Empty tables for every test that touches the database (see above);
    yields what ``tables`` reads through."""
    if not {"database_url", "tables"} & set(request.fixturenames):
        yield None
    elif _rolls_back(request):
        request.getfixturevalue("app")
        db.Session.remove()
        with db.engine().connect() as connection:
            outer = connection.begin()
            accounts.insert_standard_accounts(connection)
            db.Session.configure(bind=connection, join_transaction_mode="create_savepoint")
            try:
                yield connection
            finally:
                db.Session.remove()
                # Back to the engine, and to SQLAlchemy's default join mode.
                db.Session.configure(
                    bind=db.engine(), join_transaction_mode="conditional_savepoint"
                )
                outer.rollback()
    else:
        request.getfixturevalue("database_url")
        engine = request.getfixturevalue("inspect_engine")
        # Before: ids start at 1 again (rolled-back tests advance the
        # sequences; a rollback does not undo that). After: the next test,
        # which may be a rolled-back one, starts with empty tables.
        database.truncate_tables(engine)
        with engine.begin() as connection:
            accounts.insert_standard_accounts(connection)
        try:
            yield engine
        finally:
            db.Session.remove()
            database.truncate_tables(engine)


@pytest.fixture
def tables(_database_bind) -> database.Tables:
    """The app's tables, read as this test must see them."""
    return database.Tables(_database_bind)


@pytest.fixture
def make_user(app):
    """``make_user(name=..., email=...)``: a user (and its audit row) made
    through the app's own service."""
    return functools.partial(factories.make_user, app)


def pytest_terminal_summary(terminalreporter):
    """The figures the fault and scale-out scenarios measured (tests/support/fault_report.py)."""
    if fault_report.FIGURES:
        terminalreporter.write_sep(
            "=", "measured figures (see docs/reliability.md and docs/deployment.md)")
        terminalreporter.write_line(fault_report.table())
