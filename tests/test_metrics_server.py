"""/metrics from real gunicorn: every worker added up, across restarts and faults."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from sqlalchemy import text
from sqlalchemy.engine import make_url

from harness.gunicorn import GunicornServer
from tests.support.http import Browser
from tests.support.prometheus import promtool, scrape, scrape_text
from tests.support.proxy import TcpProxy
from tests.support.sampling import wait_for_a_lock_wait

pytestmark = pytest.mark.server

USERS_200 = {"route": "/users", "method": "GET", "status": "200"}
USER_404 = {"route": "/users/<id:user_id>", "method": "GET", "status": "404"}


_editor_cookies: weakref.WeakKeyDictionary[GunicornServer, str] = weakref.WeakKeyDictionary()
_signing_in = threading.Lock()


def fresh_get(server: GunicornServer, path: str) -> requests.Response:
    """One request as the signed-in editor, on its own connection, so
    reuse_port spreads them over the workers. The server's first call signs
    in through the login form (its requests are not /users's)."""
    with _signing_in:  # the pool test sends from several threads
        if server not in _editor_cookies:
            _editor_cookies[server] = Browser(server.url).cookie_header()
        cookie = _editor_cookies[server]
    return requests.get(server.url + path, timeout=30,
                        headers={"Connection": "close", "Cookie": cookie})


def wait_for_replacement(server: GunicornServer, dead: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = server.worker_pids()
        if len(pids) == server.workers and dead not in pids:
            return
        time.sleep(0.1)  # polling the process table for the master's new worker
    raise AssertionError(f"worker {dead} was not replaced: {server.worker_pids()}")


def access_lines(server: GunicornServer) -> list[dict]:
    lines = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    return [line for line in lines if line["logger"] == "gunicorn.access"]


def test_a_scrape_passes_promtool_check_metrics(database_url):
    with GunicornServer(database_url, workers=2, threads=2) as server:
        fresh_get(server, "/users")
        fresh_get(server, "/users/12345")
        fresh_get(server, "/nowhere")
        body = scrape_text(server.url)
    result = promtool("check", "metrics", stdin=body)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "myapp_db_pool_checkout_wait_seconds_bucket" in body


def test_counters_add_up_over_workers_and_survive_a_killed_worker(database_url, tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    # Left by an earlier server: the start wipes it, or /users would count 1000 more.
    stale = MmapedDict(str(metrics_dir / "counter_99999.db"))
    stale.write_value(mmap_key("myapp_http_requests", "myapp_http_requests_total",
                               list(USERS_200), list(USERS_200.values()),
                               "HTTP requests answered, by URL rule, method and status code."),
                      1000.0, 0.0)
    stale.close()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "LOG_FORMAT": "json"}
    with GunicornServer(database_url, workers=2, threads=2, env=env) as server:
        assert not (metrics_dir / "counter_99999.db").exists()
        for _ in range(30):
            assert fresh_get(server, "/users").status_code == 200
        for n in range(10):
            assert fresh_get(server, f"/users/{1000 + n}").status_code == 404

        # Both workers served (the access log names each line's process) ...
        pids = {line["pid"] for line in access_lines(server) if line["route"] == "/users"}
        assert pids == set(server.worker_pids())
        # ... and /metrics, answered by either one, holds both workers' counts.
        before = scrape(server.url)
        assert before.value("myapp_http_requests_total", **USERS_200) == 30
        assert before.value("myapp_http_requests_total", **USER_404) == 10
        assert before.value("myapp_http_request_duration_seconds_count",
                            route="/users", method="GET") == 30
        assert before.value("myapp_http_request_sql_statements_count", route="/users") == 30
        assert len(before.matching("myapp_db_pool_size", pool="primary")) == 2  # one per worker

        victim = server.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        wait_for_replacement(server, victim)

        after = scrape(server.url)
        for name, labels in [
            ("myapp_http_requests_total", USERS_200),
            ("myapp_http_requests_total", USER_404),
            ("myapp_http_request_duration_seconds_count", {"route": "/users", "method": "GET"}),
            ("myapp_http_request_duration_seconds_bucket",
             {"route": "/users", "method": "GET", "le": "+Inf"}),
            ("myapp_http_request_sql_statements_sum", {"route": "/users"}),
        ]:
            assert after.value(name, **labels) == before.value(name, **labels), name
        # The dead worker's gauges are gone, the new worker's are there.
        gauge_pids = {s.labels["pid"] for s in after.matching("myapp_db_pool_size")}
        assert gauge_pids == {str(pid) for pid in server.worker_pids()}
        # Its files were folded into the archives: nothing named after it is left.
        assert not list(metrics_dir.glob(f"*_{victim}.db"))
        assert (metrics_dir / "counter_archive.db").exists()

        for _ in range(10):
            assert fresh_get(server, "/users").status_code == 200
        assert scrape(server.url).value("myapp_http_requests_total", **USERS_200) == 40

    # A graceful stop folds the last workers too; the directory we chose stays.
    assert sorted(p.name for p in metrics_dir.glob("*.db")) == [
        "counter_archive.db", "histogram_archive.db"]


def test_repeated_worker_restarts_leave_one_archive_per_type(database_url, tmp_path):
    metrics_dir = tmp_path / "metrics"
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with GunicornServer(database_url, workers=2, threads=1, env=env) as server:
        for round_no in range(3):
            assert fresh_get(server, "/users").status_code == 200
            victim = server.worker_pids()[0]
            os.kill(victim, signal.SIGKILL)
            wait_for_replacement(server, victim)
        files = sorted(p.name for p in metrics_dir.glob("*.db"))
        live = {str(pid) for pid in server.worker_pids()}
        assert all(name.endswith("_archive.db") or name.rsplit("_", 1)[1][:-3] in live
                   for name in files), files
        assert scrape(server.url).value("myapp_http_requests_total", **USERS_200) == 3


def test_without_a_directory_the_server_makes_and_removes_its_own(database_url, tmp_path):
    # TMPDIR: where tempfile makes the private directory, so the test can find it.
    with GunicornServer(database_url, workers=1, threads=1, env={"TMPDIR": str(tmp_path)}) as server:
        fresh_get(server, "/users")
        [private] = tmp_path.glob("myapp-metrics-*")
        assert list(private.glob("*.db"))
        assert scrape(server.url).value("myapp_http_requests_total", **USERS_200) == 1
    assert not list(tmp_path.glob("myapp-metrics-*"))


def test_a_private_directory_in_an_inherited_environment_is_never_shared(database_url, tmp_path):
    """A process that read gunicorn.conf.py (and so made a private directory)
    starts a server with its environment: the server makes its own, and
    neither uses nor deletes the other's."""
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "counter_archive.db").write_bytes(b"")
    env = {"PROMETHEUS_MULTIPROC_DIR": str(theirs),
           "MYAPP_PRIVATE_METRICS_DIR": f"{os.getpid()} {theirs}", "TMPDIR": str(tmp_path)}
    with GunicornServer(database_url, workers=1, threads=1, env=env) as server:
        assert fresh_get(server, "/users").status_code == 200
        [own] = tmp_path.glob("myapp-metrics-*")
        assert list(own.glob("*.db"))
        assert scrape(server.url).value("myapp_http_requests_total", **USERS_200) == 1
    assert [p.name for p in theirs.iterdir()] == ["counter_archive.db"]
    assert not own.exists()


@pytest.fixture
def table_lock(inspect_engine):
    """Hold an ACCESS EXCLUSIVE lock on users until ``release()``: reads wait behind it."""
    conn = inspect_engine.connect()
    transaction = conn.begin()
    conn.execute(text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))

    class Lock:
        @staticmethod
        def release():
            if transaction.is_active:
                transaction.commit()

    yield Lock
    Lock.release()
    conn.close()


