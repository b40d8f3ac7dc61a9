"""Signing in and out: the login form, session fixation, revocation, safe
``next``, throttling, timing, the loader's snapshot, what each role sees,
and what the log says (never a password)."""

from __future__ import annotations

import logging
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from argon2 import PasswordHasher
from sqlalchemy import event, text

from myapp import db
from myapp.auth import signin
from myapp.auth.passwords import needs_rehash, verify_password
from myapp.models import Role
from tests.support import accounts
from tests.support.database import assert_nothing_written
from tests.support.forms import csrf_token, extract_csrf_token, submit

EDITOR = accounts.EMAILS[Role.EDITOR]


def sign_in(client, email=EDITOR, password=accounts.PASSWORD, next_path=None):
    query = f"?next={next_path}" if next_path is not None else ""
    return submit(client, f"/login{query}", {"email": email, "password": password}, page="/login")


def session_cookie(client) -> str | None:
    cookie = client.get_cookie("session")
    return cookie.value if cookie else None


def replay(anonymous_client, cookie: str):
    """A fresh client presenting an old session cookie."""
    anonymous_client.set_cookie("session", cookie)
    return anonymous_client.get("/users")


def test_login_form_has_the_contract_fields(anonymous_client):
    html = anonymous_client.get("/login").get_data(as_text=True)
    for field in ('name="email"', 'name="password"', 'name="csrf_token"'):
        assert field in html
    assert 'action="/login"' in html and 'method="post"' in html


def test_right_password_signs_in_and_goes_to_the_list(anonymous_client):
    response = sign_in(anonymous_client)
    assert response.status_code == 303
    assert response.headers["Location"] == "/users"
    page = anonymous_client.get("/users")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert EDITOR in html and ">editor<" in html  # the nav says who, and the role


def test_email_letter_case_does_not_matter(anonymous_client):
    assert sign_in(anonymous_client, email=EDITOR.upper()).status_code == 303


@pytest.mark.parametrize("email, password", [
    (EDITOR, "wrong password!!"),
    ("nobody@example.com", accounts.PASSWORD),
])
def test_wrong_email_or_password_is_401_with_one_message(anonymous_client, tables,
                                                         email, password):
    before = tables.snapshot()
    response = sign_in(anonymous_client, email=email, password=password)
    assert response.status_code == 401
    html = response.get_data(as_text=True)
    assert signin.SignInFailed.message in html
    assert anonymous_client.get("/users").status_code == 303  # still nobody
    after = tables.snapshot()
    # The one thing written is the failure the throttle counts.
    assert {table: rows for table, rows in after.items() if table != "login_failures"} == {
        table: rows for table, rows in before.items() if table != "login_failures"}
    assert [row[1] for row in after["login_failures"]] == [email.lower()]


def test_a_disabled_account_cannot_sign_in(anonymous_client, tables):
    tables.write("UPDATE accounts SET disabled = true WHERE email = :e", {"e": EDITOR})
    response = sign_in(anonymous_client)
    assert response.status_code == 401
    assert signin.SignInFailed.message in response.get_data(as_text=True)


def test_a_hash_with_outdated_parameters_is_upgraded_at_sign_in(anonymous_client, tables):
    weaker = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    tables.write("UPDATE accounts SET password_hash = :h WHERE email = :e",
                 {"h": weaker.hash(accounts.PASSWORD), "e": EDITOR})
    assert sign_in(anonymous_client).status_code == 303
    stored = tables.scalar("SELECT password_hash FROM accounts WHERE email = :e", {"e": EDITOR})
    assert not needs_rehash(stored) and verify_password(stored, accounts.PASSWORD)


def test_blank_fields_are_422(anonymous_client, tables):
    with assert_nothing_written(tables):
        response = sign_in(anonymous_client, email="", password="")
    assert response.status_code == 422


def test_login_without_csrf_token_is_400(anonymous_client, tables):
    with assert_nothing_written(tables):
        response = anonymous_client.post("/login", data={"email": EDITOR,
                                                         "password": accounts.PASSWORD})
    assert response.status_code == 400


