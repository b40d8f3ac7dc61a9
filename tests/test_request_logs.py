"""What real gunicorn logs: JSON or text lines, request ids, slow requests, no secrets."""

from __future__ import annotations

import json

import pytest

from harness.gunicorn import GunicornServer
from myapp.models import Role
from tests.support import accounts
from tests.support.forms import extract_csrf_token
from tests.support.http import Browser

pytestmark = pytest.mark.server


def json_lines(server: GunicornServer) -> list[dict]:
    """Every line the server wrote (stdout and stderr), each parsed as one JSON object."""
    lines = server.output().splitlines()
    assert lines
    return [json.loads(line) for line in lines]  # a line that is not JSON fails here


def test_json_logs_one_object_per_line_with_the_request_fields(database_url):
    env = {"LOG_FORMAT": "json", "SLOW_REQUEST_MS": "0"}  # 0: every request is "slow"
    with GunicornServer(database_url, workers=2, threads=2, env=env) as server:
        browser = Browser(server.url)  # signed in as the editor
        response = browser.get("/users", headers={"X-Request-ID": "json-req-1"})
        assert response.headers["X-Request-ID"] == "json-req-1"
        unnamed = browser.get("/users/77")
    lines = json_lines(server)

    mine = [line for line in lines if line["request_id"] == "json-req-1"]
    access = [line for line in mine if line["logger"] == "gunicorn.access"]
    slow = [line for line in mine if line["logger"] == "myapp.requests"]
    assert len(access) == 1 and len(slow) == 1
    [access], [slow] = access, slow
    assert access["level"] == "INFO"
    assert (access["method"], access["route"], access["path"], access["status"]) == (
        "GET", "/users", "/users", 200)
    assert access["sql_statements"] >= 1
    assert access["sql_ms"] >= 0 and access["duration_ms"] > 0
    assert access["account_id"] == accounts.IDS[Role.EDITOR]  # who asked
    assert access["instance"].endswith(server.url.removeprefix("http://"))
    assert slow["level"] == "WARNING"
    assert slow["sql_statements"] == access["sql_statements"]
    assert slow["route"] == "/users" and slow["status"] == 200
    assert "slow request" in slow["message"]

    fresh_id = unnamed.headers["X-Request-ID"]
    [other] = [line for line in lines
               if line["request_id"] == fresh_id and line["logger"] == "gunicorn.access"]
    assert (other["route"], other["status"]) == ("/users/<id:user_id>", 404)
    # Lines outside any request (start-up, shutdown) carry no id, not a wrong one.
    assert any(line["request_id"] is None and line["logger"] == "gunicorn.error"
               for line in lines)


def test_text_logs_carry_the_request_id_too(database_url):
    env = {"LOG_FORMAT": "text", "SLOW_REQUEST_MS": "0"}
    with GunicornServer(database_url, workers=1, threads=2, env=env) as server:
        Browser(server.url).get("/users", headers={"X-Request-ID": "text-req-1"})
    lines = [line for line in server.output().splitlines() if "text-req-1" in line]
    assert len(lines) == 2, lines
    access, = [line for line in lines if '"GET /users HTTP/1.1" 200' in line]
    assert access.endswith(" text-req-1")
    slow, = [line for line in lines if "slow request" in line]
    assert "[WARNING] [text-req-1] myapp.requests: slow request: GET /users answered 200" in slow


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_no_password_csrf_token_or_cookie_reaches_a_log_line(database_url, log_format):
    password = "Pa55word-never-logged-7f3a"
    env = {"LOG_FORMAT": log_format, "SLOW_REQUEST_MS": "0"}
    # --log-level debug: even gunicorn's most talkative setting logs none of them.
    with GunicornServer(database_url, workers=1, threads=2, env=env,
                        extra_args=("--log-level", "debug")) as server:
        browser = Browser(server.url, role=None)
        editor = accounts.EMAILS[Role.EDITOR]
        # The login form: a wrong password (401), then the right one (303).
        wrong = browser.submit("/login", {"email": editor, "password": password}, page="/login")
        browser.sign_in(editor, accounts.PASSWORD)
        http = browser.http
        page = http.get(server.url + "/users/new", timeout=30)
        token = extract_csrf_token(page.text)
        cookie = http.cookies.get("session")
        assert token and cookie
        forms = [
            ("/users", {"name": "Ada", "email": "ada@example.com", "password": password}),  # 303
            ("/users", {"name": "", "email": "nope", "password": password}),  # 422
            ("/users", {"name": "Ada", "email": "ADA@example.com", "password": password}),  # 409
            ("/users/import", {"csv": f"name,email\nBob,{password}\n", "password": password}),
        ]
        statuses = [http.post(server.url + path, data={"csrf_token": token, **data},
                              allow_redirects=False, timeout=30).status_code
                    for path, data in forms]
        # A forged token and a query string asking for trouble.
        forged = http.post(server.url + "/users", timeout=30,
                           data={"csrf_token": token[:-4] + "AAAA", "password": password})
        http.get(server.url + "/users", params={"q": "x"}, timeout=30,
                 headers={"Authorization": f"Bearer {password}"})
    assert wrong.status_code == 401
    assert statuses == [303, 422, 409, 200]
    assert forged.status_code == 400
    output = server.output()
    assert "POST /login" in output and "POST /users" in output  # the requests were logged ...
    for secret in (password, accounts.PASSWORD, token, cookie, token[:-4]):
        assert secret not in output  # ... without their secrets
