"""Round trips to the database per request, counted on the wire.

Each round trip costs ~50 µs on loopback and 0.3–1 ms across a real network
(another machine, another zone), whatever the CPU; docs/performance.md has
the table these tests keep true. The real server (gunicorn, one worker, one
thread) reaches PostgreSQL through the test's TCP proxy, which keeps every
chunk the app sends: psycopg2 waits for each answer before it sends again,
so one chunk is one round trip, and the chunk's SQL says what it was for.

One thread serves requests one after another, each to its end — the
teardown that hands the connection back included. So a request that needs
no database (a static file), sent after the one measured, is answered only
once that one's last round trip is over: the count is complete, no waiting
on a clock.
"""

from __future__ import annotations

import re

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from harness.gunicorn import GunicornServer
from myapp import db, idle_ping
from tests.support.http import Browser
from tests.support.proxy import TcpProxy, statements

pytestmark = pytest.mark.server

# Longer than any test here runs: the pool never pings, so the counts are
# the requests' own. The ping itself is counted on its own below.
QUIET = {"DB_PING_AFTER_IDLE_MS": "600000"}


@pytest.fixture
def proxy():
    with TcpProxy() as proxy:
        yield proxy


def serve(database_url, proxy, env):
    return GunicornServer(proxy.url_for(database_url), workers=1, threads=1, env=env)


class Counter:
    """Counts the round trips of one request at a time."""

    def __init__(self, server, proxy):
        self.server, self.proxy = server, proxy

    def __call__(self, send) -> tuple[requests.Response, list[str]]:
        self.proxy.recording()
        response = send()
        # Answered after the request above is over, teardown included (one thread).
        requests.get(f"{self.server.url}/static/favicon.svg", timeout=30).raise_for_status()
        self.proxy.recording(False)
        return response, statements(self.proxy.sent)


def show(name: str, sent: list[str]) -> None:
    print(f"\n{name}: {len(sent)} round trips")
    for statement in sent:
        print("   ", " ".join(statement.split())[:100])


@pytest.fixture
def counted(database_url, proxy):
    with serve(database_url, proxy, QUIET) as server:
        browser = Browser(server.url)
        browser.get("/users").raise_for_status()  # the pool's one connection, made
        yield browser, Counter(server, proxy)


def kinds(sent: list[str]) -> list[str]:
    """Each round trip's first word: BEGIN, SELECT, INSERT..."""
    return [statement.split()[0].upper() for statement in sent]


def test_signed_in_list_page(counted):
    browser, count = counted
    response, sent = count(lambda: browser.get("/users"))
    show("GET /users, signed in", sent)
    assert response.status_code == 200
    # The account (revocation check), the page. No BEGIN, no ROLLBACK.
    assert kinds(sent) == ["SELECT", "SELECT"]


def test_create(counted, tables):
    browser, count = counted
    token = browser.csrf_token()
    response, sent = count(lambda: browser.submit(
        "/users", {"name": "Ada", "email": "ada@example.com"}, token=token))
    show("POST /users (create)", sent)
    assert response.status_code == 303
    assert kinds(sent) == ["SELECT", "BEGIN", "INSERT", "INSERT", "COMMIT"]
    assert tables.counts() == (1, 1)


def test_detail_edit_delete_are_counted(counted, tables):
    browser, count = counted
    browser.submit("/users", {"name": "Ada", "email": "ada@example.com"})
    user_id = int(re.search(r"/users/(\d+)", browser.get("/users").text).group(1))

    response, sent = count(lambda: browser.get(f"/users/{user_id}"))
    show("GET /users/<id> (detail)", sent)
    assert response.status_code == 200
    assert kinds(sent) == ["SELECT", "SELECT", "SELECT"]  # account, user, history

    response, sent = count(lambda: browser.get(f"/users/{user_id}/edit"))
    show("GET /users/<id>/edit", sent)
    assert response.status_code == 200
    assert kinds(sent) == ["SELECT", "SELECT"]

    token = browser.csrf_token(f"/users/{user_id}/edit")
    response, sent = count(lambda: browser.submit(
        f"/users/{user_id}/edit", {"name": "Ada L", "email": "ada@example.com", "version": 1},
        token=token))
    show("POST /users/<id>/edit", sent)
    assert response.status_code == 303
    assert kinds(sent) == ["SELECT", "BEGIN", "SELECT", "UPDATE", "INSERT", "COMMIT"]

    response, sent = count(lambda: browser.submit(f"/users/{user_id}/delete", {}, token=token))
    show("POST /users/<id>/delete", sent)
    assert response.status_code == 303
    assert kinds(sent) == ["SELECT", "BEGIN", "SELECT", "DELETE", "INSERT", "COMMIT"]
    assert tables.counts() == (0, 3)


