"""A browser-like HTTP client for the real server: keeps cookies, sends CSRF tokens."""

from __future__ import annotations

import requests

from tests.support.forms import extract_csrf_token


class Browser:
    def __init__(self, base_url: str):
        self.base_url = base_url
        self.http = requests.Session()

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
