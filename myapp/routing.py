"""URL converters: how a path segment becomes a view argument."""

from __future__ import annotations

from flask import Flask
from werkzeug.routing import BaseConverter

from myapp.models import BIGINT_MAX


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


def init_app(app: Flask) -> None:
    """Before any blueprint: a rule is compiled with its converters when added."""
    app.url_map.converters["id"] = IdConverter
