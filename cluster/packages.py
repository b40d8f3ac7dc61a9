"""Install the Debian packages the cluster runs on, when they are missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

# executable -> Debian package that ships it
NEEDED = {
    "nginx": "nginx",
    "pgbouncer": "pgbouncer",
    "openssl": "openssl",
    "prometheus": "prometheus",
    "prometheus-pgbouncer-exporter": "prometheus-pgbouncer-exporter",
}
POSTGRES_PACKAGE = "postgresql"


def postgres_bindir() -> Path | None:
    """The newest installed PostgreSQL server's bin directory (initdb, pg_ctl, ...)."""
    override = os.environ.get("PG_BINDIR")
    if override:
        return Path(override)
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    return candidates[-1].parent if candidates else None


def find(executable: str) -> str | None:
    # nginx and pgbouncer live in /usr/sbin, which a non-login PATH may lack.
    return shutil.which(executable) or shutil.which(executable, path="/usr/sbin:/sbin")


def install_missing(executables: dict[str, str] = NEEDED, with_postgres: bool = True) -> None:
    """Install the packages of the ``executables`` not found, and PostgreSQL's server."""
    needed = {package for executable, package in executables.items() if not find(executable)}
    if with_postgres and postgres_bindir() is None:
        needed.add(POSTGRES_PACKAGE)
    if not needed:
        return
    install(sorted(needed))


def install(packages: list[str]) -> None:
    print(f"cluster: installing {' '.join(packages)} (Debian packages) ...", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    # Another apt run (a parallel build) holds the lock for a while: wait for it.
    apt = [*sudo, "apt-get", "-qq", "-o", "DPkg::Lock::Timeout=300"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*apt, "update"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run([*apt, "install", "-y", "--no-install-recommends", *packages], check=True,
                   env=env, stdout=subprocess.DEVNULL)
