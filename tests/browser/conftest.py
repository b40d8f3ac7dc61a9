"""Real-browser fixtures: the app under real gunicorn, headless Chromium, watched pages.

One gunicorn server and one Chromium serve this package's tests (starting
them is the slow part) and stop when it is done, so the rest of the suite
never sees their processes or database connections. Every test gets fresh
browser contexts and empty tables (marker ``server``: TRUNCATE, see
tests/conftest.py). Every page
a test opens is watched: any console error, uncaught exception or CSP
violation fails that test.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright
from sqlalchemy import text

from harness import PROJECT_ROOT
from harness.gunicorn import GunicornServer
from myapp.models import Role
from tests.support import accounts, chromium

# The README's pictures. A test run saves its screenshots to a temporary
# directory so that it leaves the checkout as it found it; `make screenshots`
# (UPDATE_SCREENSHOTS=1) saves them here instead.
README_SCREENSHOTS = PROJECT_ROOT / "docs" / "screenshots"

@pytest.fixture(scope="package")
def gunicorn_server(database_url) -> Iterator[GunicornServer]:
    # Not pytest-flask's ``live_server`` (the app in a forked process under
    # Werkzeug): the browser tests see the app as deployed, under gunicorn.
    with GunicornServer(database_url, workers=2, threads=4) as server:
        yield server


@pytest.fixture(scope="package")
def chromium_browser():
    reason = chromium.missing_reason()
    if reason:
        # CI must exercise the browser tests; only a developer's machine may skip them.
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
        pytest.skip(reason)
    expect.set_options(timeout=chromium.TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = chromium.launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def new_context(chromium_browser, gunicorn_server) -> Iterator[Callable[..., BrowserContext]]:
    """Make fresh browser contexts (separate visitors), signed in through the
    login form as the standard account of ``role`` (None: anonymous); all
    are watched and closed."""
    opened: list[tuple[BrowserContext, chromium.PageWatch]] = []

    def make(viewport=chromium.DESKTOP, role: Role | None = Role.EDITOR, **options) -> BrowserContext:
        context = chromium_browser.new_context(base_url=gunicorn_server.url, viewport=viewport, **options)
        context.set_default_timeout(chromium.TIMEOUT_MS)
        watch = chromium.PageWatch()
        watch.attach(context)
        context.watch = watch
        opened.append((context, watch))
        if role is not None:
            chromium.sign_in(context, accounts.EMAILS[role], accounts.PASSWORD)
        return context

    yield make
    for context, _ in opened:
        for open_page in context.pages:
            open_page.evaluate("0")  # a round trip: earlier console events have arrived
    problems = [problem for _, watch in opened for problem in watch.problems()]
    for context, _ in opened:
        context.close()
    assert not problems, "the browser reported problems:\n" + "\n".join(problems)


@pytest.fixture
def page(new_context) -> Page:
    return new_context().new_page()


# Screenshots are committed: with every time on the page fixed, a run that
# changes nothing in the UI rewrites identical files.
FIX_TIMES = text("""
    UPDATE audit_events SET at = TIMESTAMPTZ '2026-03-02 09:00:00+00' + id * INTERVAL '67 minutes';
    UPDATE users SET
        created_at = (SELECT min(at) FROM audit_events WHERE user_id = users.id),
        updated_at = (SELECT max(at) FROM audit_events WHERE user_id = users.id);
    UPDATE accounts SET created_at = TIMESTAMPTZ '2026-03-01 08:00:00+00' + id * INTERVAL '1 hour';
""")


@pytest.fixture(scope="session")
def screenshot(inspect_engine, tmp_path_factory) -> Callable[..., None]:
    """Save a full-page screenshot NAME.png (for the README with UPDATE_SCREENSHOTS=1).

    ``fix_times=True`` first moves every stored time to a fixed calendar and
    reloads the page (a GET page only), after the test has checked the real ones.
    """
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        folder = README_SCREENSHOTS
        folder.mkdir(parents=True, exist_ok=True)
    else:
        folder = tmp_path_factory.mktemp("screenshots")

    def save(page: Page, name: str, *, fix_times: bool = False) -> None:
        if fix_times:
            with inspect_engine.begin() as conn:
                conn.execute(FIX_TIMES)
            page.reload()
        page.screenshot(path=folder / f"{name}.png", full_page=True, animations="disabled")

    return save
