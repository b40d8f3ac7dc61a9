"""Flask's signed session cookie, with its serializer built once.

Flask's ``SecureCookieSessionInterface`` builds a new
``URLSafeTimedSerializer`` every time it reads or writes the cookie, i.e. on
every request; building one also test-serializes an empty string to learn
whether the serializer makes text. Nothing in it changes between requests
unless the secret keys do, so this interface keeps the one it built and
builds another only when ``SECRET_KEY`` or ``SECRET_KEY_FALLBACKS`` differ
(docs/performance.md). The cookie's format, signature, salt and key
rotation are Flask's own, unchanged.
"""

from __future__ import annotations

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer


class SessionCookies(SecureCookieSessionInterface):
    def __init__(self) -> None:
        # (keys it was built for, serializer): replaced as one tuple, so a
        # thread never sees a serializer paired with other keys. A
        # serializer holds no per-use state; threads may share it.
        self._built: tuple[tuple, URLSafeTimedSerializer | None] | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        built = self._built
        if built is None or built[0] != keys:
            built = self._built = (keys, super().get_signing_serializer(app))
        return built[1]


def init_app(app: Flask) -> None:
    app.session_interface = SessionCookies()
