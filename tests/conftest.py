"""Fixtures: a real PostgreSQL database per test run, the app, a client.

The database is created when the run starts and dropped when it ends; each
test starts with empty tables. If no server is reachable the run stops at
once, with one line saying how to point it at one.
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from myapp import create_app, db
from tests.support import database


@pytest.fixture(scope="session")
def database_url():
    try:
        url = database.create_test_database()
    except database.ServerUnreachable as err:
        pytest.exit(str(err), returncode=3)
    engine = create_engine(url, poolclass=NullPool)
    db.create_schema(engine)
    engine.dispose()
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
    """Opt out of pytest-flask's autouse request context, on purpose.

    pytest-flask pushes a request context for the whole test. In Flask 3.1 a
    client request then reuses that already-pushed app context, so
    ``teardown_appcontext`` — our ``Session.remove()`` — would not run after
    each request, and tests would no longer see production's session
    lifecycle. Tests that need a context push one themselves.
    """


@pytest.fixture
def client(app):
    """A test client used outside any context, so each request tears down."""
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture(scope="session")
def inspect_engine(database_url):
    """A separate engine for the tests' own looks at the database."""
    engine = create_engine(database_url, poolclass=NullPool)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def _empty_tables(request):
    """Every test starts with empty tables (only tests that touch the database)."""
    if "database_url" not in request.fixturenames:
        yield
        return
    engine = request.getfixturevalue("inspect_engine")
    database.truncate_tables(engine)
    yield
    db.Session.remove()
