"""Editing with optimistic locking, deleting, and the audit trail."""

from __future__ import annotations

import re
import threading
import time

import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session as SessionClass

from myapp import db, users
from myapp.models import User
from myapp.validation import UserFields
from tests.support.database import row_counts, table_snapshot
from tests.support.factories import make_user
from tests.support.forms import csrf_token, submit



def edit(client, user_id, **data):
    page = f"/users/{user_id}/edit"
    return submit(client, page, data, page=page)


def audit_actions(engine, user_id):
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT action, detail FROM audit_events WHERE user_id = :id ORDER BY id"),
            {"id": user_id},
        ).all()


def test_edit_form_carries_the_current_values_and_version(app, client):
    user = make_user(app)
    html = client.get(f"/users/{user.id}/edit").get_data(as_text=True)
    assert 'value="Ada Lovelace"' in html and 'value="ada@example.com"' in html
    assert re.search(r'<input id="version" name="version" type="hidden" value="1">', html)
    assert 'name="csrf_token"' in html


def test_edit_saves_bumps_the_version_and_records_the_change(app, client, inspect_engine):
    user = make_user(app)
    response = edit(client, user.id, name="Ada King", email="ada@example.com", version=1)
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/users/{user.id}")
    page = client.get(f"/users/{user.id}").get_data(as_text=True)
    assert "Saved the changes" in page and "Ada King" in page
    with inspect_engine.connect() as conn:
        row = conn.execute(text("SELECT name, version, updated_at > created_at FROM users")).one()
    assert tuple(row) == ("Ada King", 2, True)
    actions = audit_actions(inspect_engine, user.id)
    assert [a.action for a in actions] == ["create", "update"]
    assert actions[1].detail == {"changes": {"name": {"old": "Ada Lovelace", "new": "Ada King"}}}


def test_history_is_shown_newest_first(app, client):
    user = make_user(app)
    edit(client, user.id, name="Second", email="ada@example.com", version=1)
    html = client.get(f"/users/{user.id}").get_data(as_text=True)
    history = html[html.index('class="history"'):]
    assert history.index("Updated") < history.index("Created")
    assert "Ada Lovelace" in history and "Second" in history


def test_saving_without_changes_writes_nothing(app, client, inspect_engine):
    user = make_user(app)
    before = table_snapshot(inspect_engine)
    response = edit(client, user.id, name="Ada Lovelace", email="ada@example.com", version=1)
    assert response.status_code == 303
    assert table_snapshot(inspect_engine) == before


def test_stale_version_is_409_showing_what_changed_and_overwrites_nothing(app, client, inspect_engine):
    user = make_user(app)
    assert edit(client, user.id, name="Saved First", email="ada@example.com", version=1).status_code == 303
    before = table_snapshot(inspect_engine)
    response = edit(client, user.id, name="Saved Second", email="ada@example.com", version=1)
    html = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "Someone else saved this user first" in html
    assert "Saved First" in html and "Saved Second" in html
    assert f'href="/users/{user.id}/edit"' in html  # offers to reload
    assert table_snapshot(inspect_engine) == before


def test_conflict_page_can_save_over_the_new_version(app, client, inspect_engine):
    user = make_user(app)
    edit(client, user.id, name="Theirs", email="ada@example.com", version=1)
    conflict = edit(client, user.id, name="Mine", email="ada@example.com", version=1)
    assert 'name="version" value="2"' in conflict.get_data(as_text=True)
    assert edit(client, user.id, name="Mine", email="ada@example.com", version=2).status_code == 303
    with inspect_engine.connect() as conn:
        assert conn.execute(text("SELECT name, version FROM users")).one() == ("Mine", 3)


def test_conflict_page_shows_what_was_read_even_if_the_user_is_deleted_right_after(
    app, client, inspect_engine
):
    """The rollback that ends a stale save expires every object of the session;
    the conflict page must not reload the user from a template (a hidden query,
    an error once the row is gone), only show what the transaction read."""
    user = make_user(app)
    edit(client, user.id, name="Theirs", email="ada@example.com", version=1)
    page = f"/users/{user.id}/edit"
    token = csrf_token(client, page)

    def someone_deletes_the_user(session):
        with inspect_engine.begin() as other:
            other.execute(text("DELETE FROM users WHERE id = :id"), {"id": user.id})

    event.listen(SessionClass, "after_rollback", someone_deletes_the_user, once=True)
    try:
        response = client.post(page, data={"csrf_token": token, "name": "Mine",
                                           "email": "ada@example.com", "version": 1})
    finally:
        if event.contains(SessionClass, "after_rollback", someone_deletes_the_user):
            event.remove(SessionClass, "after_rollback", someone_deletes_the_user)
    html = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "Theirs" in html and 'name="version" value="2"' in html
    with inspect_engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM users")) == 0  # the listener ran


