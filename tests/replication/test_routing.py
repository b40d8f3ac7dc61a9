"""Where reads and writes go: GET/HEAD pages from the replica, every POST on
the primary, counted as transactions on each server (pg_stat_database)."""

from __future__ import annotations

import pytest
import requests

from myapp.models import Role
from tests.support.http import Browser
from tests.support.prometheus import scrape

pytestmark = [pytest.mark.server, pytest.mark.replication]

def metric(server, name: str, **labels: str) -> float:
    return scrape(server.url).value(name, **labels)


def test_a_fresh_clients_gets_read_from_the_replica(replication, server):
    reader = Browser(server.url, role=Role.VIEWER)  # signed in: a POST, on the primary
    primary_before = replication.settled_transactions(replication.primary)
    replica_before = replication.settled_transactions(replication.replicas[0])
    rounds = 10
    for _ in range(rounds):
        for page in ("/users", "/users?q=Demo"):
            assert reader.get(page).status_code == 200
    primary = replication.settled_transactions(replication.primary) - primary_before
    replica = replication.settled_transactions(replication.replicas[0]) - replica_before

    pages = 2 * rounds
    # Each page checks one connection out of the primary's pool, for the
    # signed-in account's revocation check (on purpose: myapp/auth/
    # accounts.py): two transactions, the pool's pre-ping (psycopg2 pings
    # in autocommit) and the read. The page's own reads are on the replica
    # (with its pre-ping, and the routers' replay-position probes there).
    assert primary == 2 * pages
    assert replica >= 2 * pages
    assert metric(server, "myapp_db_reads_total", target="replica") >= pages
    # One session per request, two connections (primary and replica):
    # teardown's remove() gave both back.
    for pool in ("primary", "replica"):
        assert metric(server, "myapp_db_pool_checked_out_connections", pool=pool) == 0
        assert metric(server, "myapp_db_pool_size", pool=pool) == 2 * 4


def test_posts_write_and_read_on_the_primary_only(replication, server):
    browser = Browser(server.url)
    token = browser.csrf_token()
    primary_before = replication.settled_transactions(replication.primary)
    replica_before = replication.settled_transactions(replication.replicas[0])
    posts = 5
    for n in range(posts):
        answer = browser.submit("/users", {"name": f"Posted {n}", "email": f"p{n}@example.com"},
                                token=token)
        assert answer.status_code == 303
    primary = replication.settled_transactions(replication.primary) - primary_before
    replica = replication.settled_transactions(replication.replicas[0]) - replica_before
    # Per POST, three connection checkouts from the primary's pool, each
    # with its pre-ping transaction: the account read (committed before the
    # view's write), the write itself, and the WAL position read for
    # read-your-writes.
    assert primary == 6 * posts
    assert replica == 0


def test_healthz_reports_the_replica(server):
    response = requests.get(f"{server.url}/healthz", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "replica": "ok"}
