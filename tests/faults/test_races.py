"""Scenario 4 — races, through the real server: the database decides, never a 500."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from harness.gunicorn import GunicornServer
from tests.support import fault_report
from tests.support.http import Browser
from tests.support.proxy import TcpProxy

pytestmark = [pytest.mark.faults, pytest.mark.server]


def race(server, posts: list[tuple[str, dict]]) -> list[int]:
    """Send every (path, form) POST at once, each from its own browser."""
    browsers = [Browser(server.url) for _ in posts]
    tokens = [browser.csrf_token() for browser in browsers]
    barrier = threading.Barrier(len(posts))

    def post(n):
        path, form = posts[n]
        barrier.wait()  # everyone ready: go together
        return browsers[n].submit(path, form, token=tokens[n]).status_code

    with ThreadPoolExecutor(len(posts)) as pool:
        return list(pool.map(post, range(len(posts))))


def create_users(server, count: int) -> list[int]:
    browser = Browser(server.url)
    token = browser.csrf_token()
    ids = []
    for n in range(count):
        response = browser.submit("/users", {"name": f"Racer {n}", "email": f"racer{n}@example.com"},
                                  token=token)
        assert response.status_code == 303
        ids.append(int(response.headers["Location"].rsplit("/", 1)[1]))
    return ids


@pytest.fixture(scope="module")
def server(database_url):
    # One server for the module, through a proxy like every scenario (left
    # alone here); the tables are emptied between tests.
    with TcpProxy() as proxy, GunicornServer(proxy.url_for(database_url),
                                             workers=2, threads=8) as server:
        yield server


def test_concurrent_creates_of_one_email(server, tables):
    # The same address, in different letter cases: unique ignoring case.
    spellings = ["race@example.com", "Race@Example.com", "RACE@EXAMPLE.COM"]
    emails = [spellings[n % 3] for n in range(50)]
    statuses = race(server, [("/users", {"name": f"Racer {n}", "email": email})
                             for n, email in enumerate(emails)])
    counts = Counter(statuses)
    fault_report.record("4a 50 concurrent creates, one email", statuses=dict(counts),
                        users_stored=tables.counts()[0])
    assert counts == {303: 1, 409: 49}
    assert tables.counts() == (1, 1)


def test_concurrent_edits_at_one_version(server, tables):
    [user_id] = create_users(server, 1)
    statuses = race(server, [(f"/users/{user_id}/edit",
                              {"name": f"Editor {n}", "email": "racer0@example.com", "version": "1"})
                             for n in range(20)])
    counts = Counter(statuses)
    with tables.connect() as conn:
        name, version = conn.execute(text("SELECT name, version FROM users")).one()
        updates = conn.execute(
            text("SELECT detail FROM audit_events WHERE action = 'update'")
        ).scalars().all()
    fault_report.record("4b 20 concurrent edits, one version", statuses=dict(counts),
                  update_audit_rows=len(updates), final_version=version)
    assert counts == {303: 1, 409: 19}
    assert version == 2 and len(updates) == 1
    assert updates[0]["changes"]["name"]["new"] == name  # the winner's values, audited


def test_concurrent_delete_and_edit(server, tables):
    ids = create_users(server, 15)
    posts = []
    for user_id in ids:
        posts.append((f"/users/{user_id}/delete", {}))
        posts.append((f"/users/{user_id}/edit",
                      {"name": f"Edited {user_id}", "email": f"edited{user_id}@example.com",
                       "version": "1"}))
    statuses = race(server, posts)
    with tables.connect() as conn:
        survivors = set(conn.execute(text("SELECT id FROM users")).scalars())
        events = conn.execute(text("SELECT user_id, action FROM audit_events ORDER BY id")).all()
    fault_report.record("4c 15 x (delete vs edit) at once", statuses=dict(Counter(statuses)),
                  deleted=len(ids) - len(survivors), survived=len(survivors))

    # A delete carries no version, so no save can make it stale: every one
    # succeeds; an edit either lands first (303) or finds the user gone (404).
    assert statuses[0::2] == [303] * len(ids)
    assert set(statuses[1::2]) <= {303, 404}, Counter(statuses[1::2])
    for n, user_id in enumerate(ids):
        deleted, edited = statuses[2 * n] == 303, statuses[2 * n + 1] == 303
        actions = [action for uid, action in events if uid == user_id]
        # The history tells exactly what was acknowledged, in order.
        assert actions == ["create"] + ["update"] * edited + ["delete"] * deleted
        assert (user_id in survivors) == (not deleted)
