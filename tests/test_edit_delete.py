"""Editing with optimistic locking, deleting, and the audit trail."""

from __future__ import annotations

import re
import threading

import pytest
from sqlalchemy import event, orm, text

from myapp import db, users
from myapp.models import User
from myapp.validation import UserFields
from tests.support.database import assert_nothing_written
from tests.support.forms import csrf_token, submit
from tests.support.sampling import wait_for_a_lock_wait


def edit(client, user_id, **data):
    page = f"/users/{user_id}/edit"
    return submit(client, page, data, page=page)


def test_edit_form_carries_the_current_values_and_version(client, make_user):
    user = make_user()
    html = client.get(f"/users/{user.id}/edit").get_data(as_text=True)
    assert 'value="Ada Lovelace"' in html and 'value="ada@example.com"' in html
    assert re.search(r'<input id="version" name="version" type="hidden" value="1">', html)
    assert 'name="csrf_token"' in html


@pytest.mark.commits  # now() must move between the two transactions
def test_edit_saves_bumps_the_version_and_records_the_change(client, tables, make_user):
    user = make_user()
    response = edit(client, user.id, name="Ada King", email="ada@example.com", version=1)
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/users/{user.id}")
    page = client.get(f"/users/{user.id}").get_data(as_text=True)
    assert "Saved the changes" in page and "Ada King" in page
    with tables.connect() as conn:
        row = conn.execute(text("SELECT name, version, updated_at > created_at FROM users")).one()
    assert tuple(row) == ("Ada King", 2, True)
    actions = tables.audit(user.id)
    assert [a.action for a in actions] == ["create", "update"]
    assert actions[1].detail == {"changes": {"name": {"old": "Ada Lovelace", "new": "Ada King"}}}


def test_history_is_shown_newest_first(client, make_user):
    user = make_user()
    edit(client, user.id, name="Second", email="ada@example.com", version=1)
    html = client.get(f"/users/{user.id}").get_data(as_text=True)
    history = html[html.index('class="history"'):]
    assert history.index("Updated") < history.index("Created")
    assert "Ada Lovelace" in history and "Second" in history


def test_saving_without_changes_writes_nothing(client, tables, make_user):
    user = make_user()
    with assert_nothing_written(tables):
        response = edit(client, user.id, name="Ada Lovelace", email="ada@example.com", version=1)
        assert response.status_code == 303


def test_stale_version_is_409_showing_what_changed_and_overwrites_nothing(
    client, tables, make_user
):
    user = make_user()
    assert edit(client, user.id, name="Saved First", email="ada@example.com", version=1).status_code == 303
    with assert_nothing_written(tables):
        response = edit(client, user.id, name="Saved Second", email="ada@example.com", version=1)
        html = response.get_data(as_text=True)
        assert response.status_code == 409
        assert "Someone else saved this user first" in html
        assert "Saved First" in html and "Saved Second" in html
        assert f'href="/users/{user.id}/edit"' in html  # offers to reload


def test_conflict_page_can_save_over_the_new_version(client, tables, make_user):
    user = make_user()
    edit(client, user.id, name="Theirs", email="ada@example.com", version=1)
    conflict = edit(client, user.id, name="Mine", email="ada@example.com", version=1)
    assert 'name="version" value="2"' in conflict.get_data(as_text=True)
    assert edit(client, user.id, name="Mine", email="ada@example.com", version=2).status_code == 303
    with tables.connect() as conn:
        assert conn.execute(text("SELECT name, version FROM users")).one() == ("Mine", 3)


