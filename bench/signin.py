"""Signing the benchmark in: an account in each bench database, and a
session cookie from the real login form for wrk to send."""

from __future__ import annotations

import http.client
import re
import subprocess
from urllib.parse import urlencode, urlsplit

from harness import PROJECT_ROOT
from harness.flask_cli import flask_command, flask_env

EMAIL = "bench@example.com"
PASSWORD = "the benchmark's own password"
# The first page of /users as the signed-in editor sees it: the users table
# with a page of rows (and the header row), the account named in the header.
USERS_TABLE = '<table class="users">'
PAGE_ROWS = 50
CSRF_INPUT = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


def create_account(url: str) -> None:
    """An editor for the benchmark, made with ``flask create-account``
    (unless the database has it already, e.g. one kept with ``--keep``)."""
    done = subprocess.run(
        flask_command("create-account", EMAIL, "--role", "editor", "--password-stdin"),
        cwd=PROJECT_ROOT, env=flask_env(url), input=PASSWORD + "\n",
        text=True, capture_output=True,
    )
    if done.returncode != 0 and "already exists" not in done.stderr:
        raise RuntimeError(f"create-account failed: {done.stderr.strip()}")


def request(base: str, method: str, path: str, cookie: str = "", body: str | None = None):
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Cookie": cookie} if cookie else {}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        page = response.read().decode()
        set_cookie = response.getheader("Set-Cookie", "")
        return response.status, page, set_cookie.split(";", 1)[0] or cookie
    finally:
        conn.close()


def csrf_token(page: str) -> str:
    match = CSRF_INPUT.search(page)
    return next(group for group in match.groups() if group)


def signed_in_cookie(base: str) -> str:
    """The ``session=...`` cookie a browser holds after signing in through
    the login form and loading the page it is sent to.

    wrk sends one cookie and never stores the ones it is given. myapp's
    sign-in starts a new session, without the CSRF secret of the login
    form; the first page that renders a form (every page has the sign-out
    form) puts a new one in and sends the cookie again. A browser keeps
    that cookie; a bench that kept the sign-in's would make every request
    mint a CSRF secret and re-sign the session cookie (measured: 9% of the
    list page's CPU), which no visitor's request does.
    """
    status, page, cookie = request(base, "GET", "/login")
    body = urlencode({"csrf_token": csrf_token(page), "email": EMAIL, "password": PASSWORD})
    status, _, cookie = request(base, "POST", "/login", cookie, body)
    if status != 303:
        raise RuntimeError(f"the benchmark could not sign in to {base}: {status}")
    return get(base, "/users", cookie)[1]


def get(base: str, path: str, cookie: str) -> tuple[str, str]:
    """(body, cookie to send next) of a signed-in GET that must answer 200."""
    status, page, cookie = request(base, "GET", path, cookie)
    if status != 200:
        raise RuntimeError(f"GET {path} answered {status}")
    return page, cookie


def check_list_page(what: str, status: int, page: str) -> None:
    """Raise unless ``page`` is the signed-in first page of /users: a 200
    with the users table of 50 rows, not the 303 to /login that wrk and a
    status-only check would count as an answer."""
    rows = page.count("<tr>") - 1  # less the header row
    if status != 200 or USERS_TABLE not in page or EMAIL not in page or rows != PAGE_ROWS:
        raise RuntimeError(f"{what}: /users is not the signed-in list page "
                           f"(status {status}, {rows} rows)")


def signed_in_test_client(app):
    """A Flask test client of ``app``, signed in as the editor through the
    login form (the in-process benchmarks)."""
    client = app.test_client()
    login = client.get("/login").get_data(as_text=True)
    response = client.post("/login", data={"csrf_token": csrf_token(login),
                                           "email": EMAIL, "password": PASSWORD})
    assert response.status_code == 303, response.status_code
    return client
