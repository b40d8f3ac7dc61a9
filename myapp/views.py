"""Thin views: read the request, call a service with this thread's session,
render or redirect. No view builds a query; an unknown user (the services'
``UserNotFound``) becomes the 404 page in myapp.errors."""

from __future__ import annotations

import io
import re

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from myapp import db, importing, listing, replicas, users
from myapp.auth.access import public, role_required
from myapp.config import MAX_UPLOAD_BYTES, MAX_UPLOAD_TEXT
from myapp.forms import EditUserForm, ImportForm, UserForm
from myapp.models import BIGINT_MAX, Role
from myapp.validation import has_forbidden_characters

bp = Blueprint("users", __name__)

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
    if len(search) > listing.SEARCH_MAX:
        abort(400, description=f"Search text must be at most {listing.SEARCH_MAX} characters.")
    if has_forbidden_characters(search):
        abort(400, description="Search text contains control characters or invalid text.")
    return search


@bp.get("/")
@role_required(Role.VIEWER)
def index():
    return redirect(url_for("users.list_users"))


@bp.get("/users")
@role_required(Role.VIEWER)
def list_users():
    search = _search_arg()
    limit = _int_arg("limit", listing.PAGE_SIZE, 1, listing.MAX_PAGE_SIZE)
    after = _int_arg("after", None, 1, BIGINT_MAX)
    page = listing.list_users(db.Session(), search=search, after=after, limit=limit)
    return render_template("users/list.html", page=page, search=search, limit=limit)


@bp.get("/users/new")
@role_required(Role.EDITOR)
def new_user():
    return render_template("users/new.html", form=UserForm())


@bp.post("/users")
@role_required(Role.EDITOR)
def create_user():
    form = UserForm()
    if not form.validate():
        return render_template("users/new.html", form=form), 422
    try:
        user = users.create_user(db.Session(), form.user_fields(), actor_id=current_user.id)
    except users.EmailTaken:
        form.email.errors.append(users.EmailTaken.message)
        return render_template("users/new.html", form=form), 409
    flash(f"User “{user.name}” was created.", "success")
    return redirect(url_for("users.show_user", user_id=user.id), 303)


@bp.get("/users/<id:user_id>")
@role_required(Role.VIEWER)
def show_user(user_id: int):
    user = users.get_user(db.Session(), user_id)
    history = users.user_history(db.Session(), user_id)
    return render_template("users/detail.html", user=user, history=history)


@bp.get("/users/<id:user_id>/edit")
@role_required(Role.EDITOR)
def edit_user(user_id: int):
    form = EditUserForm(obj=users.get_user(db.Session(), user_id))
    return render_template("users/edit.html", form=form, user_id=user_id)


@bp.post("/users/<id:user_id>/edit")
@role_required(Role.EDITOR)
def update_user(user_id: int):
    form = EditUserForm()
    if not form.validate():
        users.get_user(db.Session(), user_id)  # an unknown user is a 404 whatever was typed
        if form.version.errors:
            abort(400, description="This form is damaged or incomplete; reload the page.")
        return render_template("users/edit.html", form=form, user_id=user_id), 422
    try:
        user = users.update_user(db.Session(), user_id, form.version.data, form.user_fields(),
                                 actor_id=current_user.id)
    except users.StaleVersion as stale:
        return render_template("users/conflict.html", current=stale.current, form=form), 409
    except users.EmailTaken:
        form.email.errors.append(users.EmailTaken.message)
        return render_template("users/edit.html", form=form, user_id=user_id), 409
    flash(f"Saved the changes to “{user.name}”.", "success")
    return redirect(url_for("users.show_user", user_id=user_id), 303)


@bp.post("/users/<id:user_id>/delete")
@role_required(Role.EDITOR)
def delete_user(user_id: int):
    user = users.delete_user(db.Session(), user_id, actor_id=current_user.id)
    flash(f"User “{user.name}” was deleted. Their history is kept.", "success")
    return redirect(url_for("users.list_users"), 303)


@bp.get("/users/import")
@role_required(Role.EDITOR)
def import_form():
    return render_template("users/import.html", form=ImportForm())


def _stream_size(stream) -> int:
    size = stream.seek(0, io.SEEK_END)
    stream.seek(0)
    return size


@bp.post("/users/import")
@role_required(Role.EDITOR)
def import_users():
    form = ImportForm()
    form.validate()  # nothing to check beyond CSRF, but it readies the error lists
    upload = form.file.data
    if upload and upload.filename:
        if _stream_size(upload.stream) > MAX_UPLOAD_BYTES:
            abort(413, description=f"The file is larger than {MAX_UPLOAD_TEXT}. "
                               "Nothing was imported.")
        source, lines = form.file, importing.text_lines(upload.stream)
    elif form.csv.data and form.csv.data.strip():
        source, lines = form.csv, importing.pasted_lines(form.csv.data)
    else:
        form.file.errors.append("Choose a CSV file, or paste CSV text below.")
        return render_template("users/import.html", form=form), 422
    try:
        report = importing.import_users(db.Session(), lines, actor_id=current_user.id)
    except importing.ImportFormatError as err:
        source.errors.append(f"{err} Nothing was imported.")
        return render_template("users/import.html", form=form), 422
    except importing.ImportInProgress:
        source.errors.append(importing.ImportInProgress.message)
        return render_template("users/import.html", form=form), 409
    return render_template("users/import_report.html", report=report)


@bp.get("/healthz")
@public
def healthz():
    """The primary's health decides the status; a replica's state is only
    reported (a replica down or lagging is bypassed, pages still work)."""
    replica = replicas.health()
    extra = {} if replica is None else {"replica": replica}
    if db.ping(db.Session()):
        return {"status": "ok", "database": "ok", **extra}
    return {"status": "error", "database": "unavailable", **extra}, 503
