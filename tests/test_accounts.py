"""Managing accounts: the admin pages, never the last admin, and the
``create-account`` and ``create-first-admin`` commands."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from myapp import db
from myapp.auth import accounts as account_services
from myapp.auth.passwords import verify_password
from myapp.models import Role
from tests.support import accounts
from tests.support.database import assert_nothing_written
from tests.support.forms import submit

NEW_PASSWORD = "a long enough password"
ADMIN_ID = accounts.IDS[Role.ADMIN]


def account_rows(tables):
    with tables.connect() as conn:
        return conn.execute(text(
            "SELECT email, role, disabled, session_version FROM accounts ORDER BY id")).all()


def create(admin, email="new@example.com", role="editor", password=NEW_PASSWORD, confirm=None):
    return submit(admin, "/accounts", {"email": email, "role": role, "password": password,
                                       "confirm": password if confirm is None else confirm},
                  page="/accounts/new")


# --- the pages -------------------------------------------------------------------------


def test_admin_lists_and_creates_accounts(new_client, tables):
    admin = new_client(Role.ADMIN)
    listing = admin.get("/accounts").get_data(as_text=True)
    for email in accounts.EMAILS.values():
        assert email in listing
    response = create(admin, email=" New@Example.com ")
    assert response.status_code == 303
    page = admin.get(response.headers["Location"]).get_data(as_text=True)
    assert "New@Example.com" in page and "was created" in page
    with tables.connect() as conn:
        stored = conn.execute(text(
            "SELECT role, password_hash FROM accounts WHERE email = 'New@Example.com'")).one()
    assert stored.role == "editor"
    assert stored.password_hash.startswith("$argon2id$") and NEW_PASSWORD not in stored.password_hash
    assert verify_password(stored.password_hash, NEW_PASSWORD)


@pytest.mark.parametrize("fields, status, message", [
    ({"email": "not-an-email"}, 422, "valid email address"),
    ({"password": "short"}, 422, "at least 12 characters"),
    ({"confirm": "something else!"}, 422, "The two passwords differ."),
    ({"role": "superuser"}, 422, "Not a valid choice"),
    ({"email": "EDITOR@example.com"}, 409, account_services.AccountEmailTaken.message),
])
def test_bad_new_accounts_are_refused_and_write_nothing(new_client, tables, fields,
                                                        status, message):
    admin = new_client(Role.ADMIN)
    admin.get("/accounts/new")  # the form's CSRF token in the session first
    with assert_nothing_written(tables):
        response = create(admin, **fields)
    assert response.status_code == status
    assert message in response.get_data(as_text=True)


def test_role_change_and_disable_and_enable(new_client, tables):
    admin = new_client(Role.ADMIN)
    page = f"/accounts/{accounts.IDS[Role.VIEWER]}"
    assert submit(admin, f"{page}/role", {"role": "editor"}, page=page).status_code == 303
    assert submit(admin, f"{page}/disable", {}, page=page).status_code == 303
    assert account_rows(tables)[0] == ("viewer@example.com", "editor", True, 3)
    assert submit(admin, f"{page}/enable", {}, page=page).status_code == 303
    assert account_rows(tables)[0] == ("viewer@example.com", "editor", False, 3)


def test_an_unknown_account_is_404(new_client, tables):
    admin = new_client(Role.ADMIN)
    admin.get("/accounts")
    with assert_nothing_written(tables):
        assert admin.get("/accounts/99").status_code == 404
        for action, data in (("role", {"role": "viewer"}), ("disable", {}), ("enable", {}),
                             ("password", {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})):
            response = submit(admin, f"/accounts/99/{action}", data, page="/accounts")
            assert response.status_code == 404, action


@pytest.mark.parametrize("action, data", [("role", {"role": "editor"}), ("disable", {})])
def test_the_last_admin_cannot_be_demoted_or_disabled(new_client, tables, action, data):
    admin = new_client(Role.ADMIN)
    page = f"/accounts/{ADMIN_ID}"
    admin.get(page)
    with assert_nothing_written(tables):
        response = submit(admin, f"{page}/{action}", data, page=page)
    assert response.status_code == 409
    assert account_services.LastAdmin.message in response.get_data(as_text=True)
    assert admin.get("/accounts").status_code == 200  # still signed in, still admin


def test_with_a_second_admin_the_first_may_step_down(new_client):
    admin = new_client(Role.ADMIN)
    second = f"/accounts/{accounts.IDS[Role.EDITOR]}"
    assert submit(admin, f"{second}/role", {"role": "admin"}, page=second).status_code == 303
    page = f"/accounts/{ADMIN_ID}"
    response = submit(admin, f"{page}/role", {"role": "viewer"}, page=page)
    assert response.status_code == 303 and response.headers["Location"] == "/users"
    assert "role is now viewer" in admin.get("/users").get_data(as_text=True)
    assert admin.get("/accounts").status_code == 403  # signed in still, as a viewer now
    assert admin.get("/users").status_code == 200


def test_disabling_your_own_account_signs_you_out(new_client):
    admin = new_client(Role.ADMIN)
    second = f"/accounts/{accounts.IDS[Role.EDITOR]}"
    assert submit(admin, f"{second}/role", {"role": "admin"}, page=second).status_code == 303
    page = f"/accounts/{ADMIN_ID}"
    response = submit(admin, f"{page}/disable", {}, page=page)
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert admin.get("/users").status_code == 303


@pytest.mark.commits  # threads: each with a connection of its own
def test_two_admins_demoting_each_other_at_once_leave_one_admin(app, tables):
    tables.write("UPDATE accounts SET role = 'admin' WHERE email = 'editor@example.com'")
    ids = [ADMIN_ID, accounts.IDS[Role.EDITOR]]
    barrier = threading.Barrier(2)
    outcomes = []

    def demote(account_id):
        with app.app_context():
            barrier.wait()
            try:
                account_services.change_role(db.Session(), account_id, Role.VIEWER)
                outcomes.append("demoted")
            except account_services.LastAdmin:
                outcomes.append("refused")

    threads = [threading.Thread(target=demote, args=(account_id,)) for account_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["demoted", "refused"]
    assert tables.scalar("SELECT count(*) FROM accounts WHERE role = 'admin'") == 1


# --- the commands ------------------------------------------------------------------------


def test_create_account_reads_the_password_from_stdin(runner, tables):
    result = runner.invoke(args=["create-account", "Ops@Example.com", "--role", "viewer",
                                 "--password-stdin"], input=NEW_PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert "Created account Ops@Example.com (viewer)" in result.stdout
    stored = tables.scalar("SELECT password_hash FROM accounts WHERE email = 'Ops@Example.com'")
    assert verify_password(stored, NEW_PASSWORD)


def test_create_account_prompts_twice_without_stdin(runner, tables):
    result = runner.invoke(args=["create-account", "ops@example.com", "--role", "admin"],
                           input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert account_rows(tables)[-1][:2] == ("ops@example.com", "admin")


@pytest.mark.parametrize("email, password, message", [
    ("EDITOR@example.com", NEW_PASSWORD, account_services.AccountEmailTaken.message),
    ("ops@example.com", "elevenchars", "at least 12 characters"),
    ("not an email", NEW_PASSWORD, "valid email address"),
])
def test_create_account_refusals_are_one_line_and_exit_1(runner, tables, email, password,
                                                         message):
    with assert_nothing_written(tables):
        result = runner.invoke(args=["create-account", email, "--role", "editor",
                                     "--password-stdin"], input=password + "\n")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.output


def test_create_first_admin_only_when_there_is_no_account(runner, tables, new_client):
    assert runner.invoke(args=["create-first-admin"]).stdout == ""  # the standard accounts exist
    tables.write("DELETE FROM accounts")
    first = runner.invoke(args=["create-first-admin"])
    assert first.exit_code == 0
    email = first.stdout.split("email:")[1].split()[0]
    password = first.stdout.split("password:")[1].split()[0]
    assert email == account_services.FIRST_ADMIN_EMAIL and len(password) >= 12
    assert account_rows(tables) == [(email, "admin", False, 1)]
    again = runner.invoke(args=["create-first-admin"])
    assert again.exit_code == 0 and again.stdout == ""  # shown once, never again
    browser = new_client(None)
    response = submit(browser, "/login", {"email": email, "password": password}, page="/login")
    assert response.status_code == 303
    assert browser.get("/accounts").status_code == 200
