"""``make cluster`` itself: its commands, its pid files, what it leaves
behind, and the session limits that must hold through PgBouncer in
transaction mode (docs/deployment.md).

This module runs its own one-instance cluster with short limits, so the
timeouts can be watched firing within seconds.
"""

from __future__ import annotations

import re
import time

import psycopg2
import psycopg2.errors
import pytest

from cluster.processes import alive
from harness.cluster import LocalCluster
from tests.support import accounts
from tests.support.http import Browser
from tests.support.workload import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.server]

# The idle limit is the shorter one: PgBouncer's query_timeout counts from the
# start of a client's last query, idle time after it included, so with the
# longer idle limit it would fire first.
STATEMENT_TIMEOUT_S = 3
IDLE_IN_TRANSACTION_TIMEOUT_S = 1
# The cluster derives PgBouncer's backstops from them: 5 s longer.
PGBOUNCER_QUERY_TIMEOUT_S = STATEMENT_TIMEOUT_S + 5
PGBOUNCER_IDLE_TRANSACTION_TIMEOUT_S = IDLE_IN_TRANSACTION_TIMEOUT_S + 5


@pytest.fixture(scope="module")
def cluster():
    limits = {"DB_STATEMENT_TIMEOUT_MS": str(STATEMENT_TIMEOUT_S * 1000),
              "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS": str(IDLE_IN_TRANSACTION_TIMEOUT_S * 1000)}
    with LocalCluster(instances=1, env=limits) as cluster:
        accounts.insert_standard_accounts_into(cluster.database_url("primary"))
        yield cluster


def through_pgbouncer(cluster, database="myapp", **kwargs):
    """A connection as the app makes it: the app's role, through PgBouncer."""
    return psycopg2.connect(host="127.0.0.1", port=cluster.ports["pgbouncer"], user="postgres",
                            dbname=database, connect_timeout=3, **kwargs)


def pgbouncer_admin(cluster, command: str) -> list[dict]:
    conn = through_pgbouncer(cluster, "pgbouncer")
    conn.autocommit = True  # the admin console has no transactions
    try:
        with conn.cursor() as cur:
            cur.execute(command)
            names = [column.name for column in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]
    finally:
        conn.close()


# --- PgBouncer loaded the rendered pgbouncer.ini ------------------------------------


def test_pgbouncer_runs_the_rendered_ini_in_transaction_mode(cluster):
    config = {row["key"]: row["value"] for row in pgbouncer_admin(cluster, "SHOW CONFIG")}
    assert config["pool_mode"] == "transaction"
    assert config["listen_port"] == str(cluster.ports["pgbouncer"])
    assert float(config["query_timeout"]) == PGBOUNCER_QUERY_TIMEOUT_S
    assert float(config["idle_transaction_timeout"]) == PGBOUNCER_IDLE_TRANSACTION_TIMEOUT_S
    databases = {row["name"]: row for row in pgbouncer_admin(cluster, "SHOW DATABASES")}
    assert databases["myapp"]["port"] == cluster.ports["primary"]
    assert databases["myapp_replica"]["port"] == cluster.ports["replica"]
    pools = pgbouncer_admin(cluster, "SHOW POOLS")
    assert {"myapp"} <= {row["database"] for row in pools}
    assert all(row["pool_mode"] == "transaction" for row in pools if row["database"] == "myapp")


# --- each session limit fires through PgBouncer -------------------------------------


def test_init_db_set_the_limits_every_pooled_session_gets(cluster):
    conn = through_pgbouncer(cluster)
    try:
        with conn.cursor() as cur:
            settings = {}
            for name in ("statement_timeout", "idle_in_transaction_session_timeout", "jit"):
                cur.execute(f"SHOW {name}")
                settings[name] = cur.fetchone()[0]
    finally:
        conn.close()
    assert settings == {"statement_timeout": f"{STATEMENT_TIMEOUT_S}s",
                        "idle_in_transaction_session_timeout": f"{IDLE_IN_TRANSACTION_TIMEOUT_S}s",
                        "jit": "off"}


def test_statement_timeout_cancels_a_slow_query_through_pgbouncer(cluster):
    conn = through_pgbouncer(cluster)
    try:
        with conn.cursor() as cur, pytest.raises(psycopg2.errors.QueryCanceled,
                                                 match="statement timeout"):
            cur.execute("SELECT pg_sleep(%s)", (STATEMENT_TIMEOUT_S + 3,))
        conn.rollback()
        with conn.cursor() as cur:  # the pooled connection is fine afterwards
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
    finally:
        conn.close()


