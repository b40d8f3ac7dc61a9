"""A browser-like HTTP client for the real server: keeps cookies, sends CSRF
tokens, signs in through the real login form."""

from __future__ import annotations

import requests

from myapp.models import Role
from tests.support import accounts
from tests.support.forms import extract_csrf_token


class Browser:
    """``Browser(url)`` signs in as the standard editor first;
    ``Browser(url, role=None)`` stays anonymous."""

    def __init__(self, base_url: str, role: Role | None = Role.EDITOR):
        self.base_url = base_url
        self.http = requests.Session()
        if role is not None:
            self.sign_in(accounts.EMAILS[role], accounts.PASSWORD)

    def cookie_header(self) -> str:
        """This browser's cookies as a ``Cookie`` header, for other clients to send."""
        return "; ".join(f"{name}={value}" for name, value in self.http.cookies.items())

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.http.get(self.base_url + path, timeout=30, allow_redirects=False, **kwargs)

    def csrf_token(self, page: str = "/users/new") -> str:
        response = self.get(page)
        response.raise_for_status()
        return extract_csrf_token(response.text)

    def submit(self, path: str, data: dict, page: str = "/users/new", token: str | None = None):
        token = token or self.csrf_token(page)
        return self.http.post(
            self.base_url + path,
            data={"csrf_token": token, **data},
            timeout=30,
            allow_redirects=False,
        )

    def sign_in(self, email: str, password: str) -> requests.Response:
        """Fill in and send the login form; raise unless it signed in (303)."""
        response = self.submit("/login", {"email": email, "password": password}, page="/login")
        if response.status_code != 303:
            raise AssertionError(f"sign-in as {email} answered {response.status_code}")
        return response