@pytest.mark.commits  # another connection deletes the user
def test_conflict_page_shows_what_was_read_even_if_the_user_is_deleted_right_after(
    client, inspect_engine, tables, make_user
):
    """The rollback that ends a stale save expires every object of the session;
    the conflict page must not reload the user from a template (a hidden query,
    an error once the row is gone), only show what the transaction read."""
    user = make_user()
    edit(client, user.id, name="Theirs", email="ada@example.com", version=1)
    page = f"/users/{user.id}/edit"
    token = csrf_token(client, page)

    def someone_deletes_the_user(session):
        with inspect_engine.begin() as other:
            other.execute(text("DELETE FROM users WHERE id = :id"), {"id": user.id})

    event.listen(orm.Session, "after_rollback", someone_deletes_the_user, once=True)
    try:
        response = client.post(page, data={"csrf_token": token, "name": "Mine",
                                           "email": "ada@example.com", "version": 1})
    finally:
        if event.contains(orm.Session, "after_rollback", someone_deletes_the_user):
            event.remove(orm.Session, "after_rollback", someone_deletes_the_user)
    html = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "Theirs" in html and 'name="version" value="2"' in html
    with tables.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM users")) == 0  # the listener ran


@pytest.mark.commits  # another connection saves meanwhile
def test_delete_waits_for_a_save_in_progress_and_audits_what_it_saved(
    client, inspect_engine, tables, make_user
):
    """The delete form carries no version: a save committing meanwhile does not
    make the delete fail, and the audit row records the values it left."""
    user = make_user()
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
    with tables.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM users")) == 0
    *_, (action, detail) = tables.audit(user.id)
    assert (action, detail["name"]) == ("delete", "Saved Meanwhile")


@pytest.mark.commits  # threads: each request on a connection of its own
def test_two_threads_saving_the_same_version_exactly_one_wins(new_client, tables, make_user):
    user = make_user()
    clients = [new_client() for _ in range(6)]
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
    with tables.connect() as conn:
        assert conn.scalar(text("SELECT version FROM users")) == 2
    assert [a.action for a in tables.audit(user.id)] == ["create", "update"]


@pytest.mark.commits  # another connection saves meanwhile
def test_update_is_refused_by_the_database_when_a_save_slips_in_between(
    app, inspect_engine, tables, make_user
):
    """The submitted version matched when the service read the row, but another
    transaction saved before our UPDATE: version_id_col makes the UPDATE match
    no row, and nothing is overwritten."""
    user = make_user()

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
    with tables.connect() as conn:
        assert conn.execute(text("SELECT name, version FROM users")).one() == ("Other", 2)
    assert [a.action for a in tables.audit(user.id)] == ["create"]


@pytest.mark.parametrize(
    "data, field",
    [
        ({"name": "", "email": "ada@example.com"}, "name"),
        ({"name": "x" * 101, "email": "ada@example.com"}, "name"),
        ({"name": "Ada", "email": "not-an-email"}, "email"),
        ({"name": "Ada\x00", "email": "ada@example.com"}, "name"),
    ],
)
def test_invalid_edit_is_422_and_writes_nothing(client, data, field, tables, make_user):
    user = make_user()
    with assert_nothing_written(tables):
        response = edit(client, user.id, version=1, **data)
        assert response.status_code == 422
        assert f'id="{field}-error"' in response.get_data(as_text=True)


@pytest.mark.parametrize("version", ["", "abc", "0", "99999999999"])
def test_damaged_version_is_400_and_writes_nothing(client, version, tables, make_user):
    user = make_user()
    with assert_nothing_written(tables):
        response = edit(client, user.id, name="New", email="ada@example.com", version=version)
        assert response.status_code == 400


def test_edit_to_a_taken_email_is_409_in_any_case(client, tables, make_user):
    make_user("Other", "other@example.com")
    user = make_user()
    with assert_nothing_written(tables):
        response = edit(client, user.id, name="Ada", email="OTHER@example.com", version=1)
        assert response.status_code == 409
        assert "already exists" in response.get_data(as_text=True)


def test_changing_only_the_letter_case_of_ones_own_email_is_allowed(client, make_user):
    user = make_user()
    assert edit(client, user.id, name="Ada Lovelace", email="ADA@example.com", version=1).status_code == 303


