"""Scenario 3 — process faults: a worker killed, the master stopped, a preloaded app.

(The preload case on a healthy server is tests/test_fork_safety.py; here a
worker is killed and its replacement, forked later from the same master,
must not use the master's connection either.)
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import text

from tests.support import fault_report
from tests.support.http import Browser
from tests.support.sampling import app_connections, app_backends
from tests.support.workload import Load, check_writes, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.server]

WRITES = {"create": 50, "edit": 25, "list": 15, "detail": 10}
OK = {200, 303, 404, 409}


def test_sigkill_worker_mid_burst(start_server, inspect_engine):
    workers, threads, clients = 2, 8, 32
    server = start_server(workers=workers, threads=threads)
    load = Load(server.url, clients=clients, mix=WRITES).start()
    assert wait_for(lambda: len(load.results) >= 200, timeout=60)

    victim = server.worker_pids()[0]
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    replaced = wait_for(
        lambda: len(pids := server.worker_pids()) == workers and victim not in pids, timeout=30
    )
    replaced_at = time.monotonic()
    assert wait_for(lambda: sum(r.started >= replaced_at for r in load.results) >= 300, 60)
    load.stop()

    failed = [r for r in load.results if r.status is None]
    after = [r for r in load.results if r.started >= replaced_at + 1]
    writes = check_writes(inspect_engine, load)
    fault_report.record(
        "3a SIGKILL a worker mid-burst",
        requests=len(load.results),
        statuses=dict(sorted(load.statuses().items(), key=str)),
        no_answer=f"{len(failed)} (requests the killed worker held)",
        replaced_in_seconds=round(replaced_at - killed_at, 2),
        **writes.figures(),
        users_without_audit=writes.users_without_audit,
    )

    assert replaced, "the master did not replace the killed worker"
    assert not load.server_errors()
    # Only requests the dead worker was holding (at most one per client) got no answer.
    assert len(failed) <= clients
    assert all(r.status in OK for r in after), load.statuses(after)
    # No half-written change: users and audit rows agree; nothing acknowledged lost.
    assert writes.consistent, writes
    assert wait_for(lambda: app_connections(inspect_engine)[1] == 0, timeout=10)


IN_TRANSACTION = text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    " AND application_name LIKE 'myapp[%' AND xact_start IS NOT NULL"
)


def test_sigterm_master_lets_in_flight_requests_finish(start_server, proxy, tables):
    workers, threads = 2, 4
    burst = workers * threads
    server = start_server(workers=workers, threads=threads)
    browsers = [Browser(server.url) for _ in range(burst)]
    tokens = [browser.csrf_token() for browser in browsers]
    with ThreadPoolExecutor(burst * 2) as pool:  # fill every worker's pool first
        list(pool.map(lambda _: Browser(server.url).get("/users"), range(burst * 4)))

    # Slow the database down so the burst is still running when SIGTERM comes.
    proxy.set_latency(0.3)

    def create(n):
        try:
            response = browsers[n].submit(
                "/users", {"name": f"Term {n}", "email": f"term{n}@example.com"}, token=tokens[n]
            )
        except requests.RequestException as err:
            return type(err).__name__, None
        return response.status_code, response.headers.get("Location")

    with ThreadPoolExecutor(burst) as pool:
        futures = [pool.submit(create, n) for n in range(burst)]

        def in_transaction():
            with tables.connect() as conn:
                return conn.scalar(IN_TRANSACTION)

        # SIGTERM once the burst is inside the database, half-way through.
        in_flight = wait_for(lambda: (n := in_transaction()) >= burst // 2 and n, timeout=30)
        stopped_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        results = [future.result() for future in futures]
    exit_code = server.process.wait(timeout=60)
    stopped_in = time.monotonic() - stopped_at
    proxy.set_latency(0)

    with tables.connect() as conn:
        stored = conn.scalar(text("SELECT count(*) FROM users WHERE name LIKE 'Term %'"))
    acknowledged = sum(status == 303 for status, _ in results)
    fault_report.record(
        "3b SIGTERM the master mid-burst",
        requests=burst,
        in_a_transaction_at_sigterm=in_flight,
        statuses=sorted({str(status) for status, _ in results}),
        acknowledged=acknowledged,
        stored=stored,
        master_exit_code=exit_code,
        shutdown_seconds=round(stopped_in, 2),
    )

    assert in_flight, "the burst never got inside the database"
    assert [status for status, _ in results] == [303] * burst
    assert stored == acknowledged == burst
    assert exit_code == 0
    with pytest.raises(requests.ConnectionError):  # and it is really gone
        requests.get(f"{server.url}/healthz", timeout=5)


def test_preloaded_app_replacement_worker_opens_its_own_connections(
    start_server, inspect_engine
):
    server = start_server(
        workers=2, threads=4, extra_args=("--preload",),
        app_module="tests.support.preload_wsgi:app",
    )
    victim = server.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    assert wait_for(
        lambda: len(pids := server.worker_pids()) == 2 and victim not in pids, timeout=30
    )
    browser = Browser(server.url)
    for _ in range(40):
        assert browser.get("/users").status_code == 200
    workers = {f"myapp[{pid}]" for pid in server.worker_pids()}
    master = f"myapp[{server.process.pid}]"
    rows = app_backends(inspect_engine)
    masters = [row for row in rows if row.application_name == master]
    worker_rows = [row for row in rows if row.application_name in workers]
    assert {row.application_name for row in rows} <= workers | {master}
    assert worker_rows and len(masters) == 1
    # The master's connection has been idle since before any worker
    # (the replacement included) connected: nobody else ever used it.
    assert masters[0].state_change < min(row.backend_start for row in worker_rows)
