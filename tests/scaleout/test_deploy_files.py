"""The operator's files in deploy/, each checked by its own tool.

PgBouncer loading pgbouncer.ini is checked on a running cluster
(tests/scaleout/test_lifecycle_and_limits.py: its admin console's SHOW CONFIG).
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from cluster import packages
from cluster.processes import ClusterError, as_user
from cluster.render import render
from cluster.services import Nginx
from cluster.settings import DEPLOY, PROJECT_ROOT, Settings
from harness.gunicorn import free_port

pytestmark = pytest.mark.cluster


@pytest.fixture
def nginx(tmp_path, monkeypatch):
    monkeypatch.setenv("CLUSTER_DIR", str(tmp_path / "cluster"))
    settings = dataclasses.replace(Settings.from_environment(), instances=3)
    nginx = Nginx(settings)
    for directory in (settings.run_dir, settings.log_dir, nginx.temp_dir):
        directory.mkdir(parents=True)
    nginx.make_certificate()
    nginx.render()
    return nginx


def nginx_test(nginx: Nginx) -> subprocess.CompletedProcess:
    return subprocess.run(nginx.command("-t"), capture_output=True, text=True, check=False)


def test_nginx_accepts_the_rendered_site(nginx):
    result = nginx_test(nginx)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr
    site = (nginx.conf_dir / "myapp.conf").read_text()
    assert site.count("server 127.0.0.1:") == 3  # one upstream line per instance


def test_nginx_test_catches_a_broken_site(nginx):
    """The check above can fail: the same tool refuses a site with a typo."""
    site = nginx.conf_dir / "myapp.conf"
    site.write_text(site.read_text().replace("proxy_cookie_flags", "proxy_cookie_flagz"))
    result = nginx_test(nginx)
    assert result.returncode != 0 and "proxy_cookie_flagz" in result.stderr


def systemd_verify(unit: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, check=False)


def instance_unit(tmp_path: Path, text: str) -> Path:
    """The template unit as instance myapp@8001, pointing at this checkout
    (verify checks that ExecStart's program exists)."""
    unit = tmp_path / "myapp@8001.service"
    unit.write_text(text.replace("/srv/myapp", str(PROJECT_ROOT)))
    return unit


def test_systemd_unit_verifies(tmp_path):
    source = (DEPLOY / "systemd" / "myapp@.service").read_text()
    result = systemd_verify(instance_unit(tmp_path, source))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_systemd_verify_catches_a_broken_unit(tmp_path):
    source = (DEPLOY / "systemd" / "myapp@.service").read_text()
    broken = source.replace("ExecStart=/srv/myapp/.venv/bin/gunicorn",
                            "ExecStart=/srv/myapp/.venv/bin/no-such-program")
    result = systemd_verify(instance_unit(tmp_path, broken))
    assert result.returncode != 0


def test_pgbouncer_refuses_an_ini_it_cannot_load():
    """Its own check of a config (the good one is loaded by a running cluster).

    Should it ever accept this one, it listens on a free port and is ended
    by the timeout.
    """
    directory = Path(tempfile.mkdtemp(prefix="pgbouncer-ini-"))
    directory.chmod(0o755)  # readable by the unprivileged user it must run as
    try:
        ini = directory / "pgbouncer.ini"
        ini.write_text("[databases]\n[pgbouncer]\nlisten_addr = 127.0.0.1\n"
                       f"listen_port = {free_port()}\nunix_socket_dir =\n"
                       "pool_mode = sometimes\n")
        ini.chmod(0o644)
        binary = packages.find("pgbouncer")
        assert binary
        result = subprocess.run([binary, str(ini)], capture_output=True, text=True, check=False,
                                timeout=10, **as_user(Settings.from_environment().service_user))
    finally:
        shutil.rmtree(directory)
    assert result.returncode != 0
    assert "pool_mode" in result.stdout + result.stderr


def test_a_placeholder_without_a_value_is_an_error_not_an_empty_string():
    assert render("listen ${PORT}; root $document_root;", {"PORT": 80}) == (
        "listen 80; root $document_root;")
    with pytest.raises(ClusterError, match="PORT"):
        render("listen ${PORT};", {})


def test_every_deploy_file_is_in_place():
    for path in ("nginx/myapp.conf", "nginx/myapp-locations.conf",
                 "nginx/myapp-security-headers.conf", "pgbouncer/pgbouncer.ini",
                 "pgbouncer/userlist.txt", "postgresql/myapp.conf", "systemd/myapp@.service"):
        assert (DEPLOY / path).is_file(), path
    assert shutil.which("systemd-analyze")
