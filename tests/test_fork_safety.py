"""No process ever talks over a database connection opened by its parent."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text

from harness.gunicorn import GunicornServer
from myapp import db
from tests.support.http import Browser
from tests.support.sampling import app_backends


def _backend_pid() -> int:
    return db.Session().scalar(text("SELECT pg_backend_pid()"))


@pytest.mark.commits  # the pool itself is checked: no test connection may hold one
def test_forked_child_opens_its_own_connection(app):
    db.engine().dispose()  # start from a pool holding exactly one connection
    with app.app_context():
        parent_backend = _backend_pid()
    assert db.engine().pool.checkedin() == 1  # idle in the pool, inherited by the child

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: do what gunicorn's post_fork does, then work
        status = 1
        try:
            db.dispose_inherited_pool()
            with app.app_context():
                os.write(write_end, str(_backend_pid()).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    child_backend = int(os.read(read_end, 64) or 0)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0

    assert child_backend not in (0, parent_backend)
    with app.app_context():  # the parent's connection still works, untouched
        assert _backend_pid() == parent_backend


@pytest.mark.server
def test_preloaded_gunicorn_workers_never_use_the_masters_connection(database_url, inspect_engine):
    server = GunicornServer(
        database_url,
        workers=2,
        threads=4,
        extra_args=("--preload",),
        app_module="tests.support.preload_wsgi:app",
    )
    with server:
        browser = Browser(server.url)
        for _ in range(40):
            assert browser.get("/users").status_code == 200
        master = f"myapp[{server.process.pid}]"
        workers = {f"myapp[{pid}]" for pid in server.worker_pids()}
        rows = app_backends(inspect_engine)  # all but this test process's own pool
    masters = [row for row in rows if row.application_name == master]
    worker_rows = [row for row in rows if row.application_name in workers]
    # The workers served every request over connections of their own...
    assert worker_rows, rows
    assert {row.application_name for row in rows} <= workers | {master}
    # ...and the master's connection, still open, has been idle since before
    # the first worker connected: no worker ever sent a query over it.
    assert len(masters) == 1
    assert masters[0].state_change < min(row.backend_start for row in worker_rows)
