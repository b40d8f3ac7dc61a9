"""Drive Debian's Chromium with Playwright, and watch every page for errors.

Playwright's own browser download cannot work here (the network is closed),
so it launches the system ``/usr/bin/chromium`` through its bundled driver.
Each ``Browser.new_context()`` is a fresh, empty profile: no cookies, cache
or storage carried from one test (or one simulated visitor) to the next.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from playwright.sync_api import (Browser, BrowserContext, ConsoleMessage, Locator, Page, Playwright,
                                 Response, expect)

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}
SIGNED_IN = re.compile(r"/users$")  # where the login form leads without a next page
# Generous: two cores are shared with other test runs. Not a speed assertion.
TIMEOUT_MS = 20_000


def expect_not_marked_invalid(field: Locator) -> None:
    """``field`` carries no ``aria-invalid`` at all: not "false", not "None"
    (a screen reader may announce any value but "false" as invalid)."""
    expect(field).not_to_have_attribute("aria-invalid", re.compile(r".*", re.DOTALL))


def missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing (run scripts/install-system-deps)"
    return None


def launch(playwright: Playwright) -> Browser:
    # launch() gives Chromium a throw-away --user-data-dir of its own.
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=LAUNCH_ARGS,
    )


# Reported from inside every page: Chromium also logs a console error for a
# CSP violation, but the DOM event is the standard's own signal, so both count.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.reportCspViolation(
    `${event.effectiveDirective} blocked ${event.blockedURI || "inline code"} on ${document.URL}`
  );
});
"""
FAILED_RESOURCE = "Failed to load resource: the server responded with a status of"


@dataclass
class PageWatch:
    """Collects console errors, uncaught exceptions and CSP violations of a context.

    A document answered with an error status (the 404 page, a 422 form) makes
    Chromium log "Failed to load resource" for it; that one is the tested
    behaviour, not a fault, and is let through. Any other failed load (a
    stylesheet, the favicon) counts as a problem.
    """

    found: list[tuple[str, str]] = field(default_factory=list)  # (url, description)
    error_documents: set[str] = field(default_factory=set)

    def attach(self, context: BrowserContext) -> None:
        context.expose_function("reportCspViolation", self._csp_violation)
        context.add_init_script(REPORT_CSP_VIOLATIONS)
        context.on("page", self._watch_page)

    def problems(self) -> list[str]:
        # Filtered when asked, so event order (response vs console) cannot matter.
        return [
            description
            for url, description in self.found
            if not (FAILED_RESOURCE in description and url in self.error_documents)
        ]

    def clear(self) -> None:
        self.found.clear()

    def _watch_page(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.found.append(("", f"uncaught: {error}")))
        page.on("response", self._response)

    def _response(self, response: Response) -> None:
        if response.request.resource_type == "document" and response.status >= 400:
            self.error_documents.add(response.url)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            url = message.location.get("url", "")
            self.found.append((url, f"console error at {url}: {message.text}"))

    def _csp_violation(self, description: str) -> None:
        self.found.append(("", f"CSP violation: {description}"))


def sign_in(context: BrowserContext, email: str, password: str) -> None:
    """Sign ``context`` in through the real login form (its cookie stays in
    the context); the page used for it is closed again."""
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(SIGNED_IN)
    page.close()
