"""The private PostgreSQL primary and its streaming replica (initdb, pg_basebackup -R)."""

from __future__ import annotations

from pathlib import Path

import psycopg2

from cluster import packages
from cluster.processes import ClusterError, alive, give_to, listening, read_pid, run_as, wait_for
from cluster.render import render_file
from cluster.settings import DEPLOY, HOST, Settings

INCLUDE_LINE = "include_if_exists = 'myapp.conf'"
# PgBouncer's server pools for the primary and the replica, plus init-db,
# psql sessions and replication (docs/deployment.md, "Pool arithmetic").
MAX_CONNECTIONS = 100


def _bin(name: str) -> str:
    bindir = packages.postgres_bindir()
    if bindir is None:
        raise ClusterError("no PostgreSQL server binaries (initdb) found; install Debian's postgresql")
    return str(bindir / name)


def connect(port: int, dbname: str = "postgres"):
    return psycopg2.connect(host=HOST, port=port, user="postgres", dbname=dbname, connect_timeout=3)


class PostgresServer:
    """One PostgreSQL data directory under the cluster directory, run as the service user."""

    def __init__(self, settings: Settings, role: str, port: int):
        self.settings = settings
        self.role = role  # "primary" or "replica"
        self.name = role  # names its log files; a test's second replica has its own
        self.port = port
        self.data = settings.root / role

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data / "postmaster.pid"

    @property
    def log(self) -> Path:
        """The server's start-up output (pg_ctl -l); its own logs are in <data>/log/."""
        return self.settings.log_dir / f"{self.name}.log"

    @property
    def setup_log(self) -> Path:
        """What initdb, pg_basebackup and pg_ctl said."""
        return self.settings.log_dir / f"{self.name}-setup.log"

    def initialised(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def running(self) -> bool:
        return alive(read_pid(self.pid_file))

    def is_up(self) -> bool:
        return self.running() and listening(self.port)

    def detail(self) -> str:
        if self.role != "replica" or not self.is_up():
            return ""
        try:
            with connect(self.port) as conn, conn.cursor() as cur:
                cur.execute("SELECT status FROM pg_stat_wal_receiver")
                row = cur.fetchone()
            conn.close()
        except psycopg2.Error:
            return "(not answering)"
        return f"({row[0]} from {HOST}:{self.settings.primary_port})" if row else "(not streaming)"

    def create(self) -> None:
        user = self.settings.service_user
        give_to(user, self.data)
        if self.role == "primary":
            run_as(user, [_bin("initdb"), "-D", str(self.data), "-U", "postgres",
                          "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions"],
                   log=self.setup_log)
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.write(f"\n# myapp (deploy/postgresql/myapp.conf)\n{INCLUDE_LINE}\n")
        else:
            # A copy of the running primary; -R writes primary_conninfo and
            # standby.signal, so it starts as a streaming hot standby.
            run_as(user, [_bin("pg_basebackup"), "-D", str(self.data), "-R", "-X", "stream",
                          "-c", "fast", "-h", HOST, "-p", str(self.settings.primary_port),
                          "-U", "postgres"], log=self.setup_log)

    def start(self) -> None:
        if self.running():
            return
        if not self.initialised():
            self.create()
        # Rendered at every start: the ports come from the environment.
        render_file(DEPLOY / "postgresql" / "myapp.conf", self.data / "myapp.conf", {
            "PG_LISTEN": HOST,
            "PG_PORT": self.port,
            "PG_SOCKET_DIRECTORIES": "",  # TCP only
            "PG_MAX_CONNECTIONS": MAX_CONNECTIONS,
        })
        give_to(self.settings.service_user, self.data)
        run_as(self.settings.service_user,
               [_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start"],
               log=self.setup_log)
        wait_for(lambda: listening(self.port), 30, f"the {self.role} on {self.address}")

    def stop(self) -> bool:
        if not self.running():
            return False
        # fast: roll back open transactions and stop now; the data is safe.
        run_as(self.settings.service_user,
               [_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop"],
               log=self.setup_log)
        return True


def wait_for_streaming(replica: PostgresServer, timeout: float = 30) -> None:
    def streaming() -> bool:
        try:
            conn = connect(replica.port)
        except psycopg2.OperationalError:
            return False
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT status FROM pg_stat_wal_receiver")
                row = cur.fetchone()
        finally:
            conn.close()
        return bool(row) and row[0] == "streaming"

    try:
        wait_for(streaming, timeout, f"the replica on {replica.address} to stream")
    except ClusterError as err:
        raise ClusterError(f"{err}; see {replica.log} and {replica.data / 'log'}") from None
