"""PgBouncer, the app instances and nginx of the local cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from cluster import packages
from cluster.processes import (
    ClusterError,
    alive,
    chown_to,
    give_to,
    listening,
    read_pid,
    reachable_by,
    run_as,
    stop_pid,
    wait_for,
)
from cluster.render import render_file
from cluster.settings import DEPLOY, HOST, PROJECT_ROOT, TEMPLATES, Settings
from myapp.config import (
    DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS,
    DEFAULT_STATEMENT_TIMEOUT_MS,
    MAX_UPLOAD_BYTES,
    MULTIPART_OVERHEAD_BYTES,
)

VENV_BIN = Path(sys.executable).parent


def _ms_from_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw.isdigit() else default


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class PgBouncer:
    name = "pgbouncer"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.port = settings.pgbouncer_port
        self.pid_file = settings.run_dir / "pgbouncer.pid"
        self.log = settings.log_dir / "pgbouncer.log"
        self.ini = settings.conf_dir / "pgbouncer.ini"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def is_up(self) -> bool:
        return alive(read_pid(self.pid_file)) and listening(self.port)

    def detail(self) -> str:
        return "(pool_mode=transaction)"

    def render(self) -> Path:
        s = self.settings
        statement_ms = _ms_from_env("DB_STATEMENT_TIMEOUT_MS", DEFAULT_STATEMENT_TIMEOUT_MS)
        idle_ms = _ms_from_env("DB_IDLE_IN_TRANSACTION_TIMEOUT_MS",
                               DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS)
        pool_size = int(os.environ.get("CLUSTER_PGBOUNCER_POOL_SIZE") or 20)
        auth_file = render_file(DEPLOY / "pgbouncer" / "userlist.txt",
                                s.conf_dir / "pgbouncer-userlist.txt", {})
        return render_file(DEPLOY / "pgbouncer" / "pgbouncer.ini", self.ini, {
            "PRIMARY_HOST": HOST,
            "PRIMARY_PORT": s.primary_port,
            "REPLICA_HOST": HOST,
            "REPLICA_PORT": s.replica_port,
            "PGBOUNCER_LISTEN": HOST,
            "PGBOUNCER_PORT": self.port,
            "PGBOUNCER_SOCKET_DIR": "",  # TCP only
            "PGBOUNCER_PIDFILE": self.pid_file,
            "PGBOUNCER_LOGFILE": self.log,
            "PGBOUNCER_AUTH_FILE": auth_file,
            "PGBOUNCER_MAX_CLIENT_CONN": 1000,
            "PGBOUNCER_POOL_SIZE": pool_size,
            "PGBOUNCER_MAX_DB_CONNECTIONS": pool_size + 10,
            # A few seconds past PostgreSQL's own limits: the backstop.
            "PGBOUNCER_QUERY_TIMEOUT": statement_ms / 1000 + 5,
            "PGBOUNCER_IDLE_TRANSACTION_TIMEOUT": idle_ms / 1000 + 5,
        })

    def start(self) -> None:
        if self.is_up():
            return
        stop_pid(read_pid(self.pid_file))  # a half-started one
        self.render()
        binary = packages.find("pgbouncer") or "pgbouncer"
        # -d: daemon; it writes the pid file itself.
        run_as(self.settings.service_user, [binary, "-d", str(self.ini)],
               log=self.settings.log_dir / "pgbouncer-start.log", cwd=self.settings.root)
        try:
            wait_for(self.is_up, 20, f"PgBouncer on {self.address}")
        except ClusterError as err:
            raise ClusterError(f"{err}:\n{_tail(self.log)}") from None

    def stop(self) -> bool:
        # SIGINT: "safe shutdown", after the transactions in progress end.
        return stop_pid(read_pid(self.pid_file), signal.SIGINT, timeout=15)


class AppInstance:
    """``gunicorn -c gunicorn.conf.py wsgi:app`` on its own port, through PgBouncer."""

    def __init__(self, settings: Settings, index: int):
        self.settings = settings
        self.index = index
        self.name = f"app-{index}"
        self.port = settings.app_port(index)
        self.pid_file = settings.run_dir / f"app-{index}.pid"
        self.log = settings.log_dir / f"app-{index}.log"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def pid(self) -> int | None:
        return read_pid(self.pid_file)

    def is_up(self) -> bool:
        return alive(self.pid()) and listening(self.port)

    def detail(self) -> str:
        return ""

    def environment(self) -> dict[str, str]:
        env = {
            **os.environ,
            "DATABASE_URL": self.settings.app_database_url,
            "DATABASE_REPLICA_URL": self.settings.app_replica_url,
            "PORT": str(self.port),
            # X-Forwarded-* come from nginx, exactly one hop in front.
            "BEHIND_PROXY": "1",
            "TRUSTED_HOSTS": os.environ.get("TRUSTED_HOSTS") or "127.0.0.1,localhost",
        }
        env.pop("BIND", None)
        return env

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.address}/healthz", timeout=3) as answer:
                return answer.status == 200
        except OSError:
            return False

    def start(self) -> None:
        if self.is_up():
            return
        self.pid_file.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            process = subprocess.Popen(
                [str(VENV_BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--pid", str(self.pid_file),
                 "wsgi:app"],
                cwd=PROJECT_ROOT,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives `make cluster`, not tied to its terminal
            )

        def ready() -> bool:
            if process.poll() is not None:
                raise ClusterError(f"{self.name} exited at start:\n{_tail(self.log)}")
            return self.pid() == process.pid and self.healthy()

        wait_for(ready, 60, f"{self.name} on {self.address}/healthz")

    def stop(self) -> bool:
        # SIGTERM: stop accepting, finish the requests in flight.
        return stop_pid(self.pid(), signal.SIGTERM, timeout=45)


def _children(pid: int | None) -> list[int]:
    if pid is None:
        return []
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True, check=False).stdout
    return [int(child) for child in out.split()]


def stray_instances(settings: Settings) -> list[AppInstance]:
    """Instances beyond CLUSTER_INSTANCES that still have a pid file (it was lowered)."""
    found = []
    for pid_file in settings.run_dir.glob("app-*.pid"):
        index = pid_file.stem.removeprefix("app-")
        if index.isdigit() and int(index) > settings.instances:
            found.append(AppInstance(settings, int(index)))
    return found


class Nginx:
    name = "nginx"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.pid_file = settings.run_dir / "nginx.pid"
        self.conf_dir = settings.conf_dir / "nginx"
        self.main_conf = self.conf_dir / "nginx.conf"
        self.temp_dir = settings.root / "nginx"
        self.certificate = settings.tls_dir / "cert.pem"
        self.certificate_key = settings.tls_dir / "key.pem"

    @property
    def address(self) -> str:
        return f"{self.settings.http_url} {self.settings.https_url}"

    def is_up(self) -> bool:
        s = self.settings
        return alive(read_pid(self.pid_file)) and listening(s.http_port) and listening(s.https_port)

    def detail(self) -> str:
        return ""

    def render(self, drained: frozenset[int] = frozenset()) -> bool:
        """Write the configuration; True when it differs from what was there.

        Instances in ``drained`` are marked ``down``: nginx sends them nothing
        new (a rolling restart takes one out before stopping it).
        """
        s = self.settings
        servers = "\n".join(
            f"    server {HOST}:{s.app_port(i)} max_fails=1 fail_timeout=2s"
            f"{' down' if i in drained else ''};"
            for i in range(1, s.instances + 1))
        values = {
            "APP_UPSTREAM_SERVERS": servers,
            "NGINX_LISTEN": HOST,
            "HTTP_PORT": s.http_port,
            "HTTPS_PORT": s.https_port,
            "SERVER_NAMES": "127.0.0.1 localhost",
            "TLS_CERTIFICATE": self.certificate,
            "TLS_CERTIFICATE_KEY": self.certificate_key,
            "NGINX_SNIPPETS": self.conf_dir,
            "STATIC_ROOT": PROJECT_ROOT / "static",
            "CLIENT_MAX_BODY_SIZE": MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD_BYTES,
            "NGINX_PIDFILE": self.pid_file,
            "NGINX_TEMP": self.temp_dir,
            "LOG_DIR": s.log_dir,
        }
        sources = [DEPLOY / "nginx" / name
                   for name in ("myapp.conf", "myapp-locations.conf", "myapp-security-headers.conf")]
        sources.append(TEMPLATES / "nginx.conf")
        changed = False
        for source in sources:
            target = self.conf_dir / source.name
            before = target.read_text() if target.exists() else None
            changed |= render_file(source, target, values).read_text() != before
        return changed

    def make_certificate(self) -> None:
        """A self-signed certificate for 127.0.0.1 and localhost, made once."""
        if self.certificate.exists() and self.certificate_key.exists():
            return
        self.settings.tls_dir.mkdir(parents=True, exist_ok=True)
        openssl = packages.find("openssl") or "openssl"
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "825",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", str(self.certificate_key), "-out", str(self.certificate)],
            check=True, capture_output=True,
        )
        # nginx runs as the service user and reads the key at start.
        self.certificate_key.chmod(0o600)
        give_to(self.settings.service_user, self.settings.tls_dir, mode=0o700)
        chown_to(self.settings.service_user, self.certificate, self.certificate_key)

    def command(self, *extra: str) -> list[str]:
        binary = packages.find("nginx") or "nginx"
        # -e: the error log from the very start (not /var/log/nginx, which
        # the unprivileged user cannot write); -p: relative paths under ours.
        return [binary, "-c", str(self.main_conf), "-p", str(self.temp_dir),
                "-e", str(self.settings.log_dir / "nginx-error.log"), *extra]

    def start(self) -> None:
        self.make_certificate()
        changed = self.render()
        if self.is_up():
            if changed:  # CLUSTER_INSTANCES changed, or a drain was left over
                self._reload()
            return
        stop_pid(read_pid(self.pid_file), signal.SIGQUIT, timeout=10)
        give_to(self.settings.service_user, self.temp_dir)
        # nginx's workers (the service user) read static/ from the checkout.
        reachable_by(self.settings.service_user, PROJECT_ROOT / "static")
        run_as(self.settings.service_user, self.command("-t", "-q"))
        run_as(self.settings.service_user, self.command(),
               log=self.settings.log_dir / "nginx-start.log")
        wait_for(self.is_up, 20, f"nginx on {self.address}")

    def drain(self, *instances: int) -> None:
        """Route nothing new to ``instances`` (none: to every instance again).

        Returns once nginx's old workers — the only ones that may still
        send a request to a drained instance — have finished and exited.
        """
        if self.is_up() and self.render(frozenset(instances)):
            self._reload()

    def _reload(self) -> None:
        """SIGHUP: new workers with the new configuration, the old ones finish
        their requests and exit; wait until they have."""
        run_as(self.settings.service_user, self.command("-t", "-q"))
        master = read_pid(self.pid_file)
        old_workers = _children(master)
        os.kill(master, signal.SIGHUP)
        wait_for(lambda: not any(alive(pid) for pid in old_workers), 60,
                 "nginx's old workers to finish after a reload")

    def stop(self) -> bool:
        # SIGQUIT: graceful; workers finish the requests they hold.
        return stop_pid(read_pid(self.pid_file), signal.SIGQUIT, timeout=30)