def test_pool_saturation_shows_in_the_wait_histogram_and_timeouts(
        database_url, inspect_engine, table_lock):
    env = {"DB_POOL_SIZE": "1", "DB_POOL_TIMEOUT": "1"}
    with GunicornServer(database_url, workers=1, threads=4, env=env) as server:
        base = scrape(server.url)
        holder = ThreadPoolExecutor(1).submit(fresh_get, server, "/users")
        wait_for_a_lock_wait(inspect_engine)  # it holds the one connection

        during = scrape(server.url)
        assert during.value("myapp_db_pool_checked_out_connections", pool="primary") == 1
        with ThreadPoolExecutor(3) as pool:
            statuses = [r.status_code for r in pool.map(
                lambda _: fresh_get(server, "/users"), range(3))]
        assert statuses == [503] * 3
        table_lock.release()
        assert holder.result(timeout=30).status_code == 200

        after = scrape(server.url)
        assert after.value("myapp_db_pool_timeouts_total", pool="primary") == 3
        assert after.value("myapp_database_unavailable_responses_total", cause="pool_timeout") == 3
        # The three that timed out waited DB_POOL_TIMEOUT (1 s): beyond the 0.5 s bucket.
        waits = "myapp_db_pool_checkout_wait_seconds"
        slow_before = (base.value(f"{waits}_count", pool="primary")
                       - base.value(f"{waits}_bucket", pool="primary", le="0.5"))
        slow_after = (after.value(f"{waits}_count", pool="primary")
                      - after.value(f"{waits}_bucket", pool="primary", le="0.5"))
        assert slow_after - slow_before == 3
        assert after.value("myapp_http_requests_total", route="/users", method="GET",
                           status="503") == 3
        assert after.value("myapp_db_pool_checked_out_connections", pool="primary") == 0


