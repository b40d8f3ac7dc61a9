"""Sign-in and accounts: only signed-in accounts see or change users.

* ``models`` (in myapp.models): ``Account``, ``LoginFailure``, ``Role``.
* :mod:`.passwords` — argon2id hashing; :mod:`.accounts` and :mod:`.signin`
  — services taking an ``orm.Session``: accounts, revocation, throttled sign-in.
* :mod:`.login` — Flask-Login: the cookie's contents and the account loader.
* :mod:`.access` — the rule of every view, enforced before each request.
* :mod:`.views`, :mod:`.forms` — the ``auth`` blueprint: sign in and out,
  ``/accounts``; :mod:`.cli` — ``create-account``, ``create-first-admin``.
"""

from __future__ import annotations

from flask import Flask

from myapp.auth import access, cli, login, views

# The app registers the blueprint and the commands with its others.
__all__ = ["access", "cli", "init_app", "login", "views"]


def init_app(app: Flask) -> None:
    """Flask-Login and the access guard (the blueprint and the commands are
    registered with the app's others: ``views.bp``, ``cli.init_app``)."""
    login.init_app(app)
    app.before_request(access.enforce_access)
