"""Request guards: ``before_request`` checks that refuse a request before any view runs."""

from __future__ import annotations

import io
from urllib.parse import unquote_to_bytes

from flask import Flask, abort, request
from gunicorn.http.errors import ParseException as GunicornParseError
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

# How much of a chunked body is read at a time; so at most this much past the limit.
BODY_READ_STEP = 64 * 1024


def read_unsized_body_whole() -> None:
    """Read a body sent without a length (``Transfer-Encoding: chunked``)
    whole before anything parses it; refuse it whole when it passes
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
    """Answer 400 to a url-encoded body that is not UTF-8.

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


def init_app(app: Flask) -> None:
    """Call before CSRFProtect's ``init_app``: its hook is the first to read the form."""
    # A chunked body is read whole first, so every later reader sees all of it.
    app.before_request(read_unsized_body_whole)
    app.before_request(reject_undecodable_form)
