"""In a real browser: create a user, fix a bad form, walk and search the list, the 404 page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.support.chromium import PHONE, expect_not_marked_invalid

pytestmark = [pytest.mark.server, pytest.mark.browser]

USER_PAGE = re.compile(r"/users/(\d+)$")


def test_create_a_user_through_the_form(page, tables):
    page.goto("/users")
    expect(page.get_by_text("No users yet.")).to_be_visible()
    page.get_by_role("link", name="Create the first one").click()
    expect(page).to_have_url(re.compile(r"/users/new$"))
    expect_not_marked_invalid(page.get_by_label("Name"))
    expect_not_marked_invalid(page.get_by_label("Email"))

    page.get_by_label("Name").fill("Ada Lovelace")
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_role("button", name="Create user").click()

    expect(page).to_have_url(USER_PAGE)
    expect(page.get_by_role("status")).to_have_text("User “Ada Lovelace” was created.")
    expect(page.get_by_role("heading", level=1)).to_have_text("Ada Lovelace")
    expect(page.locator(".history .event-create")).to_have_count(1)
    assert tables.counts() == (1, 1)

    # The confirmation is shown once, not again on the next page.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Users").click()
    expect(page.get_by_role("status")).to_have_count(0)
    rows = page.locator("table.users tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("ada@example.com")
    rows.first.get_by_role("link", name="Ada Lovelace").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Ada Lovelace")


def _field_error(page: Page, label: str):
    """The error message the field's aria-describedby points at (fails if none)."""
    field = page.get_by_label(label, exact=True)
    expect(field).to_have_attribute("aria-invalid", "true")
    ids = field.get_attribute("aria-describedby").split()
    errors = [page.locator(f"#{id_}.error") for id_ in ids if page.locator(f"#{id_}.error").count()]
    assert len(errors) == 1, f"{label}: {ids}"
    return errors[0]


def test_each_validation_error_is_beside_its_field_and_values_are_kept(
    page, new_context, screenshot, tables
):
    page.goto("/users/new")
    page.get_by_label("Name").fill("Grace Hopper")
    page.get_by_label("Email").fill("grace@")
    page.get_by_role("button", name="Create user").click()

    summary = page.get_by_role("alert")
    expect(summary).to_contain_text("Please correct this problem")
    expect(summary).to_be_focused()  # the keyboard starts at what to fix
    expect(summary.get_by_role("link")).to_have_count(1)
    expect(_field_error(page, "Email")).to_be_visible()
    expect_not_marked_invalid(page.get_by_label("Name"))
    expect(page.get_by_label("Name")).to_have_value("Grace Hopper")
    expect(page.get_by_label("Email")).to_have_value("grace@")

    # Both fields wrong: two messages, each beside (and tied to) its own field.
    page.get_by_label("Name").fill("   ")
    page.get_by_label("Email").fill("not an email")
    page.get_by_role("button", name="Create user").click()
    expect(summary.get_by_role("heading")).to_have_text("Please correct these 2 problems")
    expect(summary.get_by_role("link")).to_have_text([re.compile("^Name: "), re.compile("^Email: ")])
    name_error, email_error = _field_error(page, "Name"), _field_error(page, "Email")
    expect(name_error).not_to_have_text(email_error.inner_text())
    for error, label in ((name_error, "Name"), (email_error, "Email")):
        field_box = page.locator(".field", has=page.get_by_label(label, exact=True))
        expect(field_box.locator(".error")).to_have_text(error.inner_text())
    expect(page.get_by_label("Email")).to_have_value("not an email")
    expect(summary).to_be_focused()
    screenshot(page, "form-errors")

    # The summary's links take the keyboard to the field.
    summary.get_by_role("link").last.click()
    expect(page.get_by_label("Email")).to_be_focused()
    assert tables.counts() == (0, 0)

    phone = new_context(viewport=PHONE).new_page()
    phone.goto("/users/new")
    phone.get_by_role("button", name="Create user").click()
    expect(phone.get_by_role("alert")).to_be_focused()
    screenshot(phone, "form-errors-phone")


