"""Flask-Login wiring: what a session cookie stores, and how the account it
names is loaded on each request.

The cookie stores ``"<account id>.<session_version>"`` (Flask-Login's
"alternative token"): the loader reads the account through this request's
scoped ``db.Session()`` and accepts the cookie only if that version is still
the account's, so revocation is one primary-key read per request.

What the loader returns is a :class:`SignedInAccount`: a frozen copy of the
account's values, not an ORM ``Account``. ``current_user`` lives for the
whole request — templates, error pages, after-request hooks — while the
session that loaded it does not: a failed write's rollback expires every
object the session holds (whatever ``expire_on_commit`` says), and
``Session.remove()`` at teardown detaches them. An ORM object would then
reload itself with a hidden SELECT, or raise ``DetachedInstanceError``. A
snapshot has no session to lose.
"""

from __future__ import annotations

from flask import Flask, g
from flask_login import AnonymousUserMixin, LoginManager, UserMixin, current_user
from sqlalchemy.exc import SQLAlchemyError

from myapp import db
from myapp.auth import accounts
from myapp.auth.access import sign_in_first
from myapp.models import Role
from myapp.observability import request_context

# No "remember me" cookie: a session lasts until the browser closes, and
# ends earlier on the server's word (session_version).
login_manager = LoginManager()
# Flask-Login's "basic" session protection hashes the visitor's address and
# browser name on every request and, when they differ from the sign-in's,
# marks the session "not fresh" — rewriting the cookie. Freshness gates
# nothing here (no view asks for a fresh login; revocation is the
# session_version check), so the hash bought nothing (docs/performance.md).
login_manager.session_protection = None


class SignedInAccount(accounts.AccountSnapshot, UserMixin):
    """The signed-in account: a snapshot that Flask-Login can carry."""

    @classmethod
    def of(cls, snapshot: accounts.AccountSnapshot) -> SignedInAccount:
        return cls(**vars(snapshot))

    def get_id(self) -> str:
        return f"{self.id}.{self.session_version}"

    def may(self, role: Role | str) -> bool:
        return self.role.includes(Role(role))


class Visitor(AnonymousUserMixin):
    """Nobody signed in."""

    role = None

    def may(self, role: Role | str) -> bool:
        return False


login_manager.anonymous_user = Visitor
login_manager.unauthorized_handler(sign_in_first)


@login_manager.user_loader
def load_account(cookie_id: str) -> SignedInAccount | None:
    try:
        account_id, session_version = (int(part) for part in cookie_id.split("."))
    except ValueError:
        return None  # a cookie from before this format: nobody
    try:
        snapshot = accounts.signed_in_account(db.Session(), account_id, session_version)
    except SQLAlchemyError:
        # The error becomes an error page (503 for a lost database), whose
        # header must not ask the database again who is signed in.
        g.account_unavailable = True
        raise
    if snapshot is None:
        return None
    request_context.set_account_id(snapshot.id)  # this request's log lines name it
    return SignedInAccount.of(snapshot)


def template_account():
    """``current_user`` for templates (in place of Flask-Login's own): the
    signed-in account, or nobody when the database could not say who."""
    if g.get("account_unavailable"):
        return Visitor()
    return current_user._get_current_object()


def init_app(app: Flask) -> None:
    login_manager.init_app(app, add_context_processor=False)
    app.context_processor(lambda: {"current_user": template_account()})
