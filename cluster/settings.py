"""Where the local cluster lives and which ports it uses.

Every value has the contract's default (``make cluster``) and can be moved
through the environment, which is how the tests start whole clusters on
free ports in temporary directories beside a running one.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEPLOY = PROJECT_ROOT / "deploy"
TEMPLATES = Path(__file__).resolve().parent / "templates"
HOST = "127.0.0.1"


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, got {raw!r}") from None


def _service_user(env: Mapping[str, str]) -> str:
    """The unprivileged user the cluster's servers (PostgreSQL, PgBouncer, nginx,
    Prometheus and the PgBouncer exporter) run as.

    PostgreSQL refuses to run as root (and PgBouncer too): when started as
    root, they run as ``CLUSTER_USER`` (default ``postgres``, made by the
    Debian package); otherwise as the current user.
    """
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    return env.get("CLUSTER_USER") or "postgres"


@dataclass(frozen=True)
class Settings:
    root: Path
    instances: int
    primary_port: int
    replica_port: int
    pgbouncer_port: int
    first_app_port: int
    http_port: int
    https_port: int
    prometheus_port: int
    pgbouncer_exporter_port: int
    scrape_interval: str
    service_user: str

    @classmethod
    def from_environment(cls, env: Mapping[str, str] = os.environ) -> Settings:
        root = Path(env.get("CLUSTER_DIR") or PROJECT_ROOT / ".cluster")
        instances = _int(env, "CLUSTER_INSTANCES", 2)
        if instances < 1:
            raise SystemExit(f"CLUSTER_INSTANCES must be at least 1, got {instances}")
        return cls(
            root=root.resolve(),
            instances=instances,
            primary_port=_int(env, "CLUSTER_PRIMARY_PORT", 5433),
            replica_port=_int(env, "CLUSTER_REPLICA_PORT", 5434),
            pgbouncer_port=_int(env, "CLUSTER_PGBOUNCER_PORT", 6432),
            first_app_port=_int(env, "CLUSTER_APP_PORT", 8001),
            http_port=_int(env, "CLUSTER_HTTP_PORT", 8080),
            https_port=_int(env, "CLUSTER_HTTPS_PORT", 8443),
            prometheus_port=_int(env, "CLUSTER_PROMETHEUS_PORT", 9090),
            pgbouncer_exporter_port=_int(env, "CLUSTER_PGBOUNCER_EXPORTER_PORT", 9127),
            # Prometheus' own default; the tests scrape every second.
            scrape_interval=env.get("CLUSTER_SCRAPE_INTERVAL") or "15s",
            service_user=_service_user(env),
        )

    # --- paths under the cluster directory ---------------------------------

    @property
    def run_dir(self) -> Path:
        """Pid files."""
        return self.root / "run"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def conf_dir(self) -> Path:
        """Configuration rendered from deploy/ for this cluster's ports."""
        return self.root / "conf"

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    def app_port(self, index: int) -> int:
        """Instance ``index`` (1-based) listens here."""
        return self.first_app_port + index - 1

    # --- how the app reaches its databases ---------------------------------

    def database_url(self, port: int, database: str = "myapp") -> str:
        return f"postgresql+psycopg2://postgres@{HOST}:{port}/{database}"

    # One application_name for every worker: PgBouncer would otherwise send
    # a SET application_name whenever a server connection passes from one
    # worker's client to another's (docs/deployment.md).
    @property
    def app_database_url(self) -> str:
        """The instances' DATABASE_URL: through PgBouncer."""
        return self.database_url(self.pgbouncer_port) + "?application_name=myapp"

    @property
    def app_replica_url(self) -> str:
        """The instances' DATABASE_REPLICA_URL: the replica, through PgBouncer."""
        return self.database_url(self.pgbouncer_port, "myapp_replica") + "?application_name=myapp"

    @property
    def primary_url(self) -> str:
        """Straight to the primary: init-db and migrations (never through PgBouncer)."""
        return self.database_url(self.primary_port)

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def https_url(self) -> str:
        return f"https://{HOST}:{self.https_port}"
