"""In a real browser: edit, the stale-edit conflict, delete with confirmation, CSV import."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import text

from tests.support.chromium import expect_not_marked_invalid

pytestmark = [pytest.mark.server, pytest.mark.browser]


def stored_user(engine, user_id):
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT name, email, version FROM users WHERE id = :id"), {"id": user_id}
        ).one_or_none()


def test_edit_a_user_and_see_the_change_in_the_history(page: Page, make_user, inspect_engine, screenshot):
    user = make_user("Grace Hopper", "grace@example.com")
    page.goto(f"/users/{user.id}")
    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_label("Name")).to_have_value("Grace Hopper")
    expect_not_marked_invalid(page.get_by_label("Name"))
    expect_not_marked_invalid(page.get_by_label("Email"))

    page.get_by_label("Name").fill("Rear Admiral Grace Hopper")
    page.get_by_role("button", name="Save changes").click()
    expect(page).to_have_url(re.compile(rf"/users/{user.id}$"))
    expect(page.get_by_role("status")).to_have_text("Saved the changes to “Rear Admiral Grace Hopper”.")

    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Email").fill("not-an-address")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("alert")).to_contain_text("Email")
    expect(page.get_by_label("Email")).to_have_value("not-an-address")
    expect(page.get_by_label("Email")).to_have_attribute("aria-invalid", "true")
    expect_not_marked_invalid(page.get_by_label("Name"))
    page.get_by_label("Email").fill("grace.hopper@navy.example")
    page.get_by_role("button", name="Save changes").click()

    history = page.locator(".history > li")
    expect(history).to_have_count(3)  # newest first: update, update, create
    expect(history.nth(0)).to_contain_text("grace@example.com → grace.hopper@navy.example")
    expect(history.nth(1)).to_contain_text("Grace Hopper → Rear Admiral Grace Hopper")
    expect(history.nth(2)).to_contain_text("Created")
    assert stored_user(inspect_engine, user.id) == (
        "Rear Admiral Grace Hopper", "grace.hopper@navy.example", 3)
    screenshot(page, "detail-history", fix_times=True)


def test_a_stale_edit_shows_the_conflict_page_and_overwrites_nothing(
    new_context, make_user, inspect_engine, screenshot
):
    user = make_user("Alan Turing", "alan@example.com")
    first, second = new_context().new_page(), new_context().new_page()
    for visitor in (first, second):
        visitor.goto(f"/users/{user.id}/edit")

    first.get_by_label("Name").fill("Alan M. Turing")
    first.get_by_role("button", name="Save changes").click()
    expect(first.get_by_role("status")).to_contain_text("Saved the changes")

    second.get_by_label("Email").fill("turing@example.com")
    with second.expect_response(lambda r: r.request.method == "POST") as answer:
        second.get_by_role("button", name="Save changes").click()
    assert answer.value.status == 409
    expect(second.get_by_role("heading", level=1)).to_have_text("Someone else saved this user first")
    expect(second.get_by_role("alert")).to_contain_text("Your changes were not saved")
    differs = second.locator("table.compare tr.differs")
    expect(differs).to_have_count(2)  # their name, my email
    expect(differs.first).to_contain_text("Alan M. Turing")
    assert stored_user(inspect_engine, user.id) == ("Alan M. Turing", "alan@example.com", 2)
    screenshot(second, "conflict")

    second.get_by_role("link", name="Reload the latest version").click()
    expect(second.get_by_label("Name")).to_have_value("Alan M. Turing")
    expect(second.get_by_label("Email")).to_have_value("alan@example.com")


def test_delete_asks_first_and_keeps_the_user_when_cancelled(
    page, make_user, inspect_engine, tables
):
    user = make_user("Edsger Dijkstra", "edsger@example.com")
    page.goto(f"/users/{user.id}")
    delete = page.get_by_role("button", name="Delete permanently")
    expect(delete).to_be_hidden()  # tucked inside a closed <details>
    page.get_by_text("Delete this user…").click()

    questions = []
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
    delete.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Edsger Dijkstra")
    assert questions == ["Delete Edsger Dijkstra? This cannot be undone."]
    assert stored_user(inspect_engine, user.id) is not None

    page.once("dialog", lambda dialog: dialog.accept())
    delete.click()
    expect(page).to_have_url(re.compile(r"/users$"))
    expect(page.get_by_role("status")).to_have_text(
        "User “Edsger Dijkstra” was deleted. Their history is kept.")
    expect(page.get_by_text("No users yet.")).to_be_visible()
    assert tables.counts() == (0, 2)  # create + delete events remain


CSV = (
    "name,email\n"
    "Barbara Liskov,barbara@example.com\n"
    "No Address,\n"
    "Claude Shannon,claude@example.com\n"
    "Claude Again,CLAUDE@example.com\n"
    "Frances Allen,frances@example.com\n"
    "Taken Already,ada@example.com\n"
)


def test_import_a_csv_file_and_read_the_report(page, make_user, screenshot, tables):
    make_user("Ada Lovelace", "ada@example.com")
    page.goto("/users")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Import").click()

    for label in ("CSV file", "…or paste CSV text"):
        expect_not_marked_invalid(page.get_by_label(label))

    # Nothing chosen: the form comes back with the problem beside the file field.
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("alert")).to_contain_text("CSV file")
    expect(page.get_by_label("CSV file")).to_have_attribute("aria-invalid", "true")
    expect_not_marked_invalid(page.get_by_label("…or paste CSV text"))

    page.get_by_label("CSV file").set_input_files(
        files=[{"name": "people.csv", "mimeType": "text/csv", "buffer": CSV.encode()}])
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Import report")
    expect(page.get_by_role("status")).to_have_text("created 3, rejected 3")
    rejected = page.locator("table.rejected tbody tr")
    expect(rejected).to_have_count(3)
    lines = [row.split("\t")[0] for row in rejected.all_inner_texts()]
    assert lines == ["line 3", "line 5", "line 7"]
    expect(rejected.nth(1)).to_contain_text(re.compile("line 4|already", re.I))
    screenshot(page, "import-report")

    page.get_by_role("link", name="See the users").click()
    expect(page.locator("table.users tbody tr")).to_have_count(4)
    assert tables.counts() == (4, 4)


def test_everything_works_with_javascript_turned_off(new_context, tables):
    page = new_context(java_script_enabled=False).new_page()
    page.goto("/users/new")
    page.get_by_label("Name").fill("Niklaus Wirth")
    page.get_by_label("Email").fill("niklaus@example.com")
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_role("status")).to_contain_text("was created")

    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Name").fill("Niklaus E. Wirth")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Niklaus E. Wirth")

    page.get_by_text("Delete this user…").click()
    page.get_by_role("button", name="Delete permanently").click()  # no script, no question
    expect(page.get_by_role("status")).to_contain_text("was deleted")

    page.get_by_role("link", name="Import").click()
    page.get_by_label("…or paste CSV text").fill("name,email\nPer Brinch Hansen,per@example.com\n")
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("status")).to_have_text("created 1, rejected 0")
    assert tables.counts() == (1, 4)