def test_idle_in_transaction_timeout_ends_an_abandoned_transaction(cluster):
    conn = through_pgbouncer(cluster)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")  # opens the transaction, then nothing
        # The subject of the test is the client staying idle past the limit.
        time.sleep(IDLE_IN_TRANSACTION_TIMEOUT_S + 1.5)
        with conn.cursor() as cur, pytest.raises(psycopg2.OperationalError):
            cur.execute("SELECT 1")
    finally:
        conn.close()


def test_pgbouncer_query_timeout_backs_up_a_query_that_escaped_statement_timeout(cluster):
    conn = through_pgbouncer(cluster)
    started = time.monotonic()
    try:
        with conn.cursor() as cur, pytest.raises(psycopg2.OperationalError):
            cur.execute("SET LOCAL statement_timeout = 0")
            cur.execute("SELECT pg_sleep(%s)", (PGBOUNCER_QUERY_TIMEOUT_S + 10,))
    finally:
        conn.close()
    # PgBouncer closes the client's connection without a message to it; its
    # log says why.
    assert PGBOUNCER_QUERY_TIMEOUT_S - 0.5 <= time.monotonic() - started
    assert time.monotonic() - started < PGBOUNCER_QUERY_TIMEOUT_S + 9
    assert wait_for(lambda: "query timeout" in pgbouncer_log(cluster), timeout=5)


def test_pgbouncer_idle_transaction_timeout_backs_up_the_server_limit(cluster):
    conn = through_pgbouncer(cluster)
    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
        time.sleep(PGBOUNCER_IDLE_TRANSACTION_TIMEOUT_S + 1.5)  # idle past PgBouncer's limit
        with conn.cursor() as cur, pytest.raises(psycopg2.OperationalError):
            cur.execute("SELECT 1")
    finally:
        conn.close()
    assert "idle transaction timeout" in pgbouncer_log(cluster)


def pgbouncer_log(cluster) -> str:
    return (cluster.dir / "log" / "pgbouncer.log").read_text()


# --- the commands: up, status, down, clean ------------------------------------------


def test_status_lists_every_component_up(cluster):
    result = cluster.run("status")
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    names = [line.split()[0] for line in lines]
    assert names == ["primary", "replica", "pgbouncer", "pgbouncer-exporter", "app-1", "nginx",
                     "prometheus"]
    assert all(re.search(r"\bup\b", line) for line in lines), result.stdout
    assert "streaming" in lines[1]


def test_the_replica_streams_what_the_app_writes(cluster):
    browser = Browser(cluster.url)
    created = browser.submit("/users", {"name": "Streamed", "email": "streamed@example.com"})
    assert created.status_code == 303
    replica = psycopg2.connect(host="127.0.0.1", port=cluster.ports["replica"], user="postgres",
                               dbname="myapp", connect_timeout=3)
    replica.autocommit = True

    def on_replica() -> bool:
        with replica.cursor() as cur:
            cur.execute("SELECT count(*) FROM users WHERE email = 'streamed@example.com'")
            return cur.fetchone()[0] == 1

    try:
        assert wait_for(on_replica, timeout=10)
        with replica.cursor() as cur:
            cur.execute("SELECT pg_is_in_recovery()")
            assert cur.fetchone()[0] is True
    finally:
        replica.close()


def test_up_again_starts_nothing_new(cluster):
    before = cluster.pids()
    assert len(before) == len(cluster.pid_files())  # every pid file of the contract
    cluster.up()
    assert cluster.pids() == before


def test_down_leaves_nothing_running_and_up_resumes_from_kept_data(cluster):
    browser = Browser(cluster.url)
    assert browser.submit("/users", {"name": "Kept", "email": "kept@example.com"}).status_code == 303
    processes = cluster.process_tree()
    assert len(processes) > len(cluster.pid_files())  # masters and their workers

    stopped = cluster.run("down")
    assert stopped.returncode == 0, stopped.stderr
    assert [pid for pid in processes if alive(pid)] == []
    assert cluster.listening() == []
    assert cluster.pids() == {}
    assert (cluster.dir / "primary" / "PG_VERSION").exists()  # data kept
    assert cluster.run("status").returncode == 1
    assert cluster.run("down").returncode == 0  # nothing to stop is fine

    cluster.up()
    # A new sign-in (the accounts are kept data too), then the user made before.
    listing = Browser(cluster.url).get("/users", params={"q": "kept@"})
    assert listing.status_code == 200
    assert "kept@example.com" in listing.text

    cleaned = cluster.run("clean")
    assert cleaned.returncode == 0
    assert not cluster.dir.exists()
    assert cluster.listening() == []

