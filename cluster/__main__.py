"""``python -m cluster up|status|down|clean|restart-apps`` (the Makefile's cluster targets)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import urllib.request

import psycopg2
from sqlalchemy.engine import make_url

from cluster import packages
from cluster.monitoring import PgBouncerExporter, Prometheus
from cluster.postgres import PostgresServer, wait_for_streaming
from cluster.processes import ClusterError, give_to, reachable_by, wait_for
from cluster.services import VENV_BIN, AppInstance, Nginx, PgBouncer, stray_instances
from cluster.settings import PROJECT_ROOT, Settings
from myapp.config import DEFAULT_DATABASE_URL


def components(settings: Settings) -> list:
    """Every server of the cluster, in start order (stopped in reverse).

    Each has ``name``, ``address``, ``start()``, ``stop()``, ``is_up()`` and
    ``detail()``. A new part of the shape is one more entry here. Prometheus
    comes last: it scrapes the instances and the exporter, and stops first.
    """
    return [
        PostgresServer(settings, "primary", settings.primary_port),
        PostgresServer(settings, "replica", settings.replica_port),
        PgBouncer(settings),
        PgBouncerExporter(settings),
        *(AppInstance(settings, index) for index in range(1, settings.instances + 1)),
        Nginx(settings),
        Prometheus(settings),
    ]


def init_db(settings: Settings) -> None:
    """``flask init-db`` straight against the primary, never through PgBouncer."""
    result = subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "app", "init-db"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DATABASE_URL": settings.primary_url},
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise ClusterError(f"init-db on the primary failed: {(result.stdout + result.stderr).strip()}")


def prepare_directories(settings: Settings) -> None:
    user = settings.service_user
    settings.root.mkdir(parents=True, exist_ok=True)
    settings.root.chmod(0o711)
    reachable_by(user, settings.root)
    give_to(user, settings.run_dir, settings.log_dir, mode=0o755)
    settings.conf_dir.mkdir(exist_ok=True)


def up(settings: Settings) -> int:
    packages.install_missing()
    prepare_directories(settings)
    for component in components(settings):
        component.start()
        if component.name == "primary":
            init_db(settings)
        elif component.name == "replica":
            wait_for_streaming(component)
    # CLUSTER_INSTANCES was lowered: nginx (just reloaded) no longer sends
    # the extra instances anything, so they can stop.
    for stray in stray_instances(settings):
        stray.stop()
        print(f"{stray.name:<18} {stray.address:<22} stopped (beyond CLUSTER_INSTANCES)")
    wait_for(lambda: _answers_200(f"{settings.http_url}/healthz"), 30,
             f"{settings.http_url}/healthz to answer 200")
    status(settings)
    print(f"myapp is served on {settings.http_url} and {settings.https_url} (self-signed)")
    return 0


def _answers_200(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            return answer.status == 200
    except OSError:
        return False


def status(settings: Settings) -> int:
    all_up = True
    for component in components(settings):
        up_now = component.is_up()
        all_up &= up_now
        state = f"up {component.detail()}" if up_now else "down"
        print(f"{component.name:<18} {component.address:<22} {state}".rstrip())
    return 0 if all_up else 1


def down(settings: Settings) -> int:
    if not settings.root.exists():
        print("cluster: nothing to stop")
        return 0
    for component in [*reversed(components(settings)), *stray_instances(settings)]:
        if component.stop():
            print(f"{component.name:<18} {component.address:<22} stopped")
    return 0


def clean(settings: Settings) -> int:
    down(settings)
    if settings.root.exists():
        shutil.rmtree(settings.root)
        print(f"cluster: deleted {settings.root}")
    return 0


def restart_apps(settings: Settings) -> int:
    """A rolling restart: one instance at a time, the others keep serving.

    Each instance is first drained (nginx reloaded with it marked ``down``,
    its old workers finished), so no request is on its way to it when it
    stops; stopping (SIGTERM) lets its own requests in flight finish. Merely
    stopping it would let nginx send it requests on kept-alive connections
    it is closing: a POST lost that way is never retried (502).
    """
    nginx = Nginx(settings)
    try:
        for index in range(1, settings.instances + 1):
            instance = AppInstance(settings, index)
            nginx.drain(index)
            instance.stop()
            instance.start()
            nginx.drain()
            print(f"{instance.name:<18} {instance.address:<22} restarted")
    finally:
        nginx.drain()  # never leave an instance out, whatever happened
    return 0


def serve_database(settings: Settings) -> int:
    """For ``make serve``: the database URL to serve on, printed on stdout.

    ``DATABASE_URL`` set: used as it is (init-db then reports it if it
    cannot be reached — never a silent fallback). Unset, and a server
    answers at the default (the local socket): the default. Unset, and
    nothing answers there: the cluster's private primary under .cluster/,
    installed and started if need be, said in one line on stderr.
    """
    if os.environ.get("DATABASE_URL"):
        print(os.environ["DATABASE_URL"])
        return 0
    if server_answers(DEFAULT_DATABASE_URL):
        print(DEFAULT_DATABASE_URL)
        return 0
    packages.install_missing({})  # only the PostgreSQL server
    prepare_directories(settings)
    primary = PostgresServer(settings, "primary", settings.primary_port)
    primary.start()
    print(f"No PostgreSQL answers at {DEFAULT_DATABASE_URL}: serving on a private one under"
          f" {settings.root} ({primary.address}; `make cluster-down` stops it).", file=sys.stderr)
    print(settings.primary_url)
    return 0


def server_answers(url: str) -> bool:
    """True when a PostgreSQL server answers at ``url`` — even to refuse us
    (a missing database, an unknown role): then the error is the operator's
    to see, not a reason to start another server."""
    try:
        psycopg2.connect(make_url(url).set(drivername="postgresql").render_as_string(
            hide_password=False), connect_timeout=3).close()
    except psycopg2.OperationalError as err:
        return "FATAL:" in str(err)
    return True


COMMANDS = {"up": up, "serve-database": serve_database, "status": status, "down": down, "clean": clean, "restart-apps": restart_apps}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster", description=__doc__)
    parser.add_argument("command", choices=COMMANDS)
    args = parser.parse_args(argv)
    settings = Settings.from_environment()
    try:
        return COMMANDS[args.command](settings)
    except ClusterError as err:
        print(f"cluster: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
