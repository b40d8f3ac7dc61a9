"""One local cluster (``make cluster`` on free ports in a temp dir) for the tests of this package."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from tests.support.cluster import LocalCluster


@pytest.fixture(scope="package")
def cluster():
    with LocalCluster(instances=2) as cluster:
        yield cluster


@pytest.fixture(scope="package")
def primary(cluster):
    """The cluster's primary, straight (not through PgBouncer), for the tests' own looks."""
    engine = create_engine(cluster.database_url("primary"), poolclass=NullPool)
    yield engine
    engine.dispose()
