"""Read-your-writes with the replica's replay paused (pg_wal_replay_pause()):
the client that wrote sees its create, edit and delete on every later page;
another client, reading the paused replica, does not until replay resumes."""

from __future__ import annotations

import re

import pytest
import requests

from myapp.models import Role
from tests.support.forms import extract_csrf_token
from tests.support.http import Browser
from tests.support.prometheus import scrape
from tests.support.workload import wait_for

pytestmark = [pytest.mark.server, pytest.mark.replication]

CREATED = re.compile(r"/users/(\d+)$")
VERSION_INPUT = re.compile(r'name="version"[^>]*value="(\d+)"')


def signed_in_then_paused(replication, server) -> tuple[Browser, Browser]:
    """An editor and a viewer, signed in, and the replica's replay paused.

    Signing in writes (the account's sign-in bookkeeping), so each client's
    cookie carries a WAL position: the replica must have replayed both
    sign-ins, or the viewer would read from the primary (its own writes).
    """
    writer, other = Browser(server.url), Browser(server.url, role=Role.VIEWER)
    replication.wait_until_replayed()
    replication.pause_replay()
    return writer, other


def create(browser: Browser, name: str, email: str) -> int:
    answer = browser.submit("/users", {"name": name, "email": email})
    assert answer.status_code == 303, answer.text
    return int(CREATED.search(answer.headers["Location"]).group(1))


def test_the_creator_sees_its_new_user_another_client_only_after_replay(replication, server):
    writer, other = signed_in_then_paused(replication, server)
    user_id = create(writer, "Fresh Writer", "fresh@example.com")

    page = writer.get(f"/users/{user_id}")  # where the 303 led
    assert page.status_code == 200
    assert "Fresh Writer" in page.text
    assert "fresh@example.com" in writer.get("/users").text
    # The position is in the cookie, not in a worker: a new connection each
    # time (gunicorn's workers share the port, so they take turns) finds it too.
    for _ in range(6):
        fresh = requests.get(f"{server.url}/users/{user_id}", timeout=10,
                             headers={"Cookie": writer.cookie_header(), "Connection": "close"})
        assert fresh.status_code == 200

    # Those pages read the primary, for read-your-writes, and said so.
    fallbacks = scrape(server.url).value("myapp_db_replica_fallbacks_total",
                                         reason="read_your_writes")
    assert fallbacks >= 2 + 6

    # The viewer reads the paused replica: not there yet.
    assert other.get(f"/users/{user_id}").status_code == 404
    assert "fresh@example.com" not in other.get("/users").text

    replication.resume_replay()
    assert wait_for(lambda: other.get(f"/users/{user_id}").status_code == 200, 10)
    assert "fresh@example.com" in other.get("/users").text


def test_the_editor_sees_its_edit_and_delete_another_client_only_after_replay(
        replication, server):
    writer, other = signed_in_then_paused(replication, server)
    replication.resume_replay()
    user_id = create(writer, "Before Edit", "edit@example.com")
    replication.wait_until_replayed()
    assert other.get(f"/users/{user_id}").status_code == 200

    replication.pause_replay()
    try:
        form = writer.get(f"/users/{user_id}/edit")
        version = VERSION_INPUT.search(form.text).group(1)
        saved = writer.submit(f"/users/{user_id}/edit",
                              {"name": "After Edit", "email": "edit@example.com",
                               "version": version}, token=extract_csrf_token(form.text))
        assert saved.status_code == 303
        assert "After Edit" in writer.get(f"/users/{user_id}").text
        assert "After Edit" in writer.get("/users").text
        edit_form = writer.get(f"/users/{user_id}/edit").text
        assert 'value="After Edit"' in edit_form
        assert VERSION_INPUT.search(edit_form).group(1) == str(int(version) + 1)
        assert "Before Edit" in other.get(f"/users/{user_id}").text

        deleted = writer.submit(f"/users/{user_id}/delete", {}, page=f"/users/{user_id}")
        assert deleted.status_code == 303
        # Deleted for the client that deleted it, on every page.
        assert writer.get(f"/users/{user_id}").status_code == 404
        assert "edit@example.com" not in writer.get("/users").text
        assert writer.get(f"/users/{user_id}/edit").status_code == 404
        # Still there for the other client, on the paused replica.
        assert other.get(f"/users/{user_id}").status_code == 200
    finally:
        replication.resume_replay()
    assert wait_for(lambda: other.get(f"/users/{user_id}").status_code == 404, 10)
    assert "edit@example.com" not in other.get("/users").text
