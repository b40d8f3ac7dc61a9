"""`make serve` (scripts/serve) on a machine where no PostgreSQL answers:
a private server under the cluster directory; and a DATABASE_URL that is
set but unreachable stays one clear error, never a fallback."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

from harness import PROJECT_ROOT
from harness.gunicorn import free_port
from tests.support.workload import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.server]


@pytest.fixture
def bare_machine():
    """An environment where nothing answers at the default database URL
    (libpq's PGHOST points at an empty socket directory), with the private
    server's directory and ports moved out of the way."""
    root = Path(tempfile.mkdtemp(prefix="myapp-serve-"))
    root.chmod(0o711)
    env = {**os.environ, "PGHOST": str(root / "no-server-here"), "CLUSTER_DIR": str(root / "c"),
           "CLUSTER_PRIMARY_PORT": str(free_port()), "PORT": str(free_port()),
           "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "2", "SECRET_KEY": "serve-test"}
    env.pop("DATABASE_URL", None)
    yield env
    subprocess.run([sys.executable, "-m", "cluster", "down"], cwd=PROJECT_ROOT, env=env,
                   capture_output=True, timeout=120, check=False)
    shutil.rmtree(root, ignore_errors=True)


def healthy(port: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as answer:
            return answer.status == 200
    except OSError:
        return False


def test_with_no_server_anywhere_serve_starts_a_private_one(bare_machine, tmp_path):
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        serve = subprocess.Popen(["./scripts/serve"], cwd=PROJECT_ROOT, env=bare_machine,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert wait_for(lambda: healthy(bare_machine["PORT"]) or serve.poll() is not None,
                        timeout=120)
        assert serve.poll() is None, log.read_text()
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(timeout=60)
    said = [line for line in log.read_text().splitlines() if "private" in line]
    assert len(said) == 1 and "No PostgreSQL answers at" in said[0]
    assert (Path(bare_machine["CLUSTER_DIR"]) / "primary" / "PG_VERSION").exists()


def test_a_set_but_unreachable_database_url_is_one_clear_error(bare_machine):
    env = {**bare_machine, "DATABASE_URL": f"postgresql+psycopg2://app@127.0.0.1:{free_port()}/app"}
    result = subprocess.run(["./scripts/serve"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("Error: cannot reach the database")
    assert "Traceback" not in result.stdout + result.stderr
    assert not (Path(env["CLUSTER_DIR"]) / "primary").exists()  # no fallback
