"""myapp: create and list users, with SQLAlchemy sessions handled right."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from flask_wtf.csrf import CSRFProtect
from werkzeug.routing import IntegerConverter

from myapp import cli, config, db, errors, views
from myapp.forms import reject_undecodable_form

PROJECT_ROOT = Path(__file__).resolve().parent.parent

csrf = CSRFProtect()


class IdConverter(IntegerConverter):
    """``<id:...>``: a positive integer that fits PostgreSQL's bigint, else 404."""

    def __init__(self, map, *args, **kwargs):
        super().__init__(map, min=1, max=2**63 - 1)


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(
        __name__,
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
        instance_path=str(PROJECT_ROOT / "instance"),
    )
    app.config.from_mapping(config.from_environment(Path(app.instance_path), overrides))
    app.url_map.converters["id"] = IdConverter
    register_extensions(app)
    db.init_app(app)
    app.register_blueprint(views.bp)
    errors.init_app(app)
    cli.init_app(app)
    return app


def register_extensions(app: Flask) -> None:
    # Before CSRFProtect's own hook, which is the first to read the form.
    app.before_request(reject_undecodable_form)
    csrf.init_app(app)