def test_delete_waits_for_a_save_in_progress_and_audits_what_it_saved(app, client, inspect_engine):
    """The delete form carries no version: a save committing meanwhile does not
    make the delete fail, and the audit row records the values it left."""
    user = make_user(app)
    token = csrf_token(client, f"/users/{user.id}")
    statuses = []
    deleter = threading.Thread(target=lambda: statuses.append(
        client.post(f"/users/{user.id}/delete", data={"csrf_token": token}).status_code))
    with inspect_engine.connect() as saver:
        saver.execute(text("UPDATE users SET name = 'Saved Meanwhile', version = version + 1"))
        deleter.start()
        wait_for_a_lock_wait(inspect_engine)  # the delete is queued behind the save
        saver.commit()
    deleter.join()
    assert statuses == [303]
    with inspect_engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM users")) == 0
    *_, (action, detail) = audit_actions(inspect_engine, user.id)
    assert (action, detail["name"]) == ("delete", "Saved Meanwhile")


def wait_for_a_lock_wait(engine, timeout: float = 10.0) -> None:
    """Return once some backend of this database waits for a lock."""
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while not conn.scalar(text(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )):
            conn.rollback()  # a new snapshot of pg_stat_activity next time
            assert time.monotonic() < deadline, "nothing started waiting for a lock"


def test_two_threads_saving_the_same_version_exactly_one_wins(app, inspect_engine):
    user = make_user(app)
    clients = [app.test_client() for _ in range(6)]
    tokens = [csrf_token(c, f"/users/{user.id}/edit") for c in clients]
    barrier = threading.Barrier(len(clients))
    statuses = []

    def save(n):
        barrier.wait()
        response = clients[n].post(
            f"/users/{user.id}/edit",
            data={"csrf_token": tokens[n], "name": f"Writer {n}", "email": "ada@example.com", "version": 1},
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=save, args=(n,)) for n in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [303] + [409] * (len(clients) - 1)
    with inspect_engine.connect() as conn:
        assert conn.scalar(text("SELECT version FROM users")) == 2
    assert [a.action for a in audit_actions(inspect_engine, user.id)] == ["create", "update"]


def test_update_is_refused_by_the_database_when_a_save_slips_in_between(app, inspect_engine):
    """The submitted version matched when the service read the row, but another
    transaction saved before our UPDATE: version_id_col makes the UPDATE match
    no row, and nothing is overwritten."""
    user = make_user(app)

    def another_writer_commits_first(mapper, connection, target):
        with inspect_engine.begin() as other:
            other.execute(text("UPDATE users SET name = 'Other', version = version + 1"))

    event.listen(User, "before_update", another_writer_commits_first, once=True)
    try:
        with app.app_context(), pytest.raises(users.StaleVersion) as caught:
            users.update_user(db.Session(), user.id, 1, UserFields("Mine", "ada@example.com"))
    finally:
        if event.contains(User, "before_update", another_writer_commits_first):
            event.remove(User, "before_update", another_writer_commits_first)
    assert caught.value.current.name == "Other"
    with inspect_engine.connect() as conn:
        assert conn.execute(text("SELECT name, version FROM users")).one() == ("Other", 2)
    assert [a.action for a in audit_actions(inspect_engine, user.id)] == ["create"]


@pytest.mark.parametrize(
    "data, field",
    [
        ({"name": "", "email": "ada@example.com"}, "name"),
        ({"name": "x" * 101, "email": "ada@example.com"}, "name"),
        ({"name": "Ada", "email": "not-an-email"}, "email"),
        ({"name": "Ada\x00", "email": "ada@example.com"}, "name"),
    ],
)
def test_invalid_edit_is_422_and_writes_nothing(app, client, inspect_engine, data, field):
    user = make_user(app)
    before = table_snapshot(inspect_engine)
    response = edit(client, user.id, version=1, **data)
    assert response.status_code == 422
    assert f'id="{field}-error"' in response.get_data(as_text=True)
    assert table_snapshot(inspect_engine) == before


@pytest.mark.parametrize("version", ["", "abc", "0", "99999999999"])
def test_damaged_version_is_400_and_writes_nothing(app, client, inspect_engine, version):
    user = make_user(app)
    before = table_snapshot(inspect_engine)
    response = edit(client, user.id, name="New", email="ada@example.com", version=version)
    assert response.status_code == 400
    assert table_snapshot(inspect_engine) == before


def test_edit_to_a_taken_email_is_409_in_any_case(app, client, inspect_engine):
    make_user(app, "Other", "other@example.com")
    user = make_user(app)
    before = table_snapshot(inspect_engine)
    response = edit(client, user.id, name="Ada", email="OTHER@example.com", version=1)
    assert response.status_code == 409
    assert "already exists" in response.get_data(as_text=True)
    assert table_snapshot(inspect_engine) == before


def test_changing_only_the_letter_case_of_ones_own_email_is_allowed(app, client):
    user = make_user(app)
    assert edit(client, user.id, name="Ada Lovelace", email="ADA@example.com", version=1).status_code == 303


