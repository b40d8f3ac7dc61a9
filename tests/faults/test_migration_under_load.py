"""Scenario 8 — a migration on a live table: revision 0002 (CREATE INDEX
CONCURRENTLY on audit_events) runs while the mixed load of scenario 1 creates,
edits and reads users (each write adds an audit row) on real gunicorn.

No 5xx, every acknowledged write stored, the index built and valid, and no
request ever waits on a lock the migration holds or queues for: the bound
the migration's ``lock_timeout`` promises, and with CONCURRENTLY not even that.
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import orm, text

from harness.flask_cli import run_flask
from myapp.seeding import seed_users
from tests.support import fault_report
from tests.support.sampling import OWN_APPLICATION_NAME
from tests.support.workload import Load, check_writes, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.server]

WORKERS, THREADS = 2, 8
CLIENTS = 32
SEEDED = 50_000
MAX_REQUESTS = 20_000  # a bound; the load stops once the migration is over
AROUND = 300  # requests before the migration starts, and after it ends
LOCK_TIMEOUT_MS = 2_000  # the default MIGRATION_LOCK_TIMEOUT_MS

# The server's backends waiting for a lock that the migration's backend
# holds or is queued for (pg_blocking_pids lists both), and for how long.
BLOCKED_BY_MIGRATION = text(
    "SELECT count(*) AS waiting,"
    " coalesce(max(extract(epoch FROM now() - a.query_start)), 0) AS longest"
    " FROM pg_stat_activity a JOIN pg_stat_activity m"
    "   ON m.application_name = 'myapp-migrate' AND m.pid = ANY (pg_blocking_pids(a.pid))"
    " WHERE a.datname = current_database() AND a.application_name LIKE 'myapp[%'"
    " AND a.application_name <> :own"
)
MIGRATION_RUNNING = text(
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND application_name = 'myapp-migrate'"
)


class LockWaitSampler(threading.Thread):
    """Samples requests blocked by the migration, every few milliseconds."""

    def __init__(self, engine, interval: float = 0.01):
        super().__init__(daemon=True)
        self.engine, self.interval = engine, interval
        self.samples = self.samples_with_migration = self.blocked_samples = 0
        self.longest_wait = 0.0
        self.stopped = threading.Event()

    def run(self):
        with self.engine.connect() as conn:
            while not self.stopped.is_set():
                running = conn.scalar(MIGRATION_RUNNING)
                waiting, longest = conn.execute(
                    BLOCKED_BY_MIGRATION, {"own": OWN_APPLICATION_NAME}
                ).one()
                conn.rollback()
                self.samples += 1
                self.samples_with_migration += bool(running)
                self.blocked_samples += bool(waiting)
                self.longest_wait = max(self.longest_wait, float(longest))
                self.stopped.wait(self.interval)

    def stop(self) -> LockWaitSampler:
        self.stopped.set()
        self.join()
        return self


def _latencies(results) -> str:
    times = sorted(r.elapsed for r in results)
    if not times:
        return "none"
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return f"{len(times)} requests, p99 {p99 * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms"


def test_create_index_concurrently_under_mixed_load(start_server, database_url, inspect_engine):
    with orm.Session(inspect_engine) as session:
        seed_users(session, SEEDED)
    # Back to before 0002 for this index alone: dropped, and the database
    # stamped 0001. (A downgrade would also undo any later revision, which
    # the running code needs.)
    with inspect_engine.connect() as conn:
        conn.execute(text("DROP INDEX audit_events_user_id_idx"))
        conn.commit()
    stamp = run_flask("db", "stamp", "0001", database_url=database_url)
    assert stamp.returncode == 0, stamp.stderr

    server = start_server(workers=WORKERS, threads=THREADS)
    load = Load(server.url, clients=CLIENTS, total=MAX_REQUESTS,
                known_ids=[1, SEEDED // 2, SEEDED]).start()
    sampler = LockWaitSampler(inspect_engine)
    try:
        assert wait_for(lambda: len(load.results) >= AROUND, timeout=120)
        sampler.start()
        started = time.monotonic()
        up = run_flask("db", "upgrade", "0002", database_url=database_url, timeout=300)
        ended = time.monotonic()
        done_at_end = len(load.results)
        assert wait_for(lambda: len(load.results) >= done_at_end + AROUND, timeout=120)
    finally:
        load.stop()
        sampler.stop()

    assert up.returncode == 0, up.stderr
    assert "Running upgrade 0001 -> 0002" in up.stderr
    restamp = run_flask("db", "stamp", "head", database_url=database_url)
    assert restamp.returncode == 0, restamp.stderr
    with inspect_engine.connect() as conn:
        assert conn.scalar(text(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'audit_events_user_id_idx'::regclass"
        )) is True

    during = [r for r in load.results if r.started < ended and r.started + r.elapsed > started]
    before = [r for r in load.results if r.started + r.elapsed <= started]
    statuses = load.statuses()
    writes = check_writes(inspect_engine, load)
    fault_report.record(
        "8 migration under load",
        migration="0001 -> 0002, CREATE INDEX CONCURRENTLY on audit_events",
        audit_rows_before=SEEDED,
        migration_seconds=round(ended - started, 1),
        clients=CLIENTS,
        server=f"{WORKERS} workers x {THREADS} threads",
        requests=len(load.results),
        statuses=dict(sorted(statuses.items(), key=str)),
        before_the_migration=_latencies(before),
        during_the_migration=_latencies(during),
        lock_wait_samples=f"{sampler.samples} ({sampler.samples_with_migration} while it ran)",
        requests_seen_blocked_by_it=sampler.blocked_samples,
        longest_wait_on_it_s=round(sampler.longest_wait, 3),
        **writes.figures(),
    )

    assert during, "the load must overlap the migration"
    assert sampler.samples_with_migration > 0
    # Every request answered, none with a server error (409: an edit race).
    assert set(statuses) <= {200, 303, 409}, statuses
    assert writes.acknowledged > 0 and writes.consistent, writes
    # No request waited on the migration longer than its lock_timeout; with
    # CONCURRENTLY none waited at all (a plain CREATE INDEX blocks writes).
    assert sampler.longest_wait < LOCK_TIMEOUT_MS / 1000
    assert sampler.blocked_samples == 0
