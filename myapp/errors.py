"""Error pages, the 404 of an unknown user, the 503 for a lost database, and
security headers.

Every error a visitor can meet is one of the site's own pages; internals
(tracebacks, SQL) only ever go to the log.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, make_response, render_template, request
from psycopg2.errorcodes import UNDEFINED_TABLE
from sqlalchemy.exc import InterfaceError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException, NotFound, ServiceUnavailable

from myapp import db, replicas
from myapp.users import UserNotFound

from myapp.observability import metrics
from myapp.observability.database import unavailable_cause

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        # These four do not fall back to default-src, so they are spelled out.
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Not no-referrer: Flask-WTF checks the Referer of POSTs made over HTTPS.
    "Referrer-Policy": "same-origin",
}

DATABASE_UNAVAILABLE = (
    "The database could not handle this request right now. Nothing was saved; "
    "please try again in a moment."
)


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, render_http_error)
    app.register_error_handler(UserNotFound, user_not_found)
    # Pool exhausted (no connection within DB_POOL_TIMEOUT), server down,
    # connection cut, statement_timeout: all mean "try again later".
    # A missing table means init-db was never run (also a 503). Any other
    # database error is a bug and stays a 500.
    for error in (PoolTimeoutError, OperationalError, InterfaceError):
        app.register_error_handler(error, database_unavailable)
    app.register_error_handler(ProgrammingError, database_without_tables)
    app.after_request(add_security_headers)
    app.after_request(forbid_storing_pages)


def render_http_error(error: HTTPException):
    headers = [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]
    if error.code == 503:
        headers.append(("Retry-After", "5"))
    body = render_template("error.html", error=error)
    return body, error.code, headers


def user_not_found(error: UserNotFound):
    """Any view that names a user who does not exist (or no longer does)."""
    return render_http_error(NotFound("There is no user with this id; it may have been deleted."))


def database_unavailable(error: Exception):
    if replicas.read_failed_on_replica(db.Session(), error):
        return read_again_from_primary(error)
    metrics.record_database_unavailable(unavailable_cause(error))
    return render_http_error(ServiceUnavailable(DATABASE_UNAVAILABLE))


def read_again_from_primary(error: Exception):
    """A GET whose read failed on its replica (stopped, cut off) runs its view
    once more, reading from the primary: a replica going away mid-request
    costs the visitor nothing. The replica is probed at once, and bypassed
    if down until a later probe finds it healthy (myapp.replicas)."""
    current_app.logger.warning("a read failed on the replica, read again from the primary: %s",
                               replicas.first_line(error))
    db.remove_session()
    metrics.record_replica_fallback("unavailable")
    view = current_app.view_functions[request.endpoint]
    try:
        answer = current_app.ensure_sync(view)(**(request.view_args or {}))
    except Exception as again:  # noqa: BLE001 (answered as any view's error would be)
        # The usual handlers: a 404, or this 503 (the session no longer
        # reads from a replica, so no second retry).
        return current_app.handle_user_exception(again)
    return make_response(answer)


def database_without_tables(error: ProgrammingError):
    """A database nobody ran ``init-db`` on: a deployment step was missed,
    so the operator gets the fix in the log and visitors a 503, not a 500."""
    if getattr(error.orig, "pgcode", None) != UNDEFINED_TABLE:
        raise error  # any other ProgrammingError is a bug: a 500, logged as one
    current_app.logger.error(
        "The database has no tables; run `flask --app app init-db`: %s",
        str(error.orig).strip().splitlines()[0],
    )
    return database_unavailable(error)


def add_security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def forbid_storing_pages(response: Response) -> Response:
    """Pages show people's names and addresses: no cache, shared or the
    browser's own, may keep a copy. Static files keep Flask's caching
    (``no-cache`` with an ETag: stored, revalidated before each use)."""
    if request.endpoint != "static":
        response.headers.setdefault("Cache-Control", "no-store")
    return response
