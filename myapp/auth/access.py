"""Who may open which page: one rule per view, checked before every request.

Every view declares its rule with :func:`public` or :func:`role_required`.
:func:`enforce_access` runs before each request and looks the rule up; a view
without one is a bug, and fails loudly (a 500 with the view named in the
log) rather than quietly letting everyone in. ``tests/test_access.py``
walks the app's URL map, so a new route without a rule also fails the tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import abort, current_app, redirect, request, url_for
from flask_login import current_user

from myapp import db
from myapp.models import Role

PUBLIC = "public"
ACCESS_ATTRIBUTE = "access_rule"
# Served without a sign-in, though no decorator of this package reaches them:
# Flask's own static view, and the Prometheus scrape (myapp/observability/
# endpoint.py), which must answer while the database is down and never asks
# who is signed in (nginx keeps it off the public ports instead).
PUBLIC_ENDPOINTS = frozenset({"static", "metrics.expose"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

View = TypeVar("View", bound=Callable)


def public(view: View) -> View:
    """Anyone may open this view, signed in or not."""
    setattr(view, ACCESS_ATTRIBUTE, PUBLIC)
    return view


def role_required(role: Role) -> Callable[[View], View]:
    """Only accounts whose role includes ``role`` may open this view."""

    def decorate(view: View) -> View:
        setattr(view, ACCESS_ATTRIBUTE, Role(role))
        return view

    return decorate


def access_rule(endpoint: str) -> Role | str:
    """``PUBLIC`` or the least role the endpoint's view requires."""
    if endpoint in PUBLIC_ENDPOINTS:
        return PUBLIC
    view = current_app.view_functions[endpoint]
    try:
        return getattr(view, ACCESS_ATTRIBUTE)
    except AttributeError:
        raise LookupError(
            f"view {endpoint!r} has no access rule: decorate it with @public or @role_required"
        ) from None


def enforce_access():
    """``before_request``: sign-in and role checks, before any view runs.

    The signed-in account is loaded here, first thing, so that its read is
    the request's first use of its session. A page that only reads carries
    on with the same session (its reads run in autocommit, myapp/sessions.py);
    a view that writes opens its transaction with ``session.begin()``, which
    a session already in use refuses, so for those the session's use is
    ended here (no round trip: the read was not a transaction). Public pages
    that only read (``/healthz``, the login form) do not ask who is signed in.
    """
    if request.endpoint is None or request.endpoint in PUBLIC_ENDPOINTS:
        return None  # 404/405 from routing, a static file or /metrics: no account needed
    rule = access_rule(request.endpoint)
    if rule == PUBLIC and request.method in SAFE_METHODS:
        return None
    account = current_user._get_current_object()
    if request.method not in SAFE_METHODS:
        db.Session().commit()
    if rule == PUBLIC:
        return None
    if not account.is_authenticated:
        return current_app.login_manager.unauthorized()
    if not account.role.includes(rule):
        abort(403, description=f"This needs the {rule} role; your account is a {account.role}. "
                               "Nothing was changed.")
    return None


def sign_in_first():
    """Flask-Login's ``unauthorized_handler``: an anonymous visitor asked for
    a page that needs an account."""
    if request.method in SAFE_METHODS:
        return redirect(url_for("auth.login_form", next=requested_path()), 303)
    abort(401, description="Sign in to do this. Nothing was saved.")


def requested_path() -> str:
    """This request's path and query string, as a same-site ``next`` value."""
    query = request.query_string.decode("latin-1")
    return f"{request.path}?{query}" if query else request.path
