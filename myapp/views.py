"""Thin views: read the request, call a service with this thread's session,
render or redirect. No view builds a query."""

from __future__ import annotations

import io
import re
from datetime import datetime, timezone

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from markupsafe import Markup, escape

from myapp import db, importing, users
from myapp.config import MAX_UPLOAD_BYTES
from myapp.db import Session
from myapp.forms import EditUserForm, ImportForm, UserForm
from myapp.models import BIGINT_MAX, EMAIL_MAX, NAME_MAX, User
from myapp.validation import has_forbidden_characters

bp = Blueprint("users", __name__)

# Long enough to search for any whole stored value (an address is up to 254).
SEARCH_MAX = max(NAME_MAX, EMAIL_MAX)


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@bp.app_template_filter("timestamp")
def timestamp(moment: datetime) -> Markup:
    """A ``<time>`` element: a readable UTC date for people, the exact ISO
    timestamp for machines (and on hover).

    One filter call per timestamp, because the list page shows fifty and
    three template expressions each cost more. The date is spelled out
    rather than ``strftime``-ed: ``%b`` follows the server's locale and
    ``%-d`` exists only in glibc (and this is also faster).
    """
    utc = moment.astimezone(timezone.utc)
    exact = escape(utc.isoformat())
    readable = escape(
        f"{utc.day} {MONTHS[utc.month - 1]} {utc.year}, {utc.hour:02}:{utc.minute:02} UTC"
    )
    # Both values are escaped just above. (Markup's own "%" or .format() would
    # escape them too, but cost 130 µs more on a 50-row page, measured.)
    return Markup(f'<time datetime="{exact}" title="{exact}">{readable}</time>')  # nosec B704


@bp.get("/")
def index():
    return redirect(url_for("users.list_users"))


WHOLE_NUMBER = re.compile(r"-?[0-9]{1,30}")  # ASCII digits only; no 10,000-digit ints


def _int_arg(name: str, default: int | None, low: int, high: int) -> int | None:
    """A whole-number query argument clamped to ``low..high``; 400 if not a number."""
    raw = request.args.get(name, "").strip()
    if not raw:
        return default
    if not WHOLE_NUMBER.fullmatch(raw):
        abort(400, description=f"“{name}” must be a whole number.")
    return min(max(int(raw), low), high)


def _search_arg() -> str:
    search = request.args.get("q", "").strip()
    if len(search) > SEARCH_MAX:
        abort(400, description=f"Search text must be at most {SEARCH_MAX} characters.")
    if has_forbidden_characters(search):
        abort(400, description="Search text contains control characters or invalid text.")
    return search


@bp.get("/users")
def list_users():
    search = _search_arg()
    limit = _int_arg("limit", users.PAGE_SIZE, 1, users.MAX_PAGE_SIZE)
    after = _int_arg("after", None, 1, BIGINT_MAX)
    page = users.list_users(Session(), search=search, after=after, limit=limit)
    return render_template("users/list.html", page=page, search=search, limit=limit,
                           search_max=SEARCH_MAX)


@bp.get("/users/new")
def new_user():
    return render_template("users/new.html", form=UserForm())


@bp.post("/users")
def create_user():
    form = UserForm()
    if not form.validate():
        return render_template("users/new.html", form=form), 422
    try:
        user = users.create_user(Session(), form.user_fields())
    except users.EmailTaken:
        form.email.errors.append(users.EmailTaken.message)
        return render_template("users/new.html", form=form), 409
    flash(f"User “{user.name}” was created.", "success")
    return redirect(url_for("users.show_user", user_id=user.id), 303)


@bp.get("/users/<id:user_id>")
def show_user(user_id: int):
    user = _existing_user(user_id)
    history = users.user_history(Session(), user_id)
    return render_template("users/detail.html", user=user, history=history)


def _existing_user(user_id: int) -> User:
    try:
        return users.get_user(Session(), user_id)
    except users.UserNotFound:
        abort(404, description="There is no user with this id.")


@bp.get("/users/<id:user_id>/edit")
def edit_user(user_id: int):
    form = EditUserForm(obj=_existing_user(user_id))
    return render_template("users/edit.html", form=form, user_id=user_id)


@bp.post("/users/<id:user_id>/edit")
def update_user(user_id: int):
    form = EditUserForm()
    if not form.validate():
        _existing_user(user_id)  # an unknown user is a 404 whatever was typed
        if form.version.errors:
            abort(400, description="This form is damaged or incomplete; reload the page.")
        return render_template("users/edit.html", form=form, user_id=user_id), 422
    try:
        user = users.update_user(Session(), user_id, form.version.data, form.user_fields())
    except users.UserNotFound:
        abort(404, description="There is no user with this id; it may have been deleted.")
    except users.StaleVersion as stale:
        return render_template("users/conflict.html", current=stale.current, form=form), 409
    except users.EmailTaken:
        form.email.errors.append(users.EmailTaken.message)
        return render_template("users/edit.html", form=form, user_id=user_id), 409
    flash(f"Saved the changes to “{user.name}”.", "success")
    return redirect(url_for("users.show_user", user_id=user_id), 303)


@bp.post("/users/<id:user_id>/delete")
def delete_user(user_id: int):
    try:
        user = users.delete_user(Session(), user_id)
    except users.UserNotFound:
        abort(404, description="There is no user with this id; it may have been deleted already.")
    flash(f"User “{user.name}” was deleted. Their history is kept.", "success")
    return redirect(url_for("users.list_users"), 303)


@bp.get("/users/import")
def import_form():
    return render_template("users/import.html", form=ImportForm())


def _stream_size(stream) -> int:
    size = stream.seek(0, io.SEEK_END)
    stream.seek(0)
    return size


@bp.post("/users/import")
def import_users():
    form = ImportForm()
    form.validate()  # nothing to check beyond CSRF, but it readies the error lists
    upload = form.file.data
    if upload and upload.filename:
        if _stream_size(upload.stream) > MAX_UPLOAD_BYTES:
            abort(413, description="The file is larger than 5 MB. Nothing was imported.")
        source = form.file
        lines = io.TextIOWrapper(upload.stream, encoding="utf-8-sig", newline="")
    elif form.csv.data and form.csv.data.strip():
        source = form.csv
        lines = io.StringIO(form.csv.data.removeprefix("\ufeff"), newline="")
    else:
        form.file.errors.append("Choose a CSV file, or paste CSV text below.")
        return render_template("users/import.html", form=form), 422
    try:
        report = importing.import_users(Session(), lines)
    except importing.ImportFormatError as err:
        source.errors.append(f"{err} Nothing was imported.")
        return render_template("users/import.html", form=form), 422
    except importing.ImportInProgress:
        source.errors.append(importing.ImportInProgress.message)
        return render_template("users/import.html", form=form), 409
    return render_template("users/import_report.html", report=report)


@bp.get("/healthz")
def healthz():
    if db.ping(Session()):
        return {"status": "ok", "database": "ok"}
    return {"status": "error", "database": "unavailable"}, 503