def test_a_statement_timeout_is_a_503_by_its_cause(database_url, inspect_engine, table_lock):
    env = {"DB_STATEMENT_TIMEOUT_MS": "300"}
    with GunicornServer(database_url, workers=1, threads=2, env=env) as server:
        assert fresh_get(server, "/users").status_code == 503
        table_lock.release()
        counts = scrape(server.url)
    assert counts.value("myapp_database_unavailable_responses_total",
                        cause="statement_timeout") == 1
    assert counts.value("myapp_database_unavailable_responses_total") == 1  # no other cause


def test_a_database_cut_shows_in_the_503_counter_by_cause(database_url):
    with TcpProxy() as proxy:
        url = proxy.url_for(make_url(database_url)).render_as_string(hide_password=False)
        env = {"DB_CONNECT_TIMEOUT": "2", "DB_POOL_TIMEOUT": "2"}
        with GunicornServer(url, workers=1, threads=2, env=env) as server:
            assert fresh_get(server, "/users").status_code == 200
            proxy.refuse()
            proxy.cut()
            statuses = [fresh_get(server, "/users").status_code for _ in range(3)]
            down = scrape(server.url)  # /metrics answers while the database is gone
            proxy.accept()
            assert fresh_get(server, "/users").status_code == 200
            back = scrape(server.url)
    assert statuses == [503] * 3
    assert down.value("myapp_database_unavailable_responses_total",
                      cause="database_unreachable") == 3
    assert down.value("myapp_database_unavailable_responses_total") == 3
    assert down.value("myapp_db_pool_invalidations_total", pool="primary") >= 1
    assert back.value("myapp_database_unavailable_responses_total") == 3
    assert back.value("myapp_http_requests_total", **USERS_200) == 2


def test_an_unknown_log_format_stops_gunicorn_with_the_variable_named(database_url, tmp_path):
    server = GunicornServer(database_url, workers=1, threads=1, ready_timeout=15,
                            env={"LOG_FORMAT": "xml", "TMPDIR": str(tmp_path)})
    with pytest.raises(RuntimeError, match="LOG_FORMAT must be text or json"):
        with server:
            pass
    assert server.process.returncode != 0
    assert not list(tmp_path.glob("myapp-metrics-*"))  # its private directory went with it



def test_a_reload_replaces_the_workers_and_keeps_the_counts(database_url, tmp_path):
    """SIGHUP: gunicorn re-reads its config (gunicorn.conf.py runs again) and
    replaces every worker; the directory is not wiped, the old workers' counts
    are kept, and the private-directory marker survives."""
    with GunicornServer(database_url, workers=2, threads=1,
                        env={"TMPDIR": str(tmp_path)}) as server:
        for _ in range(6):
            assert fresh_get(server, "/users").status_code == 200
        [private] = tmp_path.glob("myapp-metrics-*")
        old = {f"{pid}.db" for pid in server.worker_pids()}

        def old_files():
            return [p for p in private.glob("*.db") if p.name.rsplit("_", 1)[1] in old]

        assert old_files()
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        # Replaced: two workers, none of the old ones, and their files folded.
        while not (len(server.worker_pids()) == 2
                   and not old & {f"{pid}.db" for pid in server.worker_pids()}
                   and not old_files()):
            assert time.monotonic() < deadline, "workers were not replaced"
            time.sleep(0.1)  # polling the process table and the directory
        assert scrape(server.url).value("myapp_http_requests_total", **USERS_200) == 6
    assert not list(tmp_path.glob("myapp-metrics-*"))
