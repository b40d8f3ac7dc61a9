"""Flask-WTF forms. Their rules are the services' rules (myapp.validation)."""

from __future__ import annotations

import io
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from flask import abort, request
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from gunicorn.http.errors import ParseException as GunicornParseError
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
from wtforms import EmailField, IntegerField, StringField, TextAreaField
from wtforms.validators import InputRequired, NumberRange, StopValidation
from wtforms.widgets import HiddenInput

from myapp.models import EMAIL_MAX, NAME_MAX
from myapp.validation import InvalidField, UserFields, clean_email, clean_name


class ServiceRule:
    """Run a ``myapp.validation.clean_*`` function as a WTForms validator."""

    def __init__(self, clean: Callable[[str | None], str]):
        self.clean = clean

    def __call__(self, form, field) -> None:
        try:
            field.data = self.clean(field.data)
        except InvalidField as err:
            raise StopValidation(str(err)) from None


class UserForm(FlaskForm):
    name = StringField(
        "Name",
        validators=[ServiceRule(clean_name)],
        render_kw={"autocomplete": "name", "maxlength": NAME_MAX},
    )
    email = EmailField(
        "Email",
        validators=[ServiceRule(clean_email)],
        render_kw={"autocomplete": "email", "maxlength": EMAIL_MAX},
    )

    def user_fields(self) -> UserFields:
        return UserFields(name=self.name.data, email=self.email.data)


class EditUserForm(UserForm):
    # The version the form was loaded at; saving over a newer one is refused.
    version = IntegerField(
        widget=HiddenInput(),
        validators=[InputRequired(), NumberRange(min=1, max=2**31 - 1)],
    )


class ImportForm(FlaskForm):
    file = FileField("CSV file", render_kw={"accept": ".csv,text/csv"})
    csv = TextAreaField(
        "…or paste CSV text",
        render_kw={"rows": 8, "spellcheck": "false", "placeholder": "name,email\nAda Lovelace,ada@example.com"},
    )


# How much of a chunked body is read at a time; so at most this much past the limit.
BODY_READ_STEP = 64 * 1024


def read_unsized_body_whole() -> None:
    """``before_request``: read a body sent without a length (``Transfer-Encoding:
    chunked``) whole before anything parses it; refuse it whole when it passes
    ``MAX_CONTENT_LENGTH`` (413) or its framing is broken (400).

    Werkzeug holds such a stream to the limit by *stopping* there: a parser
    that reads "everything" gets the first ``MAX_CONTENT_LENGTH`` bytes and
    no error, so an import over the limit lost its last rows without a word
    (only the multipart parser, which reads again, got its 413). And the
    server's chunk decoder raises its own exceptions on broken framing
    (gunicorn's ``InvalidChunkSize``, ``ChunkMissingTerminator``...), which
    Werkzeug does not catch: a 500. Once read here, the body goes on with a
    ``Content-Length``, as a buffering proxy would send it, so every route
    that reads a body takes Werkzeug's sized path.
    """
    environ = request.environ
    if "HTTP_TRANSFER_ENCODING" not in environ or not environ.get("wsgi.input_terminated"):
        return  # a body of declared length (Werkzeug enforces it), or no body at all
    limit = request.max_content_length
    body = bytearray()
    try:
        while piece := environ["wsgi.input"].read(BODY_READ_STEP):
            body += piece
            if limit is not None and len(body) > limit:
                raise RequestEntityTooLarge()
    except (GunicornParseError, OSError, ValueError):
        # OSError: gunicorn's NoMoreData, the client hung up mid-body.
        raise BadRequest("The request body's chunked framing is broken or incomplete.") from None
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    del environ["HTTP_TRANSFER_ENCODING"]  # else Werkzeug ignores the length


def reject_undecodable_form() -> None:
    """``before_request``: answer 400 to a url-encoded body that is not UTF-8.

    Werkzeug keeps undecodable bytes as ``%XX`` text rather than failing, so
    without this check a Latin-1 "é" would be stored as the three characters
    "%E9". (Multipart fields decode bad bytes to U+FFFD, which the field
    rules reject.) The body is cached, so form parsing reads it from memory.
    """
    if request.method != "POST" or request.mimetype != "application/x-www-form-urlencoded":
        return
    try:
        unquote_to_bytes(request.get_data(cache=True)).decode("utf-8")
    except UnicodeDecodeError:
        abort(400, description="The form data is not valid UTF-8 text.")
