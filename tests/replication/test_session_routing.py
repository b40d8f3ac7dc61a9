"""RoutingSession.get_bind against the real primary and replica: what goes
where inside one session, and a write sent to the replica fails loudly."""

from __future__ import annotations

import pytest
from psycopg2 import errors as pg_errors
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import InternalError
from sqlalchemy.pool import NullPool

from myapp import replicas, users
from myapp.models import Account, User
from myapp.replicas import READ_FROM, RoutingSession
from myapp.validation import UserFields

pytestmark = [pytest.mark.commits, pytest.mark.replication]

SERVER_ADDRESS = text("SELECT inet_server_port()")


@pytest.fixture
def engines(replication, replicated_tables):
    primary = create_engine(replication.primary_url, poolclass=NullPool)
    replica = create_engine(replication.replica_urls[0], poolclass=NullPool)
    yield primary, replica
    primary.dispose()
    replica.dispose()


@pytest.fixture
def replica_routed(engines):
    """A session as a GET request has it: plain reads go to the replica."""
    primary, replica = engines
    session = RoutingSession(bind=primary, expire_on_commit=False)
    session.info[READ_FROM] = replica
    yield session
    session.close()


def port_of(session, statement=SERVER_ADDRESS) -> int:
    return session.execute(statement).scalar_one()


def test_plain_reads_go_to_the_replica_writes_and_locks_to_the_primary(replication,
                                                                       replica_routed):
    replica_port, primary_port = replication.replicas[0].port, replication.primary.port
    assert port_of(replica_routed) == replica_port
    assert port_of(replica_routed, SERVER_ADDRESS.execution_options(**replicas.PRIMARY_ONLY)) \
        == primary_port
    # FOR UPDATE: to the primary (a standby cannot lock rows).
    assert replica_routed.execute(select(Account.id).where(Account.id == 1)
                                  .with_for_update()).scalar_one() == 1
    replica_routed.rollback()
    # A service's write, inside `with session.begin():`, with its flush: the primary.
    user = users.create_user(replica_routed, UserFields("Routed", "routed@example.com"))
    assert user.id is not None


def test_everything_inside_an_explicit_begin_goes_to_the_primary(replication, replica_routed):
    with replica_routed.begin():
        assert port_of(replica_routed) == replication.primary.port


def test_a_write_that_reaches_the_replica_fails_loudly(replica_routed, replicated_tables):
    # Text the router cannot see into: it goes where plain reads go, and the
    # hot standby refuses it. Nothing is written anywhere.
    with pytest.raises(InternalError) as refused:
        replica_routed.execute(text("INSERT INTO users (name, email) VALUES ('x', 'x@x.x')"))
    assert isinstance(refused.value.orig, pg_errors.ReadOnlySqlTransaction)
    replica_routed.rollback()
    assert replicated_tables.scalar("SELECT count(*) FROM users") == 0


def test_without_a_request_everything_is_on_the_primary(replication, engines):
    primary, _ = engines
    session = RoutingSession(bind=primary)
    try:
        assert port_of(session) == replication.primary.port
        assert session.execute(select(User)).all() == []
    finally:
        session.close()
