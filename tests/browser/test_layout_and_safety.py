"""Every page at phone width, keyboard focus, and the page watch itself."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from myapp import db, users
from myapp.models import Role
from myapp.validation import UserFields
from tests.support import accounts
from tests.support.chromium import PHONE

pytestmark = [pytest.mark.server, pytest.mark.browser]

LONG_NAME = "Wolfeschlegelsteinhausenbergerdorff" * 2 + " Jr."
LONG_EMAIL = "a.very.long.address.that.does.not.wrap.on.its.own" * 3 + "@example.com"


def assert_fits(page: Page) -> None:
    """No sideways scrolling: nothing is wider than the screen."""
    # After a form's click, ``expect`` passes once the new page's text is in
    # the DOM, maybe before its stylesheet has loaded: measure laid out.
    page.wait_for_load_state("load")
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{page.url} is {overflow}px wider than the screen"


UNLABELLED_FIELDS = """() => [...document.querySelectorAll("input, textarea, select")]
  .filter((field) => field.type !== "hidden" && field.type !== "submit")
  .filter((field) => field.labels.length === 0
    || (field.getAttribute("aria-describedby") || "").split(" ").filter(Boolean)
         .some((id) => !document.getElementById(id)))
  .map((field) => field.name)"""


def assert_fields_labelled(page: Page) -> None:
    """Every field has a <label>, and what aria-describedby names exists."""
    assert page.evaluate(UNLABELLED_FIELDS) == [], page.url


def test_every_page_fits_a_360px_phone_and_labels_its_fields(new_context, make_user, app, screenshot):
    long_one = make_user(LONG_NAME, LONG_EMAIL)
    for n in range(3):
        make_user(f"Person {n}", f"person{n}@example.com")
    page = new_context(viewport=PHONE).new_page()
    for path in ("/users", "/users?q=person", "/users?q=nobody", "/users/new",
                 f"/users/{long_one.id}", f"/users/{long_one.id}/edit", "/users/import", "/nope"):
        page.goto(path)
        assert_fits(page)
        assert_fields_labelled(page)
    page.goto("/users")
    screenshot(page, "list-phone", fix_times=True)

    page.goto("/users/new")
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_role("alert")).to_be_visible()
    assert_fits(page)
    assert_fields_labelled(page)

    page.goto(f"/users/{long_one.id}/edit")
    with app.app_context():  # someone else saves while the form is open
        users.update_user(db.Session(), long_one.id, 1, UserFields(LONG_NAME + " II", LONG_EMAIL))
    page.get_by_label("Name").fill("Shorter")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Someone else saved")
    assert_fits(page)

    page.goto("/users/import")
    page.get_by_label("…or paste CSV text").fill(f"name,email\nX,{LONG_EMAIL}\n,bad\n")
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("status")).to_have_text("created 0, rejected 2")
    assert_fits(page)


def test_sign_in_and_account_pages_fit_a_360px_phone(new_context):
    anonymous = new_context(viewport=PHONE, role=None).new_page()
    anonymous.goto("/login")
    assert_fits(anonymous)
    assert_fields_labelled(anonymous)
    admin = new_context(viewport=PHONE, role=Role.ADMIN).new_page()
    for path in ("/accounts", "/accounts/new", f"/accounts/{accounts.IDS[Role.VIEWER]}"):
        admin.goto(path)
        assert_fits(admin)
        assert_fields_labelled(admin)
    admin.goto("/accounts/new")
    admin.get_by_role("button", name="Create account").click()
    expect(admin.get_by_role("alert")).to_be_visible()
    assert_fits(admin)
    assert_fields_labelled(admin)


FOCUS_RING = """() => {
  const style = getComputedStyle(document.activeElement);
  return style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2;
}"""


def test_keyboard_focus_is_always_visible(page: Page, make_user):
    user = make_user()
    page.goto(f"/users/{user.id}")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    visited = []
    for _ in range(7):  # skip link, brand, navigation, Edit, the delete toggle
        assert page.evaluate(FOCUS_RING), f"no visible focus on {visited[-1:]}"
        visited.append(page.evaluate("document.activeElement.textContent.trim()"))
        page.keyboard.press("Tab")
    assert {"Users", "New user", "Import", "Edit"} <= set(visited)

    page.get_by_role("link", name="Skip to content").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("main")).to_be_focused()


def test_the_watch_catches_csp_violations_and_console_errors(page: Page):
    """The no-console-errors check is only worth something if it can fail."""
    def inject(route):
        original = route.fetch()
        html = original.text().replace(
            "</main>", "<script>console.log('inline')</script><p style='color:red'>x</p></main>")
        route.fulfill(response=original, body=html)

    page.route("**/users/new", inject)
    page.goto("/users/new")
    page.evaluate("console.error('boom')")
    watch = page.context.watch
    expected = ("CSP violation: script-src-elem blocked inline",
                "CSP violation: style-src-attr blocked inline", "boom")
    deadline = time.monotonic() + 10
    while not all(e in "\n".join(watch.problems()) for e in expected):  # reports arrive async
        assert time.monotonic() < deadline, watch.problems()
        page.wait_for_timeout(50)
    # The app's CSP blocked both; nothing ran or applied.
    assert page.evaluate("getComputedStyle(document.querySelector('main p:last-of-type')).color") \
        != "rgb(255, 0, 0)"
    watch.clear()