# --- session fixation and revocation ----------------------------------------------


def test_signing_in_issues_a_new_session_cookie(new_client):
    client = new_client(None)
    client.get("/login")
    planted = session_cookie(client)  # what a visitor had before signing in
    assert planted
    sign_in(client)
    assert session_cookie(client) not in (None, planted)
    # The cookie from before signing in still signs nobody in.
    assert replay(new_client(None), planted).status_code == 303


def test_the_session_from_before_sign_in_is_not_carried_over(anonymous_client):
    with anonymous_client.session_transaction() as session:
        session["planted"] = "by someone else"
    sign_in(anonymous_client)
    with anonymous_client.session_transaction() as session:
        assert "planted" not in session


def test_pages_after_sign_in_leave_the_cookie_alone(new_client, tables):
    """The sign-in's cookie already carries the CSRF secret: pages opened at
    once after signing in write no cookie, and a form from any of them
    submits (myapp/auth/views.py, start_signed_in_session)."""
    client = new_client(None)
    sign_in(client)
    signed_in = session_cookie(client)
    pages = [client.get("/users/new") for _ in range(2)]
    assert all("Set-Cookie" not in page.headers for page in pages)
    token = extract_csrf_token(pages[0].get_data(as_text=True))
    client.set_cookie("session", signed_in)  # as each tab would still send it
    created = client.post("/users", data={"csrf_token": token, "name": "Tab",
                                          "email": "tab@example.com"})
    assert created.status_code == 303
    assert tables.counts() == (1, 1)


def test_logout_is_a_post_that_voids_the_old_cookie(new_client):
    client = new_client(None)
    sign_in(client)
    signed_in = session_cookie(client)
    assert replay(new_client(None), signed_in).status_code == 200
    response = submit(client, "/logout", {}, page="/users")
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert client.get("/users").status_code == 303
    assert replay(new_client(None), signed_in).status_code == 303


def _admin_changes_editor(new_client, path: str, data: dict):
    admin = new_client(Role.ADMIN)
    page = f"/accounts/{accounts.IDS[Role.EDITOR]}"
    response = submit(admin, f"{page}/{path}", data, page=page)
    assert response.status_code == 303, response.get_data(as_text=True)


@pytest.mark.parametrize("path, data", [
    ("password", {"password": "a brand new password", "confirm": "a brand new password"}),
    ("disable", {}),
    ("role", {"role": "viewer"}),
], ids=["password-change", "disable", "role-change"])
def test_old_cookies_sign_nobody_in_after(new_client, path, data):
    client = new_client(None)
    sign_in(client)
    cookie = session_cookie(client)
    _admin_changes_editor(new_client, path, data)
    assert client.get("/users").status_code == 303
    assert replay(new_client(None), cookie).status_code == 303


def test_the_new_password_works_and_the_old_one_does_not(new_client):
    _admin_changes_editor(new_client, "password",
                          {"password": "a brand new password", "confirm": "a brand new password"})
    assert sign_in(new_client(None)).status_code == 401
    assert sign_in(new_client(None), password="a brand new password").status_code == 303


def test_changing_your_own_password_keeps_you_signed_in_here_only(new_client):
    admin, elsewhere = new_client(None), new_client(None)
    admin_email = accounts.EMAILS[Role.ADMIN]
    sign_in(admin, email=admin_email)
    sign_in(elsewhere, email=admin_email)
    page = f"/accounts/{accounts.IDS[Role.ADMIN]}"
    response = submit(admin, f"{page}/password",
                      {"password": "my own new password", "confirm": "my own new password"}, page=page)
    assert response.status_code == 303
    assert admin.get("/accounts").status_code == 200
    assert elsewhere.get("/accounts").status_code == 303


# --- next ---------------------------------------------------------------------------


