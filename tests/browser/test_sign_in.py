"""In a real browser: signing in, what each role sees, accounts, signing out."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from myapp.models import Role
from tests.support import accounts

pytestmark = [pytest.mark.server, pytest.mark.browser]

NEW_EDITOR, NEW_PASSWORD = "ed@example.com", "editor's own long password"


def fill_login(page: Page, email: str, password: str) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_the_whole_flow(new_context, make_user, tables, screenshot):
    user = make_user("Ada Lovelace", "ada@example.com")

    # Anonymous: any page leads to the login form, which leads back to it.
    viewer = new_context(role=None).new_page()
    viewer.goto(f"/users/{user.id}")
    expect(viewer).to_have_url(re.compile(rf"/login\?next=/users/{user.id}$"))
    fill_login(viewer, accounts.EMAILS[Role.VIEWER], "a wrong password")
    expect(viewer.get_by_role("alert")).to_have_text("Wrong email or password.")
    fill_login(viewer, accounts.EMAILS[Role.VIEWER], accounts.PASSWORD)
    expect(viewer).to_have_url(re.compile(rf"/users/{user.id}$"))

    # A viewer reads, and is offered no way to write.
    header = viewer.locator(".site-header")
    expect(header).to_contain_text(accounts.EMAILS[Role.VIEWER])
    expect(header.locator(".role-badge")).to_have_text("viewer")
    expect(viewer.get_by_role("heading", level=1)).to_have_text("Ada Lovelace")
    for write in ("Edit", "New user", "Import", "Accounts"):
        expect(viewer.get_by_role("link", name=write, exact=True)).to_have_count(0)
    expect(viewer.get_by_text("Delete this user…")).to_have_count(0)
    viewer.get_by_role("link", name="Users", exact=True).click()
    expect(viewer.locator("table.users tbody tr")).to_have_count(1)
    expect(viewer.get_by_role("link", name="New user")).to_have_count(0)

    # An admin creates an editor.
    admin = new_context(role=Role.ADMIN).new_page()
    admin.goto("/users")
    admin.get_by_role("link", name="Accounts").click()
    expect(admin.get_by_role("heading", level=1)).to_have_text("Accounts")
    admin.get_by_role("link", name="New account").click()
    admin.get_by_label("Email").fill(NEW_EDITOR)
    admin.get_by_label("Role").select_option("editor")
    admin.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    admin.get_by_label("Password again").fill(NEW_PASSWORD)
    admin.get_by_role("button", name="Create account").click()
    expect(admin.get_by_role("status")).to_have_text(f"Account {NEW_EDITOR} (editor) was created.")
    screenshot(admin, "account", fix_times=True)
    admin.get_by_role("link", name="All accounts").click()
    expect(admin.locator("table.accounts")).to_contain_text(NEW_EDITOR)
    screenshot(admin, "accounts", fix_times=True)

    # The new editor signs in and creates a user.
    editor = new_context(role=None).new_page()
    editor.goto("/login")
    screenshot(editor, "login")
    fill_login(editor, NEW_EDITOR, NEW_PASSWORD)
    expect(editor).to_have_url(re.compile(r"/users$"))
    editor.get_by_role("link", name="New user").first.click()
    editor.get_by_label("Name").fill("Grace Hopper")
    editor.get_by_label("Email").fill("grace@example.com")
    editor.get_by_role("button", name="Create user").click()
    expect(editor.get_by_role("status")).to_have_text("User “Grace Hopper” was created.")
    expect(editor.locator(".history .event-create")).to_contain_text(f"by {NEW_EDITOR}")
    assert tables.counts() == (2, 2)

    # Signing out ends the session: the pages ask for a sign-in again.
    editor.get_by_role("button", name="Sign out").click()
    expect(editor).to_have_url(re.compile(r"/login$"))
    expect(editor.get_by_role("status")).to_have_text("You are signed out.")
    editor.goto("/users")
    expect(editor).to_have_url(re.compile(r"/login\?next=/users$"))