# Ids no user has: unused, impossible (0, beyond bigint), not ASCII digits.
UNKNOWN_IDS = ["999999", "0", "0000", "9223372036854775808", "99999999999999999999999", "\uff10"]


@pytest.mark.parametrize("user_id", UNKNOWN_IDS)
def test_editing_an_unknown_user_is_404(app, client, inspect_engine, user_id):
    user = make_user(app)
    before = table_snapshot(inspect_engine)
    assert client.get(f"/users/{user_id}/edit").status_code == 404
    page = f"/users/{user.id}/edit"
    token = csrf_token(client, page)
    for data in ({"name": "New", "email": "n@example.com", "version": 1}, {"name": "", "version": 1}):
        response = client.post(f"/users/{user_id}/edit", data={"csrf_token": token, **data})
        assert response.status_code == 404
    assert table_snapshot(inspect_engine) == before


def test_delete_redirects_flashes_and_keeps_the_history(app, client, inspect_engine):
    user = make_user(app)
    edit(client, user.id, name="Renamed", email="ada@example.com", version=1)
    response = submit(client, f"/users/{user.id}/delete", {}, page=f"/users/{user.id}")
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/users")
    assert "was deleted" in client.get("/users").get_data(as_text=True)
    assert client.get(f"/users/{user.id}").status_code == 404
    assert row_counts(inspect_engine) == (0, 3)
    actions = audit_actions(inspect_engine, user.id)
    assert [a.action for a in actions] == ["create", "update", "delete"]
    assert actions[-1].detail == {"name": "Renamed", "email": "ada@example.com"}


def test_detail_page_offers_delete_with_a_confirmation_step(app, client):
    user = make_user(app)
    html = client.get(f"/users/{user.id}").get_data(as_text=True)
    assert '<details class="danger-zone">' in html
    assert f'action="/users/{user.id}/delete"' in html and "data-confirm=" in html


@pytest.mark.parametrize("user_id", UNKNOWN_IDS)
def test_deleting_an_unknown_user_is_404_and_writes_nothing(app, client, inspect_engine, user_id):
    make_user(app)
    before = table_snapshot(inspect_engine)
    response = submit(client, f"/users/{user_id}/delete", {})
    assert response.status_code == 404
    assert table_snapshot(inspect_engine) == before


def test_delete_without_csrf_is_400_and_writes_nothing(app, client, inspect_engine):
    user = make_user(app)
    before = table_snapshot(inspect_engine)
    assert client.post(f"/users/{user.id}/delete").status_code == 400
    assert table_snapshot(inspect_engine) == before


def test_audit_rows_equal_the_successful_changes(app, client, inspect_engine):
    ids = [make_user(app, f"U{n}", f"u{n}@example.com").id for n in range(3)]
    edit(client, ids[0], name="U0b", email="u0@example.com", version=1)   # ok
    edit(client, ids[0], name="U0c", email="u0@example.com", version=1)   # stale
    edit(client, ids[1], name="", email="u1@example.com", version=1)      # invalid
    edit(client, ids[1], name="U1", email="U2@example.com", version=1)    # taken
    submit(client, f"/users/{ids[2]}/delete", {})                         # ok
    submit(client, f"/users/{ids[2]}/delete", {})                         # 404
    with inspect_engine.connect() as conn:
        counts = dict(conn.execute(text("SELECT action, count(*) FROM audit_events GROUP BY action")).all())
    assert counts == {"create": 3, "update": 1, "delete": 1}


def test_concurrent_edit_and_delete_never_500(app, inspect_engine):
    for round_ in range(5):
        user = make_user(app, f"R{round_}", f"r{round_}@example.com")
        editor, deleter = app.test_client(), app.test_client()
        edit_token = csrf_token(editor, f"/users/{user.id}/edit")
        delete_token = csrf_token(deleter, f"/users/{user.id}")
        barrier = threading.Barrier(2)
        statuses = {}

        def do_edit():
            barrier.wait()
            statuses["edit"] = editor.post(
                f"/users/{user.id}/edit",
                data={"csrf_token": edit_token, "name": "Edited", "email": user.email, "version": 1},
            ).status_code

        def do_delete():
            barrier.wait()
            statuses["delete"] = deleter.post(
                f"/users/{user.id}/delete", data={"csrf_token": delete_token}
            ).status_code

        threads = [threading.Thread(target=do_edit), threading.Thread(target=do_delete)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert statuses["edit"] in (303, 404)
        assert statuses["delete"] == 303  # the delete form has no version to be stale
        with inspect_engine.connect() as conn:
            exists = conn.scalar(text("SELECT count(*) FROM users WHERE id = :id"), {"id": user.id})
            actions = [a for (a,) in conn.execute(
                text("SELECT action FROM audit_events WHERE user_id = :id ORDER BY id"), {"id": user.id})]
        # Users and audit rows agree, whoever won.
        assert actions[0] == "create"
        assert ("delete" in actions) == (not exists) == (statuses["delete"] == 303)
        assert ("update" in actions) == (statuses["edit"] == 303)
