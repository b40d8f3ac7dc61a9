"""myapp: create and list users, with SQLAlchemy sessions handled right."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from flask_wtf.csrf import CSRFProtect
from werkzeug.routing import BaseConverter

from myapp import cli, config, db, errors, views
from myapp.forms import read_unsized_body_whole, reject_undecodable_form
from myapp.models import BIGINT_MAX

PROJECT_ROOT = Path(__file__).resolve().parent.parent

csrf = CSRFProtect()


class IdConverter(BaseConverter):
    """``<id:...>``: a user id in ASCII digits; an id no user can have is 404.

    Ids that cannot exist (0, or beyond PostgreSQL's bigint) become
    ``NO_SUCH_ID`` rather than failing the match: Werkzeug checks a rule's
    methods before its converters, so a converter refusing ``/users/0/edit``
    would leave only the edit form's GET rule matching that path, and a POST
    would get 405 instead of the 404 of any unknown user. 0 is never an id
    (identity columns start at 1), so the view looks it up and finds nothing.
    """

    regex = r"[0-9]{1,30}"  # not \d: Werkzeug's \d+ also takes "０" and other digits
    NO_SUCH_ID = 0

    def to_python(self, value: str) -> int:
        number = int(value)
        return number if 1 <= number <= BIGINT_MAX else self.NO_SUCH_ID

    def to_url(self, value: int) -> str:
        return str(int(value))


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
    # A chunked body is read whole first, so every later reader sees all of it.
    app.before_request(read_unsized_body_whole)
    app.before_request(reject_undecodable_form)
    csrf.init_app(app)
