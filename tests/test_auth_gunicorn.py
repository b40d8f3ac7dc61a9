"""Sign-in against real gunicorn: the throttle holds across worker processes."""

from __future__ import annotations

import re

import pytest

from harness.gunicorn import GunicornServer
from myapp.auth import signin
from myapp.models import Role
from tests.support import accounts
from tests.support.http import Browser

pytestmark = pytest.mark.server

# gunicorn's access log with the worker's process id first: "<pid> request-line status".
ACCESS_LOG = ("--access-logformat", "%(p)s %(r)s %(s)s")
LOGIN_LINE = re.compile(r"^<(\d+)> POST /login HTTP/1.1 (\d{3})$", re.MULTILINE)
ATTEMPTS_AFTER_LOCK = 20


def attempt(server, password: str) -> int:
    """One sign-in attempt on a new connection (reuse_port lets the kernel
    pick the worker of each connection)."""
    browser = Browser(server.url, role=None)
    token = browser.csrf_token("/login")
    response = browser.submit("/login", {"email": accounts.EMAILS[Role.EDITOR],
                                         "password": password}, token=token)
    browser.http.close()
    return response.status_code


def test_the_throttle_holds_in_every_worker(database_url):
    with GunicornServer(database_url, workers=2, threads=2, extra_args=ACCESS_LOG) as server:
        workers = set(server.worker_pids())
        statuses = [attempt(server, "not the password") for _ in range(signin.MAX_FAILURES)]
        assert statuses == [401] * signin.MAX_FAILURES
        locked = [attempt(server, accounts.PASSWORD) for _ in range(ATTEMPTS_AFTER_LOCK)]
        assert locked == [429] * ATTEMPTS_AFTER_LOCK
        logins = LOGIN_LINE.findall(server.output())
    # Both workers refused: the count lives in PostgreSQL, not in a process.
    assert {int(pid) for pid, status in logins if status == "429"} == workers, logins
