"""What one request is, for logs and metrics: its id, its timings, its SQL.

:class:`RequestObserver` wraps the Flask WSGI app (outermost, so it sees the
whole request, teardown included) and, for every request:

* picks the request id — the client's ``X-Request-ID`` when it is sane (nginx
  passes its ``$request_id``), else a fresh one — and sends it back;
* makes an :class:`ObservedRequest` the current one (a context variable:
  each gunicorn thread serves one request at a time, with its own context),
  so the logging filter stamps the id on every line of the request and the
  SQL listeners add up its statements;
* counts it in the request metrics and logs it at WARNING when slow;
* leaves the :class:`ObservedRequest` in the WSGI environ, where gunicorn's
  access logger (:mod:`myapp.observability.logs`) reads the route, the SQL
  figures and the id for the access line.
"""

from __future__ import annotations

import logging
import re
import secrets
from contextvars import ContextVar
from dataclasses import dataclass
from time import perf_counter

from flask import request

from myapp.observability import metrics

REQUEST_ID_HEADER = "X-Request-ID"
ENVIRON_KEY = "myapp.observed_request"
# What a client may choose as its own request id: short, and nothing that
# could break a log line or a header (no spaces, quotes or control characters).
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
# The route of a request no URL rule matched (404, 405): one series for all.
UNMATCHED_ROUTE = "(unmatched)"
# Methods a client may send are unbounded; metrics only know these.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

log = logging.getLogger("myapp.requests")


@dataclass(slots=True)
class ObservedRequest:
    request_id: str
    method: str
    started: float
    route: str = UNMATCHED_ROUTE
    status: int | None = None
    duration: float = 0.0
    sql_statements: int = 0
    sql_seconds: float = 0.0
    # Set by sign-in (issue 13) through set_account_id(); None while anonymous.
    account_id: int | None = None


_current: ContextVar[ObservedRequest | None] = ContextVar("myapp_observed_request", default=None)


def current() -> ObservedRequest | None:
    """The request this thread is serving, or None (CLI, start-up)."""
    return _current.get()


def current_request_id() -> str | None:
    observed = _current.get()
    return observed.request_id if observed else None


def set_account_id(account_id: int | None) -> None:
    """Sign-in calls this once it knows who is asking: logs then carry the id."""
    observed = _current.get()
    if observed is not None:
        observed.account_id = account_id


def request_id_for(client_value: str | None) -> str:
    """The client's id when it is sane, else a new one (32 hex characters)."""
    if client_value and SANE_REQUEST_ID.fullmatch(client_value):
        return client_value
    # 128 random bits (a UUID4 has 122), without building a UUID object.
    return secrets.token_hex(16)


def note_route(exc: BaseException | None = None) -> None:
    """``teardown_request`` hook: remember which URL rule served the request.

    Teardown runs for every request, also one that failed before its view.
    """
    observed = _current.get()
    if observed is not None and request.url_rule is not None:
        observed.route = request.url_rule.rule


class RequestObserver:
    """WSGI middleware: request id, metrics and the slow-request warning."""

    def __init__(self, wsgi_app, slow_request_ms: int):
        self.wsgi_app = wsgi_app
        self.slow_request_seconds = slow_request_ms / 1000
        # (route, method, status) -> that request's metric children: looked
        # up once per label set instead of four times per request.
        self._children: dict[tuple[str, str, int], tuple] = {}

    def __call__(self, environ, start_response):
        observed = ObservedRequest(
            request_id=request_id_for(environ.get("HTTP_X_REQUEST_ID")),
            method=environ.get("REQUEST_METHOD", ""),
            started=perf_counter(),
        )
        environ[ENVIRON_KEY] = observed
        token = _current.set(observed)

        def start_observed_response(status, headers, exc_info=None):
            observed.status = int(status.split(None, 1)[0])
            headers = [(name, value) for name, value in headers
                       if name.lower() != REQUEST_ID_HEADER.lower()]
            headers.append((REQUEST_ID_HEADER, observed.request_id))
            return start_response(status, headers, exc_info)

        try:
            return self.wsgi_app(environ, start_observed_response)
        finally:
            observed.duration = perf_counter() - observed.started
            try:
                self._record(observed)
            finally:
                _current.reset(token)

    def _record(self, observed: ObservedRequest) -> None:
        route = observed.route
        method = observed.method if observed.method in KNOWN_METHODS else "other"
        status = observed.status or 500  # no response started: the app raised
        children = self._children.get((route, method, status))
        if children is None:  # bounded: routes x known methods x status codes
            children = self._children[(route, method, status)] = (
                metrics.HTTP_REQUESTS.labels(route, method, str(status)),
                metrics.HTTP_REQUEST_DURATION.labels(route, method),
                metrics.REQUEST_SQL_STATEMENTS.labels(route),
                metrics.REQUEST_SQL_DURATION.labels(route),
            )
        answered, duration, sql_statements, sql_duration = children
        answered.inc()
        duration.observe(observed.duration)
        sql_statements.observe(observed.sql_statements)
        sql_duration.observe(observed.sql_seconds)
        if observed.duration > self.slow_request_seconds:
            log.warning(
                "slow request: %s %s answered %s in %.0f ms, %d SQL statements took %.0f ms",
                method, route, status, observed.duration * 1000,
                observed.sql_statements, observed.sql_seconds * 1000,
                extra={
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(observed.duration * 1000, 1),
                    "sql_statements": observed.sql_statements,
                    "sql_ms": round(observed.sql_seconds * 1000, 1),
                },
            )
