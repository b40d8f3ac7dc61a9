"""A private primary with a streaming replica (harness/replication.py), and
real gunicorn servers reading from it, for this package's tests.

The servers are this package's own (never the machine's PostgreSQL on 5432):
started once for the package, stopped at its end, nothing left listening.
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from harness.gunicorn import GunicornServer
from harness.replication import Replication
from tests.support import accounts
from tests.support.database import Tables, truncate_tables


@pytest.fixture(scope="package")
def replication():
    with Replication(replicas=1) as servers:
        accounts.insert_standard_accounts_into(servers.primary_url)
        yield servers


@pytest.fixture(scope="package")
def primary_engine(replication):
    engine = create_engine(replication.primary_url, poolclass=NullPool)
    yield engine
    engine.dispose()


@pytest.fixture
def replicated_tables(replication, primary_engine) -> Tables:
    """The primary's tables, emptied but for the standard accounts, and that
    state replayed by the replica before the test starts."""
    replication.resume_replay()
    truncate_tables(primary_engine)
    with primary_engine.begin() as connection:
        accounts.insert_standard_accounts(connection)
    replication.wait_until_replayed()
    return Tables(primary_engine)


def app_server(replication: Replication, **env: str) -> GunicornServer:
    """gunicorn on the primary, reading from the replica(s)."""
    return GunicornServer(replication.primary_url, workers=2, threads=4, env={
        "DATABASE_REPLICA_URL": ",".join(replication.replica_urls),
        # A stopped replica is noticed at once; the tests never wait long.
        "DB_CONNECT_TIMEOUT": "2",
        # Reading the servers' transaction counters terminates the app's
        # connections (Replication.settled_transactions): pinging at every
        # checkout keeps that instrument from failing the next request on a
        # connection it killed a moment ago (myapp/idle_ping.py), and makes
        # each page's count one ping more, exactly.
        "DB_PING_AFTER_IDLE_MS": "0",
        **env,
    })


@pytest.fixture
def server(replication, replicated_tables):
    with app_server(replication) as running:
        yield running
