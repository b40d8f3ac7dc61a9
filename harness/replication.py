"""A private PostgreSQL primary with streaming replicas, for tests and the bench.

The same servers ``make cluster`` runs (cluster/postgres.py: ``initdb``, then
``pg_basebackup -R`` for each replica, run as the unprivileged service user
when we are root), on free ports in a temporary directory, without the rest
of the cluster. :meth:`close` stops every server and deletes the directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg2

from cluster.postgres import PostgresServer, connect, wait_for_streaming
from cluster.processes import give_to, reachable_by
from cluster.settings import Settings
from harness import PROJECT_ROOT, Started
from harness.gunicorn import free_port


class _Standby(PostgresServer):
    """A replica named ``name``: its own data directory and logs, so several
    replicas of one primary can live side by side."""

    def __init__(self, settings: Settings, name: str, port: int):
        super().__init__(settings, "replica", port)
        self.name = name
        self.data = settings.root / name


class Replication(Started):
    """``Replication(replicas=1)``: a primary and ``replicas`` hot standbys of it,
    with the app's database ``myapp`` initialised (``init-db``) on the primary."""

    def __init__(self, replicas: int = 1):
        self.root = Path(tempfile.mkdtemp(prefix="myapp-replication-"))
        self.root.chmod(0o711)
        settings = Settings.from_environment({
            "CLUSTER_DIR": str(self.root),
            "CLUSTER_PRIMARY_PORT": str(free_port()),
        })
        self.settings = settings
        self.primary = PostgresServer(settings, "primary", settings.primary_port)
        self.replicas = [_Standby(settings, f"replica{n}", free_port())
                         for n in range(1, replicas + 1)]

    def start(self) -> None:
        user = self.settings.service_user
        reachable_by(user, self.root)
        give_to(user, self.settings.log_dir, mode=0o755)
        self.primary.start()
        self._init_db()
        for replica in self.replicas:
            replica.start()
            wait_for_streaming(replica)

    def _init_db(self) -> None:
        result = subprocess.run(
            [str(PROJECT_ROOT / ".venv" / "bin" / "flask"), "--app", "app", "init-db"],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")},
                 "DATABASE_URL": self.url(self.primary), "SECRET_KEY": "replication-harness"},
        )
        if result.returncode != 0:
            raise RuntimeError(f"init-db on the primary failed: {result.stdout}{result.stderr}")

    def close(self) -> None:
        try:
            for server in [*self.replicas, self.primary]:
                server.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    # --- addresses --------------------------------------------------------------

    def url(self, server: PostgresServer, database: str = "myapp") -> str:
        return self.settings.database_url(server.port, database)

    @property
    def primary_url(self) -> str:
        return self.url(self.primary)

    @property
    def replica_urls(self) -> list[str]:
        return [self.url(replica) for replica in self.replicas]

    def ports(self) -> list[int]:
        return [self.primary.port, *(replica.port for replica in self.replicas)]

    # --- questions and actions ----------------------------------------------------

    def query(self, server: PostgresServer, sql: str, database: str = "myapp"):
        conn = connect(server.port, database)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def pause_replay(self, replica: PostgresServer | None = None) -> None:
        replica = replica or self.replicas[0]
        self.query(replica, "SELECT pg_wal_replay_pause()")
        self._wait(lambda: self.query(replica, "SELECT pg_get_wal_replay_pause_state()")[0][0]
                   == "paused", "replay to pause")

    def resume_replay(self, replica: PostgresServer | None = None) -> None:
        self.query(replica or self.replicas[0], "SELECT pg_wal_replay_resume()")

    def wait_until_replayed(self, timeout: float = 30) -> None:
        """Every replica has replayed everything the primary has written so far."""
        target = self.query(self.primary, "SELECT pg_current_wal_lsn()")[0][0]
        for replica in self.replicas:
            self._wait(lambda r=replica: self.query(
                r, f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn")[0][0],
                f"{replica.name} to replay {target}", timeout)

    def transactions(self, server: PostgresServer, database: str = "myapp") -> int:
        """Transactions ended so far in ``database`` on ``server`` (pg_stat_database)."""
        return self.query(server, "SELECT xact_commit + xact_rollback FROM pg_stat_database"
                                  f" WHERE datname = '{database}'", "postgres")[0][0]

    def settled_transactions(self, server: PostgresServer, database: str = "myapp") -> int:
        """:meth:`transactions`, once every client connection to ``database``
        has ended: a backend reports its counts when it exits (a live one
        only every second or so), so the app's pooled connections are
        terminated first. The app's pools reconnect on their next checkout
        (pre-ping)."""
        self.query(server, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                           f" WHERE datname = '{database}' AND backend_type = 'client backend'",
                   "postgres")
        self._wait(lambda: not self.query(
            server, "SELECT 1 FROM pg_stat_activity WHERE datname = "
                    f"'{database}' AND backend_type = 'client backend'", "postgres"),
            f"the connections to {server.name} to end")
        return self.transactions(server, database)

    def is_up(self, server: PostgresServer) -> bool:
        try:
            connect(server.port).close()
        except psycopg2.OperationalError:
            return False
        return True

    @staticmethod
    def _wait(condition, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.05)  # polling a condition, not standing in for one
