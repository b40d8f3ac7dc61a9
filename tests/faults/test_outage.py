"""Scenario 2 — the database goes away, gets slow, or a query runs too long.

The shared PostgreSQL server is never touched: the app reaches it through
the test's TCP proxy, and the faults are made there (or, for the statement
timeout, with a lock the test holds).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from myapp import config, db
from myapp.role_settings import apply_role_settings
from tests.support import fault_report
from tests.support.database import assert_nothing_written
from tests.support.http import Browser
from tests.support.sampling import ConnectionSampler, app_connections
from tests.support.workload import DATABASE_UNAVAILABLE_PAGE, Load, check_writes, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.server]

WORKERS, THREADS = 2, 8
POOL_TIMEOUT, CONNECT_TIMEOUT = 3, 2
ENV = {"DB_POOL_TIMEOUT": str(POOL_TIMEOUT), "DB_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT)}
# The contract: a 503 "within DB_POOL_TIMEOUT + a few seconds".
ANSWER_BOUND = POOL_TIMEOUT + CONNECT_TIMEOUT + 5
# The session limits init-db sets by default (restored after a test changes them).
LIMITS = {"DB_STATEMENT_TIMEOUT_MS": config.DEFAULT_STATEMENT_TIMEOUT_MS,
          "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS": config.DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS}
# 409: an edit that lost a race with another client's; 404: a detail page
# asked for before any user existed.
OK = {200, 303, 404, 409}


def healthz(server) -> tuple[int | None, dict]:
    try:
        response = requests.get(f"{server.url}/healthz", timeout=30)
    except requests.RequestException:
        return None, {}
    return response.status_code, response.json()


def answered_between(load: Load, start: float, end: float = float("inf")):
    return [r for r in load.results if r.started >= start and r.started + r.elapsed <= end]


def wait_for_answers(load: Load, start: float, count: int, timeout: float = 60):
    assert wait_for(lambda: len(answered_between(load, start)) >= count, timeout), (
        f"fewer than {count} answers in {timeout} s: {load.statuses()}"
    )


def test_outage_mid_load_gives_503s_and_recovers_alone(start_server, proxy, inspect_engine):
    server = start_server(workers=WORKERS, threads=THREADS, env=ENV)
    pids = server.worker_pids()
    connections = ConnectionSampler(inspect_engine)
    connections.start()
    load = Load(server.url, clients=16).start()
    wait_for_answers(load, 0, 100)

    cut_at = time.monotonic()
    proxy.refuse()
    proxy.cut()
    health_during, health_body = healthz(server)
    wait_for_answers(load, cut_at, 100)

    restored_at = time.monotonic()
    proxy.accept()
    assert wait_for(lambda: healthz(server)[0] == 200, timeout=30)
    recovered_at = time.monotonic()
    wait_for_answers(load, recovered_at, 200)
    load.stop()
    connections.stop()

    during = answered_between(load, cut_at, restored_at)
    after = answered_between(load, recovered_at)
    writes = check_writes(inspect_engine, load)
    total, idle_in_transaction = app_connections(inspect_engine)
    fault_report.record(
        "2a database outage (proxy cut, new connections refused)",
        requests=len(load.results),
        statuses=dict(sorted(load.statuses().items(), key=str)),
        answers_during_outage=len(during),
        of_which_503=sum(r.status == 503 for r in during),
        slowest_503_seconds=round(max(r.elapsed for r in during), 2),
        limit_seconds=f"{ANSWER_BOUND} (DB_POOL_TIMEOUT={POOL_TIMEOUT})",
        recovery_seconds=round(recovered_at - restored_at, 2),
        **writes.figures(),
        peak_connections=f"{connections.peak} (limit {WORKERS * THREADS})",
    )

    # During the outage: the site's own 503 page, promptly; /healthz says so.
    assert health_during == 503 and health_body["database"] == "unavailable"
    assert during and all(r.status == 503 for r in during), load.statuses(during)
    assert all(r.own_error_page for r in during)
    assert max(r.elapsed for r in during) <= ANSWER_BOUND
    # Every request got an answer, and no error other than those 503s.
    assert None not in load.statuses() and not load.server_errors(allowed=(503,))
    # Back by itself, without a restart.
    assert recovered_at - restored_at <= 5
    assert all(r.status in OK for r in after), load.statuses(after)
    assert server.worker_pids() == pids
    # Nothing acknowledged was lost; no half-written user.
    assert writes.consistent, writes
    assert connections.peak <= WORKERS * THREADS
    assert wait_for(lambda: app_connections(inspect_engine)[1] == 0, timeout=10)
    assert total <= WORKERS * THREADS, (total, idle_in_transaction)


def test_slow_database_is_slow_but_correct(start_server, proxy, inspect_engine):
    # As many clients as threads: the times measured are the database's,
    # not a queue in front of busy threads.
    server = start_server(workers=WORKERS, threads=4, env=ENV)
    load = Load(server.url, clients=WORKERS * 4).start()
    wait_for_answers(load, 0, 100)

    # Phase 1: every round trip slower; pooled connections keep working.
    latency = 0.1  # per chunk, each way: a query's round trip takes 0.2 s more
    slow_from = time.monotonic()
    proxy.set_latency(latency)
    wait_for_answers(load, slow_from, 24)

    # Phase 2: slower than DB_CONNECT_TIMEOUT, and the pooled connections
    # dropped (a database restarting under load): no new connection can be
    # made in time, so requests must get the 503 page, not wait.
    too_slow_from = time.monotonic()
    proxy.set_latency(CONNECT_TIMEOUT + 1)
    proxy.cut()
    wait_for_answers(load, too_slow_from + CONNECT_TIMEOUT + 1, 16)
    slow_until = time.monotonic()
    proxy.set_latency(0)
    proxy.cut()  # connections opened while slow are still being handed data late
    assert wait_for(lambda: healthz(server)[0] == 200, timeout=30)
    recovered_at = time.monotonic()
    wait_for_answers(load, recovered_at, 100)
    load.stop()

    slow = answered_between(load, slow_from, too_slow_from)
    too_slow = answered_between(load, too_slow_from + CONNECT_TIMEOUT + 1, slow_until)
    after = answered_between(load, recovered_at)
    writes = check_writes(inspect_engine, load)
    fault_report.record(
        "2b slow database (proxy latency)",
        requests=len(load.results),
        statuses=dict(sorted(load.statuses().items(), key=str)),
        slow=f"+{latency * 2:.1f} s per round trip: {len(slow)} answers,"
             f" median {median_seconds(slow)} s, statuses {sorted(load.statuses(slow))}",
        too_slow=f"+{(CONNECT_TIMEOUT + 1) * 2} s per round trip, pool dropped:"
                 f" {len(too_slow)} answers, statuses {sorted(load.statuses(too_slow))},"
                 f" slowest {max(r.elapsed for r in too_slow):.2f} s",
        recovery_seconds=round(recovered_at - slow_until, 2),
        median_seconds_after=median_seconds(after),
        acknowledged_creates=writes.acknowledged,
        stored=writes.stored,
    )

    # Slow, but every answer correct: success, or the clean 503 in time.
    assert None not in load.statuses() and not load.server_errors(allowed=(503,))
    assert too_slow and all(r.status == 503 for r in too_slow), load.statuses(too_slow)
    assert max(r.elapsed for r in too_slow) <= ANSWER_BOUND
    assert recovered_at - slow_until <= 5
    assert all(r.status in OK for r in after), load.statuses(after)
    assert writes.consistent, writes
    assert wait_for(lambda: app_connections(inspect_engine)[1] == 0, timeout=10)


def median_seconds(results) -> float:
    return round(sorted(r.elapsed for r in results)[len(results) // 2], 2)


def test_statement_over_timeout_is_a_clean_503_and_frees_the_connection(
    start_server, inspect_engine, tables, request
):
    """A query held up past ``statement_timeout`` (here: by a lock, as a
    migration would take one) is cancelled by PostgreSQL; the request gets the
    503 page, its transaction is rolled back and its connection is reused."""
    threads = 4
    timeout_ms = 1000
    # What `DB_STATEMENT_TIMEOUT_MS=1000 flask init-db` sets: the role's own
    # default in this database, which every new connection takes.
    apply_role_settings(inspect_engine, {**LIMITS, "DB_STATEMENT_TIMEOUT_MS": timeout_ms})
    request.addfinalizer(lambda: apply_role_settings(inspect_engine, LIMITS))
    server = start_server(workers=WORKERS, threads=threads, env=ENV)
    browsers = [Browser(server.url) for _ in range(WORKERS * threads)]
    tokens = [browser.csrf_token() for browser in browsers]

    def blocked_requests(n):
        browser, token = browsers[n], tokens[n]
        started = time.monotonic()
        search = browser.get("/users", params={"q": "anyone"})
        create = browser.submit("/users", {"name": "Blocked", "email": "blocked@example.com"},
                                token=token)
        return search, create, time.monotonic() - started

    # Nothing written: checked once the lock is gone (it would block the check).
    with assert_nothing_written(tables), inspect_engine.connect() as locker:
        locker.execute(text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
        with ThreadPoolExecutor(WORKERS * threads) as pool:
            answers = list(pool.map(blocked_requests, range(WORKERS * threads)))
        locker.rollback()

    # Every connection went back to its pool: a full house of concurrent
    # requests gets through (a lost connection would leave a thread waiting
    # DB_POOL_TIMEOUT for one, then a 503).
    with ThreadPoolExecutor(WORKERS * threads * 2) as pool:
        after = list(pool.map(lambda _: Browser(server.url).get("/users?q=a").status_code,
                              range(WORKERS * threads * 4)))
    total, idle_in_transaction = app_connections(inspect_engine)
    slowest = max(seconds for _, _, seconds in answers)
    fault_report.record(
        "2c query over statement_timeout (table locked)",
        statement_timeout_ms=timeout_ms,
        blocked_requests=2 * len(answers),
        statuses=sorted({r.status_code for s, c, _ in answers for r in (s, c)}),
        slowest_pair_seconds=round(slowest, 2),
        requests_after=len(after),
        statuses_after=sorted(set(after)),
        connections_after=f"{total} (limit {WORKERS * threads}), idle in transaction"
                          f" {idle_in_transaction}",
    )

    for search, create, _ in answers:
        for response in (search, create):
            assert response.status_code == 503
            assert DATABASE_UNAVAILABLE_PAGE in response.text
            assert "statement timeout" not in response.text and "LOCK" not in response.text
    assert slowest <= 2 * ANSWER_BOUND
    assert set(after) == {200}
    assert total <= WORKERS * threads and idle_in_transaction == 0


def test_teardown_survives_a_connection_lost_after_the_last_query(app, proxied_url, proxy):
    """The in-process form of what 2a found: the request's reads succeeded,
    then the connection died; ending the request must neither raise (a 500
    for a page already built) nor leave the broken session to the thread's
    next request."""
    engine = create_engine(proxied_url, poolclass=NullPool)
    try:
        with app.app_context():
            # This thread's session, as a view would get it, but via the proxy.
            assert db.Session(bind=engine).scalar(text("SELECT 1")) == 1
            proxy.cut()
        # Leaving the context ran teardown: no error, and the slot is empty.
        assert not db.Session.registry.has()
    finally:
        engine.dispose()
