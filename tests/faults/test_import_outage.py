"""A database lost in the middle of an import writes nothing, and says so.

The app reaches PostgreSQL through the suite's TCP proxy (tests/faults/conftest.py),
cut while the import's INSERTs are under way; the shared server is never touched.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import text

from harness.flask_cli import start_flask
from harness.gunicorn import GunicornServer
from tests.support.database import assert_nothing_written
from tests.support.http import Browser
from tests.support.workload import wait_for

pytestmark = pytest.mark.server

ROWS = 120_000  # ~4 MB: under the web limit, and several seconds of inserting


def big_csv() -> str:
    return "name,email\n" + "".join(f"Lost {n},lost{n}@example.com\n" for n in range(ROWS))


def import_is_inserting(engine, application_name_like: str) -> bool:
    """True once the import's connection has sent a batch INSERT."""
    with engine.connect() as conn:
        return bool(
            conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name LIKE :name AND query LIKE 'WITH created%'"
                ),
                {"name": application_name_like},
            )
        )


def test_web_import_cut_mid_way_is_503_and_writes_nothing(
    proxied_url, proxy, inspect_engine, tables
):
    with assert_nothing_written(tables), GunicornServer(proxied_url, workers=1, threads=2) as server:
        browser = Browser(server.url)
        token = browser.csrf_token("/users/import")
        worker = f"myapp[{server.worker_pids()[0]}]"
        with ThreadPoolExecutor(1) as pool:
            upload = pool.submit(
                browser.http.post,
                server.url + "/users/import",
                data={"csrf_token": token},
                files={"file": ("big.csv", big_csv().encode(), "text/csv")},
                timeout=60,
            )
            assert wait_for(lambda: import_is_inserting(inspect_engine, worker), timeout=60)
            assert proxy.cut() > 0
            response: requests.Response = upload.result()
        assert response.status_code == 503
        assert "Nothing was saved" in response.text and "Traceback" not in response.text
        # The worker recovers by itself: the next request gets a new connection.
        assert wait_for(lambda: browser.get("/healthz").status_code == 200, timeout=15)


def test_cli_import_cut_mid_way_exits_2_and_writes_nothing(
    proxied_url, proxy, inspect_engine, tmp_path, tables
):
    path = tmp_path / "big.csv"
    path.write_text(big_csv())
    with assert_nothing_written(tables):
        process = start_flask("import-users", str(path), database_url=proxied_url,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            inserting = wait_for(
                lambda: process.poll() is not None
                or import_is_inserting(inspect_engine, f"myapp[{process.pid}]"),
                timeout=60,
            )
            assert inserting and process.poll() is None, process.communicate()
            assert proxy.cut() > 0
            stdout, stderr = process.communicate(timeout=60)
        finally:
            process.kill()
        assert process.returncode == 2, (stdout, stderr)
        assert "Nothing was imported" in stderr and "Traceback" not in stderr
