"""A whole ``make cluster`` on free ports in a temporary directory, for the
tests and the scale-out benchmark.

It runs the same ``python -m cluster`` commands as the Makefile, moved by
the environment variables the cluster reads (CLUSTER_DIR, CLUSTER_*_PORT),
so a test exercises exactly what an operator starts. On exit it runs
``cluster down`` and deletes the directory; :meth:`process_tree` and
:meth:`listening` say what would still be running or listening.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from cluster.settings import Settings
from harness import PROJECT_ROOT, Started
from harness.gunicorn import free_port

PORT_VARIABLES = {
    "primary": "CLUSTER_PRIMARY_PORT",
    "replica": "CLUSTER_REPLICA_PORT",
    "pgbouncer": "CLUSTER_PGBOUNCER_PORT",
    "http": "CLUSTER_HTTP_PORT",
    "https": "CLUSTER_HTTPS_PORT",
    "prometheus": "CLUSTER_PROMETHEUS_PORT",
    "pgbouncer-exporter": "CLUSTER_PGBOUNCER_EXPORTER_PORT",
}


def _consecutive_free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports (the instances' ports)."""
    while True:
        first = free_port()
        ports = [first + n for n in range(1, count)]
        if all(_is_free(port) for port in ports):
            return first


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class LocalCluster(Started):
    def __init__(self, instances: int = 2, env: dict[str, str] | None = None,
                 timeout: float = 180):
        self.instances = instances
        self.timeout = timeout
        # Not pytest's tmp_path: the private servers run as an unprivileged
        # user, who must be able to enter the directory.
        self.root = Path(tempfile.mkdtemp(prefix="myapp-cluster-"))
        self.root.chmod(0o711)
        self.ports = {name: free_port() for name in PORT_VARIABLES}
        self.first_app_port = _consecutive_free_ports(instances)
        self.env = {
            **os.environ,
            "CLUSTER_DIR": str(self.root / "cluster"),
            "CLUSTER_INSTANCES": str(instances),
            "CLUSTER_APP_PORT": str(self.first_app_port),
            "WEB_CONCURRENCY": "2",
            "GUNICORN_THREADS": "4",
            "SECRET_KEY": "cluster-test-key",
            # Two scrapes a few seconds apart make a rate() the tests can query.
            "CLUSTER_SCRAPE_INTERVAL": "1s",
            **{PORT_VARIABLES[name]: str(port) for name, port in self.ports.items()},
            **(env or {}),
        }
        for name in ("DATABASE_URL", "DATABASE_REPLICA_URL", "BIND", "PORT"):
            self.env.pop(name, None)
        # Where things are, as the cluster itself works it out.
        self.settings = Settings.from_environment(self.env)

    # --- commands -------------------------------------------------------------

    def run(self, command: str, **env: str) -> subprocess.CompletedProcess:
        """``python -m cluster COMMAND`` for this cluster (what ``make cluster-*`` runs)."""
        return subprocess.run(
            [sys.executable, "-m", "cluster", command],
            cwd=PROJECT_ROOT,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=self.timeout,
            check=False,
        )

    def up(self) -> subprocess.CompletedProcess:
        result = self.run("up")
        if result.returncode != 0:
            raise RuntimeError(f"cluster up failed:\n{result.stdout}{result.stderr}")
        return result

    def start(self) -> None:
        self.up()

    def close(self) -> None:
        try:
            self.run("down")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    # --- where things are -------------------------------------------------------

    @property
    def dir(self) -> Path:
        return self.settings.root

    @property
    def url(self) -> str:
        return self.settings.http_url

    @property
    def https_url(self) -> str:
        return self.settings.https_url

    def app_port(self, index: int) -> int:
        return self.settings.app_port(index)

    def app_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.app_port(index)}"

    def database_url(self, where: str = "primary", database: str = "myapp") -> str:
        return self.settings.database_url(self.ports[where], database)

    def all_ports(self) -> list[int]:
        return [*self.ports.values(),
                *(self.app_port(index) for index in range(1, self.instances + 1))]

    def pid_files(self) -> list[Path]:
        run = self.dir / "run"
        return [*(run / f"app-{index}.pid" for index in range(1, self.instances + 1)),
                run / "pgbouncer.pid", run / "nginx.pid",
                run / "pgbouncer-exporter.pid", run / "prometheus.pid",
                self.dir / "primary" / "postmaster.pid", self.dir / "replica" / "postmaster.pid"]

    def pids(self) -> dict[str, int]:
        found = {}
        for pid_file in self.pid_files():
            if pid_file.exists():
                found[str(pid_file.relative_to(self.dir))] = int(
                    pid_file.read_text().split("\n", 1)[0])
        return found

    def process_tree(self) -> set[int]:
        """The pids of every server the cluster runs and of all their children."""
        out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True,
                             check=True).stdout
        children: dict[int, list[int]] = {}
        for line in out.splitlines():
            pid, ppid = map(int, line.split())
            children.setdefault(ppid, []).append(pid)
        found, todo = set(), list(self.pids().values())
        while todo:
            pid = todo.pop()
            if pid not in found:
                found.add(pid)
                todo.extend(children.get(pid, ()))
        return found

    def listening(self) -> list[int]:
        """This cluster's ports that something still listens on."""
        open_ports = []
        for port in self.all_ports():
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    open_ports.append(port)
        return open_ports
