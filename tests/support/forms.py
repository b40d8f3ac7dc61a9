"""Submit the app's forms the way a browser does: with the CSRF token the page carries."""

from __future__ import annotations

import io
import re

CSRF_INPUT = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|'
                        r'type="hidden" name="csrf_token" value="([^"]+)"|'
                        r'name="csrf_token"[^>]*value="([^"]+)"')


def extract_csrf_token(html: str) -> str:
    match = CSRF_INPUT.search(html)
    assert match, "page has no csrf_token field"
    return next(group for group in match.groups() if group)


def csrf_token(client, page: str = "/users/new") -> str:
    """GET ``page`` with the Flask test client and return its CSRF token."""
    response = client.get(page)
    assert response.status_code == 200, response.status_code
    return extract_csrf_token(response.get_data(as_text=True))


def submit(client, path: str, data: dict, page: str = "/users/new", **kwargs):
    """POST ``data`` to ``path`` with a valid CSRF token taken from ``page``."""
    return client.post(path, data={"csrf_token": csrf_token(client, page), **data}, **kwargs)


def upload(client, content: bytes | str, filename="users.csv", field="file"):
    """Submit the import form: ``content`` as a file upload, or pasted (``field="csv"``)."""
    token = csrf_token(client, "/users/import")
    if field == "file":
        data = content.encode() if isinstance(content, str) else content
        payload = {"file": (io.BytesIO(data), filename)}
    else:
        payload = {"csv": content}
    return client.post(
        "/users/import", data={"csrf_token": token, **payload}, content_type="multipart/form-data"
    )
