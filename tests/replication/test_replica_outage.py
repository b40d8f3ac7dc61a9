"""A replica that stops or falls behind is bypassed without an error page,
reported by /healthz, and used again by itself once healthy."""

from __future__ import annotations

import pytest
import requests

from cluster.postgres import wait_for_streaming
from tests.replication.conftest import app_server
from tests.support.http import Browser
from tests.support.prometheus import scrape
from tests.support.workload import Load, check_writes, wait_for

pytestmark = [pytest.mark.server, pytest.mark.replication, pytest.mark.faults]

READS = {"list": 40, "search": 20, "detail": 30, "create": 10}


def reads(server, target: str) -> float:
    return scrape(server.url).value("myapp_db_reads_total", target=target)


def healthz(server) -> dict:
    return requests.get(f"{server.url}/healthz", timeout=10).json()


def test_replica_stopped_mid_load_no_error_page_then_back_in_use(
        replication, server, primary_engine):
    replica = replication.replicas[0]
    load = Load(server.url, clients=6, mix=READS).start()
    try:
        assert wait_for(lambda: len(load.results) >= 100, timeout=60)
        replica.stop()
        assert wait_for(lambda: healthz(server).get("replica") == "unavailable", 10)
        stopped_at, primary_before = len(load.results), reads(server, "primary")
        assert wait_for(lambda: len(load.results) >= stopped_at + 150, timeout=60)
        # Reads moved to the primary (the mix is 90% reads), and said why.
        assert reads(server, "primary") - primary_before >= 100
        assert scrape(server.url).value("myapp_db_replica_fallbacks_total",
                                        reason="unavailable") >= 100
        reads_while_down = reads(server, "replica")

        replica.start()
        wait_for_streaming(replica)
        assert wait_for(lambda: healthz(server).get("replica") == "ok", 10)
        assert wait_for(lambda: reads(server, "replica") >= reads_while_down + 50, timeout=60)
    finally:
        load.stop()

    assert load.server_errors() == []
    assert None not in load.statuses()
    writes = check_writes(primary_engine, load)
    assert writes.consistent, writes
    log = server.output()
    # One line per change of state, per worker process (2).
    address = f"127.0.0.1:{replica.port}/myapp"
    assert 1 <= log.count(f"replica {address} is unavailable") <= 2, log[-3000:]
    assert 1 <= log.count(f"replica {address} is back in use") <= 2


def test_a_lagging_replica_is_bypassed_and_reported(replication, replicated_tables):
    with app_server(replication, DB_REPLICA_MAX_LAG_S="1") as server:
        browser = Browser(server.url)
        replication.wait_until_replayed()
        replication.pause_replay()
        try:
            # Writes the replica receives but does not replay: it falls behind.
            for n in range(3):
                replicated_tables.write(f"INSERT INTO users (name, email) VALUES ('L{n}', 'l{n}@x.org')")
            assert wait_for(lambda: healthz(server).get("replica") == "lagging", 15)
            assert healthz(server)["status"] == "ok"
            # Every worker finds it behind by itself (each confirms the lag
            # for LAG_CONFIRM_S): then the list shows the rows only the
            # primary has.
            assert wait_for(lambda: "l2@x.org" in browser.get("/users").text, 10)
        finally:
            replication.resume_replay()
        assert wait_for(lambda: healthz(server).get("replica") == "ok", 15)
        port = replication.replicas[0].port
        assert f"replica 127.0.0.1:{port}/myapp is lagging" in server.output()


def test_primary_down_is_a_503_even_for_pages_the_replica_could_serve(replication, server):
    # The signed-in account is read on the primary (revocation), so a page
    # that needs it cannot be served while the primary is away; the replica
    # is not blamed for that.
    browser = Browser(server.url)
    assert browser.get("/users").status_code == 200
    replication.primary.stop()
    try:
        away = browser.get("/users")
        assert away.status_code == 503 and 'class="site-header"' in away.text
        health = requests.get(f"{server.url}/healthz", timeout=30)
        assert health.status_code == 503
        assert health.json() == {"status": "error", "database": "unavailable", "replica": "ok"}
    finally:
        replication.primary.start()
        wait_for_streaming(replication.replicas[0])
    assert wait_for(lambda: browser.get("/users").status_code == 200, 20)
    assert "is unavailable" not in server.output()
