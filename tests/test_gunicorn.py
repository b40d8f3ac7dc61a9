"""End to end: real gunicorn (gthread, 2 workers x 4 threads) under concurrent form posts."""

from __future__ import annotations

import http.client
import os
import runpy
import subprocess
from concurrent.futures import ThreadPoolExecutor
from unittest import mock

import pytest
from sqlalchemy import text

from harness import PROJECT_ROOT
from harness.gunicorn import GUNICORN, GunicornServer, free_port
from tests.support.http import Browser
from tests.support.sampling import ConnectionSampler, app_connections

pytestmark = pytest.mark.server

WORKERS, THREADS = 2, 4
CLIENTS, CREATES = 16, 100

def test_concurrent_creates_through_gunicorn(database_url, inspect_engine, tables):
    with GunicornServer(database_url, workers=WORKERS, threads=THREADS) as server:
        names = [f"myapp[{pid}]" for pid in server.worker_pids()]
        assert len(names) == WORKERS
        browsers = [Browser(server.url) for _ in range(CLIENTS)]
        tokens = [browser.csrf_token() for browser in browsers]
        sampler = ConnectionSampler(inspect_engine)
        sampler.start()

        def create(n):
            browser, token = browsers[n % CLIENTS], tokens[n % CLIENTS]
            response = browser.submit(
                "/users", {"name": f"Load {n}", "email": f"load{n}@example.com"}, token=token
            )
            return response.status_code, response.headers.get("Location", "")

        with ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(create, range(CREATES)))
        sampler.stop()

        assert [status for status, _ in results] == [303] * CREATES
        assert all("/users/" in location for _, location in results)
        assert tables.counts() == (CREATES, CREATES)
        assert sampler.samples > 0
        assert 0 < sampler.peak <= WORKERS * THREADS
        total, idle_in_transaction = app_connections(inspect_engine)
        assert total <= WORKERS * THREADS
        assert idle_in_transaction == 0
        # Every acknowledged create has its audit row.
        with tables.connect() as conn:
            orphans = conn.scalar(
                text(
                    "SELECT count(*) FROM users u LEFT JOIN audit_events a"
                    " ON a.user_id = u.id AND a.action = 'create' WHERE a.id IS NULL"
                )
            )
        assert orphans == 0


def test_csrf_token_from_one_worker_is_accepted_by_the_other(database_url, tables):
    """SECRET_KEY is shared, so any worker verifies any worker's token."""
    with GunicornServer(database_url, workers=WORKERS, threads=1) as server:
        statuses = []
        for n in range(12):  # new connections spread over both workers
            browser = Browser(server.url)
            token = browser.csrf_token()
            browser.http.close()  # the POST goes out on a fresh connection
            statuses.append(
                browser.submit("/users", {"name": f"W {n}", "email": f"w{n}@example.com"},
                               token=token).status_code
            )
    assert statuses == [303] * 12
    assert tables.counts() == (12, 12)


def test_the_log_says_where_the_workers_listen(database_url):
    with GunicornServer(database_url, workers=1, threads=1) as server:
        assert f"Workers listen at: {server.url}" in server.output()


def test_threads_on_the_command_line_must_match_the_pool(database_url):
    """``--threads`` would bypass GUNICORN_THREADS, which sizes the pool: refused."""
    env = {**os.environ, "DATABASE_URL": str(database_url), "GUNICORN_THREADS": "4",
           "PORT": str(free_port())}
    result = subprocess.run(
        [str(GUNICORN), "-c", "gunicorn.conf.py", "--threads", "16", "wsgi:app"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "set GUNICORN_THREADS instead" in result.stderr + result.stdout


def test_gunicorn_refuses_more_header_fields_than_the_config_allows(database_url, tmp_path):
    """gunicorn.conf.py's ``limit_request_fields``: past it, gunicorn's own 431."""
    # Reading the file runs it, and it points PROMETHEUS_MULTIPROC_DIR at a
    # directory (a temporary one if unset): keep both inside this test.
    with mock.patch.dict(os.environ, {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}):
        limit = runpy.run_path(str(PROJECT_ROOT / "gunicorn.conf.py"))["limit_request_fields"]
    with GunicornServer(database_url, workers=1, threads=1) as server:

        def get_with(fields: int) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            conn.putrequest("GET", "/healthz", skip_accept_encoding=True)  # sends Host only
            for n in range(fields - 1):
                conn.putheader(f"X-Field-{n}", "x")
            conn.endheaders()
            status = conn.getresponse().status
            conn.close()
            return status

        assert get_with(limit) == 200
        assert get_with(limit + 1) == 431
