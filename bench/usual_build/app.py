"""The usual build's app (``gunicorn -c gunicorn.conf.py bench.usual_build.app:app``):
the list page, the create form and its POST, a user's page, and sign-in."""

from __future__ import annotations

import os
from functools import wraps
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from flask import Flask, abort, flash, redirect, render_template, url_for
from flask_login import LoginManager, current_user, login_required, login_user
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.exc import IntegrityError
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Email, Length

from bench.usual_build.models import Account, AuditEvent, User, db

ROOT = Path(__file__).resolve().parents[2]

app = Flask(__name__, static_folder=str(ROOT / "static"))
app.config.update(
    SECRET_KEY=os.environ["SECRET_KEY"],
    SQLALCHEMY_DATABASE_URI=os.environ["DATABASE_URL"],
    # The common advice for PostgreSQL behind a pool (myapp pings too).
    SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
)
db.init_app(app)
CSRFProtect(app)
login_manager = LoginManager(app)
login_manager.login_view = "login"
hasher = PasswordHasher()


@login_manager.user_loader
def load_user(account_id: str) -> Account | None:
    return db.session.get(Account, int(account_id))


def editor_required(view):
    @wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        if not current_user.may("editor"):
            abort(403)
        return view(*args, **kwargs)
    return wrapped


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])


class UserForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=100)])
    email = EmailField("Email", validators=[DataRequired(), Email(), Length(min=3, max=254)])


@app.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if form.validate_on_submit():
        account = db.session.execute(
            db.select(Account).filter(db.func.lower(Account.email) == form.email.data.lower())
        ).scalar_one_or_none()
        try:
            if account and not account.disabled and hasher.verify(account.password_hash, form.password.data):
                login_user(account)
                return redirect(url_for("list_users"), 303)
        except VerificationError:
            pass
        flash("Wrong email or password.", "error")
    return render_template("login.html", form=form)


@app.get("/users")
@login_required
def list_users():
    page = db.paginate(db.select(User).order_by(User.id.desc()), per_page=50)
    return render_template("list.html", page=page)


@app.get("/users/new")
@editor_required
def new_user():
    return render_template("new.html", form=UserForm())


@app.post("/users")
@editor_required
def create_user():
    form = UserForm()
    if not form.validate_on_submit():
        return render_template("new.html", form=form), 422
    user = User(name=form.name.data.strip(), email=form.email.data.strip())
    db.session.add(user)
    try:
        db.session.flush()  # the id, for the audit row
        db.session.add(AuditEvent(user_id=user.id, action="create", actor_id=current_user.id,
                                  detail={"name": user.name, "email": user.email}))
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        form.email.errors.append("A user with this email already exists.")
        return render_template("new.html", form=form), 409
    flash(f"User “{user.name}” was created.", "success")
    return redirect(url_for("show_user", user_id=user.id), 303)


@app.get("/users/<int:user_id>")
@login_required
def show_user(user_id: int):
    user = db.get_or_404(User, user_id)
    history = db.session.execute(
        db.select(AuditEvent).filter_by(user_id=user_id).order_by(AuditEvent.id.desc())
    ).scalars().all()
    return render_template("detail.html", user=user, history=history)


@app.post("/logout")
def logout():
    from flask_login import logout_user

    logout_user()
    return redirect(url_for("login"), 303)


@app.get("/healthz")
def healthz():
    # The harness waits for this before sending load, as it does for myapp.
    db.session.execute(db.text("SELECT 1"))
    return {"status": "ok", "database": "ok"}