# Ids no user has: unused, impossible (0, beyond bigint), not ASCII digits.
UNKNOWN_IDS = ["999999", "0", "0000", "9223372036854775808", "99999999999999999999999", "\uff10"]


@pytest.mark.parametrize("user_id", UNKNOWN_IDS)
def test_editing_an_unknown_user_is_404(client, user_id, tables, make_user):
    user = make_user()
    with assert_nothing_written(tables):
        assert client.get(f"/users/{user_id}/edit").status_code == 404
        page = f"/users/{user.id}/edit"
        token = csrf_token(client, page)
        for data in ({"name": "New", "email": "n@example.com", "version": 1}, {"name": "", "version": 1}):
            response = client.post(f"/users/{user_id}/edit", data={"csrf_token": token, **data})
            assert response.status_code == 404


def test_delete_redirects_flashes_and_keeps_the_history(client, tables, make_user):
    user = make_user()
    edit(client, user.id, name="Renamed", email="ada@example.com", version=1)
    response = submit(client, f"/users/{user.id}/delete", {}, page=f"/users/{user.id}")
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/users")
    assert "was deleted" in client.get("/users").get_data(as_text=True)
    assert client.get(f"/users/{user.id}").status_code == 404
    assert tables.counts() == (0, 3)
    actions = tables.audit(user.id)
    assert [a.action for a in actions] == ["create", "update", "delete"]
    assert actions[-1].detail == {"name": "Renamed", "email": "ada@example.com"}


def test_detail_page_offers_delete_with_a_confirmation_step(client, make_user):
    user = make_user()
    html = client.get(f"/users/{user.id}").get_data(as_text=True)
    assert '<details class="danger-zone">' in html
    assert f'action="/users/{user.id}/delete"' in html and "data-confirm=" in html


@pytest.mark.parametrize("user_id", UNKNOWN_IDS)
def test_deleting_an_unknown_user_is_404_and_writes_nothing(client, user_id, tables, make_user):
    make_user()
    with assert_nothing_written(tables):
        response = submit(client, f"/users/{user_id}/delete", {})
        assert response.status_code == 404


def test_delete_without_csrf_is_400_and_writes_nothing(client, tables, make_user):
    user = make_user()
    with assert_nothing_written(tables):
        assert client.post(f"/users/{user.id}/delete").status_code == 400


def test_audit_rows_equal_the_successful_changes(client, tables, make_user):
    ids = [make_user(f"U{n}", f"u{n}@example.com").id for n in range(3)]
    edit(client, ids[0], name="U0b", email="u0@example.com", version=1)   # ok
    edit(client, ids[0], name="U0c", email="u0@example.com", version=1)   # stale
    edit(client, ids[1], name="", email="u1@example.com", version=1)      # invalid
    edit(client, ids[1], name="U1", email="U2@example.com", version=1)    # taken
    submit(client, f"/users/{ids[2]}/delete", {})                         # ok
    submit(client, f"/users/{ids[2]}/delete", {})                         # 404
    with tables.connect() as conn:
        counts = dict(conn.execute(text("SELECT action, count(*) FROM audit_events GROUP BY action")).all())
    assert counts == {"create": 3, "update": 1, "delete": 1}


@pytest.mark.commits  # threads: each request on a connection of its own
def test_concurrent_edit_and_delete_never_500(new_client, tables, make_user):
    for round_ in range(5):
        user = make_user(f"R{round_}", f"r{round_}@example.com")
        editor, deleter = new_client(), new_client()
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
        with tables.connect() as conn:
            exists = conn.scalar(text("SELECT count(*) FROM users WHERE id = :id"), {"id": user.id})
            actions = [a for (a,) in conn.execute(
                text("SELECT action FROM audit_events WHERE user_id = :id ORDER BY id"), {"id": user.id})]
        # Users and audit rows agree, whoever won.
        assert actions[0] == "create"
        assert ("delete" in actions) == (not exists) == (statuses["delete"] == 303)
        assert ("update" in actions) == (statuses["edit"] == 303)