# --- the ping after idle (myapp/idle_ping.py) ---------------------------------


@pytest.fixture
def pinged_engine(database_url, proxy):
    """An engine like the app's (one pooled connection, through the proxy),
    pinging after 60 s idle; ``backdate()`` makes its idle connection look
    that old without waiting for it."""
    engine = create_engine(proxy.url_for(database_url), pool_size=1, max_overflow=0)
    idle_ping.install(engine, after_idle_s=60)

    def backdate():
        record = engine.pool._pool.queue[0]  # the idle connection's record
        record.info[idle_ping.IDLE_SINCE] -= 61

    with engine.connect() as conn:  # the connection, made and returned
        conn.execute(text("SELECT 1"))
    yield engine, backdate
    engine.dispose()


def checkout(engine, proxy) -> list[str]:
    """What checking a connection out and back in sent to the server."""
    proxy.recording()
    with engine.connect():
        pass
    proxy.recording(False)
    return statements(proxy.sent)


def test_a_connection_used_a_moment_ago_is_not_pinged(pinged_engine, proxy):
    engine, _ = pinged_engine
    assert checkout(engine, proxy) == []


def test_a_connection_idle_past_the_setting_is_pinged(pinged_engine, proxy):
    engine, backdate = pinged_engine
    backdate()
    assert checkout(engine, proxy) == ["SELECT 1"]
    assert checkout(engine, proxy) == []  # and not again right after


def test_a_connection_that_died_while_idle_is_replaced_before_use(pinged_engine, proxy):
    engine, backdate = pinged_engine
    made = proxy.connections_made
    proxy.cut()  # the server side went away while the connection sat in the pool
    backdate()
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT 42")) == 42
    assert proxy.connections_made == made + 1


def test_without_the_ping_a_dead_connection_fails_one_request_only(pinged_engine, proxy):
    """The ping's trade-off, shown: a connection cut less than the setting
    ago fails the statement that finds it dead — the request gets the 503
    page — and SQLAlchemy then replaces it (and every older one in the
    pool); the next checkout works without a ping."""
    engine, _ = pinged_engine
    proxy.cut()
    with pytest.raises(DBAPIError) as failed, engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert failed.value.connection_invalidated
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT 42")) == 42


def test_steady_traffic_reuses_the_last_connection_and_is_not_pinged(database_url, proxy):
    """After a busy moment opened several connections, a request takes the
    one given back last (the app's pool is last-in-first-out): the others
    may sit idle past the setting without costing a ping per request."""
    config = {"DATABASE_URL": proxy.url_for(database_url), "DB_POOL_SIZE": 3,
              "DB_POOL_TIMEOUT": 5, "DB_CONNECT_TIMEOUT": 5, "DB_PING_AFTER_IDLE_MS": 60_000}
    engine = db.build_engine(config, instrumented=False)
    try:
        busy = [engine.connect() for _ in range(3)]  # three requests at once
        for conn in busy:
            conn.execute(text("SELECT 1"))
        for conn in busy:  # given back oldest first
            conn.close()
        for record in list(engine.pool._pool.queue)[:-1]:  # all but the last given back...
            record.info[idle_ping.IDLE_SINCE] -= 61  # ...look idle past the setting
        for _ in range(3):  # steady traffic, one request at a time
            assert checkout(engine, proxy) == []
    finally:
        engine.dispose()


@pytest.mark.parametrize("setting", ["0"])
def test_ping_after_idle_zero_pings_before_every_request(database_url, proxy, setting):
    with serve(database_url, proxy, {"DB_PING_AFTER_IDLE_MS": setting}) as server:
        browser = Browser(server.url)
        browser.get("/users").raise_for_status()
        response, sent = Counter(server, proxy)(lambda: browser.get("/users"))
    assert response.status_code == 200
    assert kinds(sent) == ["SELECT", "SELECT", "SELECT"] and sent[0] == "SELECT 1"
