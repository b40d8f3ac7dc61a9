"""myapp: create and list users, with SQLAlchemy sessions handled right."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from flask_wtf.csrf import CSRFProtect

from myapp import auth, cli, config, db, errors, guards, routing, templating, views

PROJECT_ROOT = Path(__file__).resolve().parent.parent

csrf = CSRFProtect()


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """The app, configured from the environment (``overrides`` on top)."""
    app = Flask(
        __name__,
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
        instance_path=str(PROJECT_ROOT / "instance"),
    )
    app.config.from_mapping(config.from_environment(Path(app.instance_path), overrides))
    register_request_guards(app)
    register_extensions(app)
    register_sign_in(app)
    register_url_converters(app)
    register_blueprints(app)
    register_template_helpers(app)
    register_errorhandlers(app)
    register_commands(app)
    return app


def register_request_guards(app: Flask) -> None:
    # First: before_request hooks run in the order they were added, and
    # these must refuse a bad body before CSRFProtect's hook reads the form.
    guards.init_app(app)


def register_extensions(app: Flask) -> None:
    db.init_app(app)  # the engine, the session registry, its teardown remove()
    csrf.init_app(app)


def register_sign_in(app: Flask) -> None:
    # Flask-Login, and the guard that checks each view's access rule: after
    # CSRFProtect's hook, so a forged POST is refused (400) before anything
    # asks the database who is signed in.
    auth.init_app(app)


def register_url_converters(app: Flask) -> None:
    routing.init_app(app)


def register_blueprints(app: Flask) -> None:
    app.register_blueprint(views.bp)
    app.register_blueprint(auth.views.bp)


def register_template_helpers(app: Flask) -> None:
    templating.init_app(app)


def register_errorhandlers(app: Flask) -> None:
    errors.init_app(app)


def register_commands(app: Flask) -> None:
    cli.init_app(app)
    auth.cli.init_app(app)
