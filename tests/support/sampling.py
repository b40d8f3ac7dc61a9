"""Watch a running server from outside: its database connections and its memory."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from sqlalchemy import text

# The server's connections: every ``myapp[<pid>]`` backend of this run's
# database except the test process's own (the ``app`` fixture's pool).
# A request is briefly "idle in transaction" between two statements of its
# transaction; one that stays so for seconds has been left open.
APP_CONNECTIONS = text(
    "SELECT count(*) AS total,"
    "       count(*) FILTER (WHERE state = 'idle in transaction') AS idle_in_transaction,"
    "       count(*) FILTER (WHERE state = 'idle in transaction'"
    "                        AND state_change < now() - interval '5 seconds') AS stuck"
    " FROM pg_stat_activity"
    " WHERE datname = current_database() AND application_name LIKE 'myapp[%'"
    " AND application_name <> :own"
)
OWN_APPLICATION_NAME = f"myapp[{os.getpid()}]"


def app_connections(engine) -> tuple[int, int]:
    """(connections, of which idle in transaction) the server holds right now."""
    with engine.connect() as conn:
        total, idle, _ = conn.execute(APP_CONNECTIONS, {"own": OWN_APPLICATION_NAME}).one()
    return total, idle


class ConnectionSampler(threading.Thread):
    """Samples the server's connections in pg_stat_activity until stopped."""

    def __init__(self, engine, interval: float = 0.005):
        super().__init__(daemon=True)
        self.engine, self.interval = engine, interval
        self.peak = 0
        self.peak_stuck = 0  # idle in transaction for more than 5 s
        self.samples = 0
        self.stopped = threading.Event()

    def run(self):
        with self.engine.connect() as conn:
            while not self.stopped.is_set():
                total, _, stuck = conn.execute(
                    APP_CONNECTIONS, {"own": OWN_APPLICATION_NAME}
                ).one()
                conn.rollback()
                self.peak = max(self.peak, total)
                self.peak_stuck = max(self.peak_stuck, stuck)
                self.samples += 1
                self.stopped.wait(self.interval)

    def stop(self) -> ConnectionSampler:
        self.stopped.set()
        self.join()
        return self


def resident_kib(pid: int) -> int | None:
    """VmRSS of ``pid`` in KiB, or None if the process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


class MemorySampler(threading.Thread):
    """Samples the workers' resident memory, tagged with the load's progress.

    ``progress()`` returns how far the load has got (0..1), so samples can be
    split into the first and the second half of the run.
    """

    def __init__(self, worker_pids, progress, interval: float = 0.1):
        super().__init__(daemon=True)
        self.worker_pids, self.progress, self.interval = worker_pids, progress, interval
        self.samples: list[tuple[float, int]] = []  # (progress, total KiB of all workers)
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.is_set():
            sizes = [resident_kib(pid) for pid in self.worker_pids]
            if all(size is not None for size in sizes):
                self.samples.append((self.progress(), sum(sizes)))
            self.stopped.wait(self.interval)

    def stop(self) -> MemorySampler:
        self.stopped.set()
        self.join()
        return self

    def halves(self) -> tuple[int, int]:
        """Peak total RSS (KiB) in the first and in the second half of the load."""
        first = [kib for progress, kib in self.samples if progress < 0.5]
        second = [kib for progress, kib in self.samples if progress >= 0.5]
        return max(first, default=0), max(second, default=0)


APP_BACKENDS = text(
    "SELECT application_name, backend_start, state_change FROM pg_stat_activity"
    " WHERE datname = current_database() AND application_name LIKE 'myapp[%'"
    " AND application_name <> :own"
)


def app_backends(engine) -> list:
    """The server's connections: (application_name, backend_start, state_change)."""
    with engine.connect() as conn:
        return conn.execute(APP_BACKENDS, {"own": OWN_APPLICATION_NAME}).all()


def wait_for_a_lock_wait(engine, timeout: float = 10.0) -> None:
    """Return once some backend of this database waits for a lock."""
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while not conn.scalar(text(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )):
            conn.rollback()  # a new snapshot of pg_stat_activity next time
            assert time.monotonic() < deadline, "nothing started waiting for a lock"