@pytest.mark.parametrize("next_path, goes_to", [
    ("/users/7?q=ada", "/users/7?q=ada"),
    ("/accounts", "/accounts"),
    ("//evil.example", "/users"),
    ("https://evil.example", "/users"),
    ("https://evil.example/users", "/users"),
    ("/\\evil.example", "/users"),
    ("/\t/evil.example", "/users"),  # browsers drop the tab: //evil.example
    ("javascript:alert(1)", "/users"),
    ("", "/users"),
])
def test_next_goes_only_to_paths_on_this_site(anonymous_client, next_path, goes_to):
    # As the form carries it: the login page puts ?next= into a hidden field.
    anonymous_client.get("/login", query_string={"next": next_path})
    token = csrf_token(anonymous_client, "/login")
    response = anonymous_client.post("/login", data={
        "csrf_token": token, "email": EDITOR, "password": accounts.PASSWORD, "next": next_path})
    assert response.status_code == 303
    assert response.headers["Location"] == goes_to


def test_the_login_page_keeps_next_for_the_form(anonymous_client):
    response = anonymous_client.get("/users/5/edit")
    assert response.status_code == 303
    login_page = anonymous_client.get(response.headers["Location"])
    assert 'name="next" type="hidden" value="/users/5/edit"' in login_page.get_data(as_text=True)


# --- throttling ---------------------------------------------------------------------


def test_more_than_ten_failures_lock_the_email_for_the_window(new_client, tables, caplog):
    caplog.set_level(logging.INFO, logger="myapp")
    client = new_client(None)
    for _ in range(signin.MAX_FAILURES):
        assert sign_in(client, password="not the password").status_code == 401
    # Locked: even the right password is not checked now.
    with assert_nothing_written(tables):
        locked = sign_in(client)
    assert locked.status_code == 429
    assert locked.headers["Retry-After"] == str(15 * 60)
    assert signin.SignInThrottled.message in locked.get_data(as_text=True)
    # Another address is not affected, nor another letter case of the same one less so.
    assert sign_in(new_client(None), email=accounts.EMAILS[Role.ADMIN]).status_code == 303
    assert sign_in(new_client(None), email=EDITOR.upper()).status_code == 429
    # Once the failures are older than the window, the right password works again.
    tables.write("UPDATE login_failures SET at = at - interval '15 minutes 1 second'")
    assert sign_in(new_client(None)).status_code == 303
    log = caplog.text
    assert "sign-in failed" in log and "sign-in locked" in log and "too many failures" in log
    assert EDITOR in log and accounts.PASSWORD not in log and "not the password" not in log


@pytest.mark.commits  # threads: each request on a connection of its own
def test_simultaneous_guesses_cannot_slip_past_the_count(app, new_client, tables):
    """Attempts for one email take turns (an advisory lock), so guesses sent
    together are counted one after another: never more than ten checked."""
    already = signin.MAX_FAILURES - 3
    for _ in range(already):
        sign_in(new_client(None), password="not the password")
    together = app.config["DB_POOL_SIZE"]  # one connection each, as in a gthread worker
    clients = [new_client(None) for _ in range(together)]
    tokens = [csrf_token(client, "/login") for client in clients]
    barrier = threading.Barrier(together)

    def guess(n):
        barrier.wait()
        return clients[n].post("/login", data={"csrf_token": tokens[n], "email": EDITOR,
                                               "password": f"guess number {n}"}).status_code

    with ThreadPoolExecutor(together) as pool:
        statuses = sorted(pool.map(guess, range(together)))
    assert statuses == [401] * 3 + [429] * (together - 3)
    assert tables.scalar("SELECT count(*) FROM login_failures") == signin.MAX_FAILURES


def test_unknown_emails_are_throttled_too(new_client):
    for _ in range(signin.MAX_FAILURES):
        assert sign_in(new_client(None), email="ghost@example.com").status_code == 401
    assert sign_in(new_client(None), email="ghost@example.com").status_code == 429


