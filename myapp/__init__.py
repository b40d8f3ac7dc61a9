"""myapp: create and list users, with SQLAlchemy sessions handled right."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from flask_wtf.csrf import CSRFProtect

from myapp import (
    auth,
    cli,
    cli_db,
    config,
    db,
    errors,
    guards,
    observability,
    proxy,
    routing,
    static_files,
    templating,
    views,
)

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
    register_proxy_support(app)
    register_request_guards(app)
    register_extensions(app)
    register_observability(app)
    register_sign_in(app)
    register_url_converters(app)
    register_static_file_urls(app)
    register_blueprints(app)
    register_template_helpers(app)
    register_errorhandlers(app)
    register_commands(app)
    return app


def register_proxy_support(app: Flask) -> None:
    # BEHIND_PROXY: ProxyFix for one hop; a Host outside TRUSTED_HOSTS is a 400.
    proxy.init_app(app)


def register_request_guards(app: Flask) -> None:
    # First: before_request hooks run in the order they were added, and
    # these must refuse a bad body before CSRFProtect's hook reads the form.
    guards.init_app(app)


def register_extensions(app: Flask) -> None:
    db.init_app(app)  # the engine, the session registry, its teardown remove()
    csrf.init_app(app)


def register_observability(app: Flask) -> None:
    # Request ids, request metrics, GET /metrics (myapp/observability/).
    observability.init_app(app)


def register_sign_in(app: Flask) -> None:
    # Flask-Login, and the guard that checks each view's access rule: after
    # CSRFProtect's hook, so a forged POST is refused (400) before anything
    # asks the database who is signed in.
    auth.init_app(app)


def register_url_converters(app: Flask) -> None:
    routing.init_app(app)


def register_static_file_urls(app: Flask) -> None:
    # A content hash in every static URL, so nginx may cache them for a year.
    static_files.init_app(app)


def register_blueprints(app: Flask) -> None:
    app.register_blueprint(views.bp)
    app.register_blueprint(auth.views.bp)


def register_template_helpers(app: Flask) -> None:
    templating.init_app(app)


def register_errorhandlers(app: Flask) -> None:
    errors.init_app(app)


def register_commands(app: Flask) -> None:
    cli.init_app(app)
    cli_db.init_app(app)  # init-db and the db group: the schema's commands
    auth.cli.init_app(app)
