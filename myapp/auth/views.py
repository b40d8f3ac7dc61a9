"""Sign-in pages and account management (admins only). Thin views, as in
myapp.views: read the form, call a service, render or redirect."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import (Blueprint, abort, flash, g, redirect, render_template, request, session,
                   url_for)
from flask_login import current_user, login_user, logout_user
from flask_wtf.csrf import generate_csrf

from myapp import db
from myapp.auth import accounts, signin
from myapp.auth.access import public, role_required
from myapp.auth.forms import ConfirmForm, LoginForm, NewAccountForm, PasswordForm, RoleForm
from myapp.auth.login import SignedInAccount
from myapp.models import Role
from myapp.observability import metrics, request_context
from myapp.validation import has_forbidden_characters

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this site, else the users list.

    Refused: anything with a scheme or host (``https://evil.example``),
    protocol-relative ``//evil.example``, and ``/\\evil.example`` or control
    characters, which browsers turn into the same.
    """
    fallback = url_for("users.list_users")
    if not target or not target.startswith("/") or target.startswith("//"):
        return fallback
    if "\\" in target or has_forbidden_characters(target) or " " in target:
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return fallback
    return target


@bp.get("/login")
@public
def login_form():
    form = LoginForm(next=request.args.get("next", ""))
    return render_template("auth/login.html", form=form)


@bp.post("/login")
@public
def login():
    form = LoginForm()
    if not form.validate():
        return render_template("auth/login.html", form=form), 422
    try:
        account = signin.authenticate(db.Session(), form.email.data, form.password.data)
    except signin.SignInThrottled as err:
        metrics.record_sign_in("locked_out")
        form.form_errors.append(err.message)
        return render_template("auth/login.html", form=form), 429, {
            "Retry-After": str(err.retry_after)
        }
    except signin.SignInFailed as err:
        metrics.record_sign_in("failure")
        form.form_errors.append(err.message)
        return render_template("auth/login.html", form=form), 401
    # A new session: nothing a visitor (or someone who planted a cookie on
    # their browser) had in it before signing in is carried over.
    start_signed_in_session(account)
    metrics.record_sign_in("success")
    request_context.set_account_id(account.id)
    return redirect(safe_next(form.next.data or request.args.get("next")), 303)


def start_signed_in_session(account: accounts.AccountSnapshot) -> None:
    """A fresh session cookie signing ``account`` in, with its CSRF secret.

    The secret is made now, into the cookie this answer sets. Left to the
    next page (the header's sign-out form asks for a token), it would be
    written by that page, and by every page until the browser stores the
    new cookie: pages opened at once would each write a different secret,
    and the forms of all but the last would fail their CSRF check. (A client
    that replays the sign-in cookie, as wrk does, paid a cookie write per
    request: docs/performance.md.)
    """
    session.clear()
    login_user(SignedInAccount.of(account))
    g.pop("csrf_token", None)  # this request's token belonged to the old session
    generate_csrf()


@bp.post("/logout")
@public
def logout():
    if current_user.is_authenticated:
        accounts.end_sessions(db.Session(), current_user.id)
        log.info("signed out: %r", current_user.email)
    logout_user()
    session.clear()
    flash("You are signed out.", "success")
    return redirect(url_for("auth.login_form"), 303)


# --- account management ----------------------------------------------------------


def _existing_account(account_id: int) -> accounts.AccountSnapshot:
    try:
        return accounts.get_account(db.Session(), account_id)
    except accounts.AccountNotFound:
        abort(404, description="There is no account with this id.")


def _account_page(account: accounts.AccountSnapshot, status: int = 200, **forms):
    forms.setdefault("role_form", RoleForm(role=account.role.value))
    forms.setdefault("password_form", PasswordForm())
    return render_template("auth/account.html", account=account, confirm_form=ConfirmForm(),
                           **forms), status


@bp.get("/accounts")
@role_required(Role.ADMIN)
def list_accounts():
    return render_template("auth/accounts.html", accounts=accounts.list_accounts(db.Session()))


@bp.get("/accounts/new")
@role_required(Role.ADMIN)
def new_account():
    return render_template("auth/new_account.html", form=NewAccountForm(role=Role.EDITOR.value))


@bp.post("/accounts")
@role_required(Role.ADMIN)
def create_account():
    form = NewAccountForm()
    if not form.validate():
        return render_template("auth/new_account.html", form=form), 422
    try:
        account = accounts.create_account(
            db.Session(), form.email.data, Role(form.role.data), form.password.data
        )
    except accounts.AccountEmailTaken:
        form.email.errors.append(accounts.AccountEmailTaken.message)
        return render_template("auth/new_account.html", form=form), 409
    log.info("account created by %r: %r (%s)", current_user.email, account.email, account.role)
    flash(f"Account {account.email} ({account.role}) was created.", "success")
    return redirect(url_for("auth.show_account", account_id=account.id), 303)


@bp.get("/accounts/<id:account_id>")
@role_required(Role.ADMIN)
def show_account(account_id: int):
    return _account_page(_existing_account(account_id))


def _change(account_id: int, change, done: str):
    """Run ``change()``; 404 for an unknown account, 409 for the last admin."""
    try:
        account = change()
    except accounts.AccountNotFound:
        abort(404, description="There is no account with this id.")
    except accounts.LastAdmin:
        flash(accounts.LastAdmin.message, "error")
        return _account_page(_existing_account(account_id), 409)
    log.info("account %r: %s by %r", account.email, done, current_user.email)
    page = url_for("auth.show_account", account_id=account_id)
    if account.id == current_user.id:
        page = _continue_after_own_change(account) or page
    flash(f"{account.email}: {done}.", "success")
    return redirect(page, 303)


def _continue_after_own_change(account: accounts.AccountSnapshot) -> str | None:
    """Changing your own account ended your sessions too: carry on in this
    one (a new cookie), unless it was disabled. Returns where to go when the
    account page is no longer yours to see."""
    if account.disabled:
        session.clear()
        logout_user()
        return url_for("auth.login_form")
    start_signed_in_session(account)
    return None if account.role is Role.ADMIN else url_for("users.list_users")


@bp.post("/accounts/<id:account_id>/role")
@role_required(Role.ADMIN)
def change_role(account_id: int):
    form = RoleForm()
    if not form.validate():
        return _account_page(_existing_account(account_id), 422, role_form=form)
    role = Role(form.role.data)
    return _change(account_id, lambda: accounts.change_role(db.Session(), account_id, role),
                   f"role is now {role}")


@bp.post("/accounts/<id:account_id>/password")
@role_required(Role.ADMIN)
def reset_password(account_id: int):
    form = PasswordForm()
    if not form.validate():
        return _account_page(_existing_account(account_id), 422, password_form=form)
    return _change(account_id,
                   lambda: accounts.reset_password(db.Session(), account_id, form.password.data),
                   "password changed, signed out everywhere")


@bp.post("/accounts/<id:account_id>/disable")
@role_required(Role.ADMIN)
def disable_account(account_id: int):
    return _change(account_id, lambda: accounts.set_disabled(db.Session(), account_id, True),
                   "disabled and signed out everywhere")


@bp.post("/accounts/<id:account_id>/enable")
@role_required(Role.ADMIN)
def enable_account(account_id: int):
    return _change(account_id, lambda: accounts.set_disabled(db.Session(), account_id, False),
                   "enabled")