def test_success_clears_the_failures(new_client, tables):
    for _ in range(signin.MAX_FAILURES - 1):
        sign_in(new_client(None), password="not the password")
    assert sign_in(new_client(None)).status_code == 303
    assert tables.scalar("SELECT count(*) FROM login_failures") == 0


def test_expired_failures_are_pruned(new_client, tables):
    sign_in(new_client(None), email="old@example.com", password="x" * 12)
    tables.write("UPDATE login_failures SET at = at - interval '1 hour'")
    sign_in(new_client(None), email="new@example.com", password="x" * 12)
    assert [row[1] for row in tables.snapshot()["login_failures"]] == ["new@example.com"]


def test_an_unknown_email_takes_as_long_as_a_known_one(new_client):
    """Generous bounds: a missing dummy hash would make unknown addresses
    answer in about a millisecond, fifty times faster than a known one."""
    timings = {"known": [], "unknown": []}
    for round_ in range(7):
        for kind, email in (("known", EDITOR), ("unknown", f"ghost{round_}@example.com")):
            client = new_client(None)
            token = csrf_token(client, "/login")
            started = time.perf_counter()
            response = client.post("/login", data={"csrf_token": token, "email": email,
                                                   "password": "not the password"})
            timings[kind].append(time.perf_counter() - started)
            assert response.status_code == 401
    known, unknown = (statistics.median(timings[kind]) for kind in ("known", "unknown"))
    assert known / 3 < unknown < known * 3, timings


# --- the loader and what each role sees ----------------------------------------------


def test_the_account_is_read_once_per_request_even_after_a_rollback(client, make_user):
    """A 409 rolls the request's transaction back, which expires every ORM
    object of the session; the page after it still shows who is signed in,
    from the loader's snapshot, with no second read."""
    make_user(email="taken@example.com")
    token = csrf_token(client)
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine(), "before_cursor_execute", record)
    try:
        response = client.post("/users", data={"csrf_token": token, "name": "Again",
                                               "email": "taken@example.com"})
    finally:
        event.remove(db.engine(), "before_cursor_execute", record)
    assert response.status_code == 409
    assert EDITOR in response.get_data(as_text=True)
    assert sum("FROM accounts" in statement for statement in statements) == 1


def test_viewers_see_no_write_buttons_and_editors_do(new_client, make_user):
    user = make_user()
    viewer, editor = new_client(Role.VIEWER), new_client(Role.EDITOR)
    for page in ("/users", f"/users/{user.id}"):
        viewer_html = viewer.get(page).get_data(as_text=True)
        editor_html = editor.get(page).get_data(as_text=True)
        for write in ('href="/users/new"', 'href="/users/import"', f'/users/{user.id}/edit"',
                      f'/users/{user.id}/delete"'):
            assert write not in viewer_html, (page, write)
        assert 'href="/users/new"' in editor_html
    assert f'/users/{user.id}/delete"' in editor.get(f"/users/{user.id}").get_data(as_text=True)
    assert 'href="/accounts"' not in editor.get("/users").get_data(as_text=True)
    assert 'href="/accounts"' in new_client(Role.ADMIN).get("/users").get_data(as_text=True)


def test_the_history_names_the_account_that_made_each_change(client, tables):
    response = submit(client, "/users", {"name": "Audited", "email": "audited@example.com"})
    user_path = response.headers["Location"]
    with tables.connect() as conn:
        actors = conn.execute(text("SELECT action, actor_id FROM audit_events")).all()
    assert actors == [("create", accounts.IDS[Role.EDITOR])]
    html = client.get(user_path).get_data(as_text=True)
    assert f"by {EDITOR}" in html


def test_changes_from_the_command_line_say_so_in_the_history(client, make_user):
    user = make_user()  # through the service, with no actor
    assert "by the command line" in client.get(f"/users/{user.id}").get_data(as_text=True)


def test_a_cookie_in_an_old_format_signs_nobody_in(anonymous_client):
    with anonymous_client.session_transaction() as session:
        session["_user_id"] = "2"
    assert anonymous_client.get("/users").status_code == 303
