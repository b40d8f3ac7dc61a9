"""Prometheus and the PgBouncer exporter of the local cluster (Debian's packages).

Prometheus scrapes every app instance's /metrics on its own port (never
through nginx, whose public ports refuse /metrics) and PgBouncer through
``prometheus-pgbouncer-exporter``, with the alert rules of deploy/prometheus/.
Neither daemonizes nor writes a pid file: they run in the foreground in a
session of their own, as the service user, and the cluster writes the pid.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

from cluster import packages
from cluster.processes import (
    ClusterError,
    alive,
    as_user,
    give_to,
    listening,
    reachable_by,
    read_pid,
    stop_pid,
    wait_for,
)
from cluster.render import render_file
from cluster.services import _tail
from cluster.settings import DEPLOY, HOST, Settings

RULES = DEPLOY / "prometheus" / "alerts.rules.yml"
ADAPTER = Path(__file__).resolve().parent / "pgbouncer_exporter.py"
# The exporter (configargparse) lets these environment variables override its
# config file; a PORT meant for something else must not move it.
EXPORTER_VARIABLES = ("CONFIG", "PORT", "HOST", "PGBOUNCER_PORT", "PGBOUNCER_USER",
                      "PGBOUNCER_HOST", "PGBOUNCER_DATABASES", "LICENCE_LOCATION")


class _ForegroundServer:
    """A server that stays in the foreground: started detached, pid file ours."""

    name: str
    port: int
    pid_file: Path
    log: Path

    def __init__(self, settings: Settings):
        self.settings = settings

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def detail(self) -> str:
        return ""

    def is_up(self) -> bool:
        return alive(read_pid(self.pid_file)) and listening(self.port)

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        return listening(self.port)

    def start(self) -> None:
        if self.is_up():
            return
        stop_pid(read_pid(self.pid_file))  # a half-started one
        if listening(self.port):
            # Say so, rather than take another server's answers for ours.
            raise ClusterError(f"{self.address} is taken by another process (a system"
                               f" {self.name} service?); stop it or move the cluster's port")
        command = self.command()
        options = as_user(self.settings.service_user)
        env = {key: value for key, value in options.pop("env", os.environ).items()
               if key not in EXPORTER_VARIABLES}
        with self.log.open("ab") as log:
            process = subprocess.Popen(
                command, cwd=self.settings.root, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives `make cluster`, not tied to its terminal
                **options,
            )
        self.pid_file.write_text(f"{process.pid}\n")

        def started() -> bool:
            if process.poll() is not None:
                raise ClusterError(f"{self.name} exited at start:\n{_tail(self.log)}")
            return self.ready()

        try:
            wait_for(started, 30, f"{self.name} on {self.address}")
        except ClusterError:
            self.stop()
            raise

    def stop(self) -> bool:
        stopped = stop_pid(read_pid(self.pid_file), signal.SIGTERM, timeout=30)
        self.pid_file.unlink(missing_ok=True)
        return stopped


class PgBouncerExporter(_ForegroundServer):
    """Debian's ``prometheus-pgbouncer-exporter`` reading PgBouncer's admin console."""

    name = "pgbouncer-exporter"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.port = settings.pgbouncer_exporter_port
        self.pid_file = settings.run_dir / "pgbouncer-exporter.pid"
        self.log = settings.log_dir / "pgbouncer-exporter.log"
        self.config = settings.conf_dir / "prometheus" / "pgbouncer-exporter.conf"

    def command(self) -> list[str]:
        render_file(DEPLOY / "prometheus" / "pgbouncer-exporter.conf", self.config, {
            "EXPORTER_LISTEN": HOST,
            "EXPORTER_PORT": self.port,
            "PGBOUNCER_HOST": HOST,
            "PGBOUNCER_PORT": self.settings.pgbouncer_port,
            "PGBOUNCER_STATS_USER": "postgres",
        })
        # Debian's exporter through cluster/pgbouncer_exporter.py (it needs
        # PgBouncer 1.8's column names), with the interpreter its script names.
        script = packages.find("prometheus-pgbouncer-exporter")
        if script is None:
            raise ClusterError("prometheus-pgbouncer-exporter is not installed")
        interpreter = Path(script).read_text().split("\n", 1)[0].removeprefix("#!").strip()
        reachable_by(self.settings.service_user, ADAPTER)
        return [interpreter, str(ADAPTER), "--config", str(self.config)]


class Prometheus(_ForegroundServer):
    """Debian's ``prometheus``, data under the cluster directory."""

    name = "prometheus"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.port = settings.prometheus_port
        self.pid_file = settings.run_dir / "prometheus.pid"
        self.log = settings.log_dir / "prometheus.log"
        self.conf_dir = settings.conf_dir / "prometheus"
        self.config = self.conf_dir / "prometheus.yml"
        self.data_dir = settings.root / "prometheus"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def render(self) -> Path:
        """prometheus.yml for this cluster's ports, alerts.rules.yml beside it."""
        s = self.settings
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(RULES, self.conf_dir / RULES.name)
        instances = ", ".join(f'"{HOST}:{s.app_port(index)}"'
                              for index in range(1, s.instances + 1))
        return render_file(DEPLOY / "prometheus" / "prometheus.yml", self.config, {
            "SCRAPE_INTERVAL": s.scrape_interval,
            "MYAPP_TARGETS": instances,
            "PGBOUNCER_EXPORTER_TARGET": f"{HOST}:{s.pgbouncer_exporter_port}",
        })

    def command(self) -> list[str]:
        self.render()
        give_to(self.settings.service_user, self.data_dir)
        binary = packages.find("prometheus") or "prometheus"
        return [binary, f"--config.file={self.config}",
                f"--storage.tsdb.path={self.data_dir}",
                f"--web.listen-address={self.address}"]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=3) as answer:
                return answer.status == 200
        except OSError:
            return False

    def start(self) -> None:
        if self.is_up():
            # CLUSTER_INSTANCES may have changed: SIGHUP reloads the configuration.
            before = self.config.read_text() if self.config.exists() else None
            if self.render().read_text() != before:
                os.kill(read_pid(self.pid_file), signal.SIGHUP)
            return
        super().start()
