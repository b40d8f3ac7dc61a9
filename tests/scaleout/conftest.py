"""One local cluster (``make cluster`` on free ports in a temp dir) for this package's tests."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from harness.cluster import LocalCluster
from tests.support import accounts
from tests.support.database import Tables, truncate_tables


@pytest.fixture(scope="package")
def cluster():
    """The cluster, with the standard accounts the tests sign in as."""
    with LocalCluster(instances=2) as cluster:
        accounts.insert_standard_accounts_into(cluster.database_url("primary"))
        yield cluster


@pytest.fixture(scope="package")
def primary(cluster):
    """The cluster's primary, straight (not through PgBouncer), for the tests' own looks."""
    engine = create_engine(cluster.database_url("primary"), poolclass=NullPool)
    yield engine
    engine.dispose()


@pytest.fixture
def cluster_tables(primary) -> Tables:
    """The cluster's tables, read on its primary; emptied first (ids from 1),
    but for the standard accounts."""
    truncate_tables(primary)
    with primary.begin() as connection:
        accounts.insert_standard_accounts(connection)
    return Tables(primary)