def test_a_taken_email_is_reported_beside_the_email(page, make_user, tables):
    make_user("Ada Lovelace", "ada@example.com")
    page.goto("/users/new")
    page.get_by_label("Name").fill("Another Ada")
    page.get_by_label("Email").fill("ADA@example.com")
    page.get_by_role("button", name="Create user").click()
    expect(_field_error(page, "Email")).to_contain_text("already exists")
    expect(page.get_by_label("Name")).to_have_value("Another Ada")
    assert tables.counts() == (1, 1)


FIRST_NAMES = ["Ada", "Alan", "Barbara", "Claude", "Donald", "Edsger", "Frances", "Grace",
               "John", "Katherine", "Margaret", "Niklaus"]
LAST_NAMES = ["Lovelace", "Turing", "Liskov", "Shannon", "Knuth", "Dijkstra", "Allen",
              "Hopper", "Backus", "Johnson"]


def _ids_on_page(page: Page) -> list[int]:
    hrefs = page.locator("table.users tbody a").evaluate_all("links => links.map(a => a.href)")
    return [int(USER_PAGE.search(href).group(1)) for href in hrefs]


def follow_next_link(page: Page) -> bool:
    """Click rel=next and wait for that page to load; False on the last page."""
    link = page.locator("a[rel=next]")
    if not link.count():
        return False
    target = link.evaluate("a => a.href")
    link.click()
    page.wait_for_url(target)
    return True


def test_walk_the_list_with_next_links_and_search(page: Page, make_user, screenshot):
    people = [(f"{FIRST_NAMES[n % 12]} {LAST_NAMES[n % 10]} {n}",
               f"{FIRST_NAMES[n % 12].lower()}.{n}@example.org") for n in range(120)]
    for name, email in people:
        make_user(name, email)

    page.goto("/users")
    expect(page.locator("table.users tbody tr")).to_have_count(50)
    # Newest first, a readable date, and the exact timestamp on hand.
    first = page.locator("table.users tbody tr").first
    expect(first).to_contain_text(people[-1][0])
    time = first.locator("time")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d.*", time.get_attribute("datetime"))
    assert time.get_attribute("title") and re.search(r"[A-Z][a-z]{2} \d{4}", time.inner_text())
    # Fifty rows: scrolled to the last one, the column names are still in view.
    page.locator("table.users tbody tr").last.scroll_into_view_if_needed()
    assert page.evaluate("window.scrollY") > 500
    expect(page.get_by_role("columnheader", name="Email")).to_be_in_viewport()

    seen: list[int] = []
    sizes = []
    while True:
        ids = _ids_on_page(page)
        seen += ids
        sizes.append(len(ids))
        if not follow_next_link(page):
            break
        expect(page.get_by_role("link", name="« Newest")).to_be_visible()
    assert sizes == [50, 50, 20]
    assert len(set(seen)) == 120 and seen == sorted(seen, reverse=True)

    # Search: the box keeps the query, and the next-page links keep it too.
    page.get_by_label("Search by name or email").fill("GRACE")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_label("Search by name or email")).to_have_value("GRACE")
    matches = [p for p in people if "grace" in (p[0] + p[1]).lower()]
    expect(page.locator("table.users tbody tr")).to_have_count(len(matches))
    for name in page.locator("table.users tbody a").all_inner_texts():
        assert name.startswith("Grace")

    page.goto("/users?q=an&limit=25")
    walked = 0
    while True:
        expect(page.get_by_label("Search by name or email")).to_have_value("an")
        walked += len(_ids_on_page(page))
        if not follow_next_link(page):
            break
    assert walked == sum("an" in (n + e).lower() for n, e in people)

    page.get_by_label("Search by name or email").fill("nobody-like-this")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("No user’s name or email contains “nobody-like-this”.")).to_be_visible()
    page.get_by_role("link", name="Clear").click()
    expect(page.get_by_label("Search by name or email")).to_have_value("")
    expect(page.locator("table.users tbody tr")).to_have_count(50)
    screenshot(page, "list", fix_times=True)


def test_unknown_pages_are_the_sites_404_page(page: Page):
    for path in ("/users/987654", "/no/such/page"):
        response = page.goto(path)
        assert response.status == 404
        expect(page.get_by_role("heading", level=1)).to_have_text("Not Found")
        expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    page.get_by_role("link", name="Back to the users").click()
    expect(page).to_have_url(re.compile(r"/users$"))
