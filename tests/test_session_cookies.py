"""The session interface that builds its cookie serializer once
(myapp/session_cookies.py): the same cookies as Flask's own, and a new
serializer as soon as the secret keys change."""

from __future__ import annotations

from flask import Flask, session
from flask.sessions import SecureCookieSessionInterface

from myapp import session_cookies


def _app(interface) -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "first key"
    app.session_interface = interface

    @app.get("/set")
    def set_value():
        session["value"] = "kept"
        return ""

    @app.get("/get")
    def get_value():
        return session.get("value", "nothing")

    return app


def _cookie_from(app: Flask) -> str:
    client = app.test_client()
    client.get("/set")
    return client.get_cookie("session").value


def _read_with(app: Flask, cookie: str) -> str:
    client = app.test_client()
    client.set_cookie("session", cookie)
    return client.get("/get").get_data(as_text=True)


def test_cookies_are_flasks_own():
    ours, flasks = _app(session_cookies.SessionCookies()), _app(SecureCookieSessionInterface())
    assert _read_with(flasks, _cookie_from(ours)) == "kept"
    assert _read_with(ours, _cookie_from(flasks)) == "kept"


def test_a_new_secret_key_gets_a_new_serializer():
    app = _app(session_cookies.SessionCookies())
    old_cookie = _cookie_from(app)
    assert _read_with(app, old_cookie) == "kept"

    app.config["SECRET_KEY"] = "second key"
    assert _read_with(app, old_cookie) == "nothing"  # signed with a key no longer known
    new_cookie = _cookie_from(app)
    assert new_cookie != old_cookie
    assert _read_with(app, new_cookie) == "kept"

    app.config["SECRET_KEY_FALLBACKS"] = ["first key"]  # rotation: the old key still reads
    assert _read_with(app, old_cookie) == "kept"
