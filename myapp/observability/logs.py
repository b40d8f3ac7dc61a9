"""Log lines as text or JSON (``LOG_FORMAT``), each with its request id.

gunicorn.conf.py names :class:`GunicornLogger` as gunicorn's ``logger_class``:
it sets up gunicorn's error and access logs and the app's own loggers (the
root logger, to stderr) with one format, so every line of a server is text,
or every line is one JSON object (python-json-logger), never a mix.

* Every line carries ``request_id`` (:class:`RequestIdFilter`, from the
  current request's context; none outside a request).
* In JSON the access line also carries the method, the URL rule (``route``),
  status, duration, the request's SQL statement count and time, the account
  id (``null`` until sign-in knows it) and ``instance``.
* What a line never carries: request bodies (passwords, CSRF tokens) and
  headers (cookies). The access line names its fields one by one; the text
  access format is gunicorn's default, which logs no body and no cookie.
"""

from __future__ import annotations

import logging
import socket
import sys
import traceback

from gunicorn import glogging
from pythonjsonlogger.json import JsonFormatter

from myapp.config import log_format
from myapp.observability.request_context import ENVIRON_KEY, current_request_id

TEXT_APP_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] [%(request_id)s] %(name)s: %(message)s"
JSON_FIELDS = ["asctime", "levelname", "name", "process", "message"]
JSON_RENAMED = {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"}


class RequestIdFilter(logging.Filter):
    """Stamps ``record.request_id`` with the current request's id."""

    def __init__(self, missing: str | None):
        super().__init__()
        self.missing = missing  # what lines outside any request carry

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):  # the access line brings its own
            record.request_id = current_request_id() or self.missing
        return True


def json_formatter(instance: str) -> logging.Formatter:
    return JsonFormatter(
        JSON_FIELDS,
        rename_fields=JSON_RENAMED,
        static_fields={"instance": instance},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )


class GunicornLogger(glogging.Logger):
    """gunicorn's logger with the app's format, request ids and access fields."""

    def setup(self, cfg) -> None:
        super().setup(cfg)  # gunicorn's handlers, re-made on a config reload
        self.json = log_format() == "json"
        self.instance = f"{socket.gethostname()}/{','.join(cfg.bind)}"
        if self.json:
            error_format = access_format = app_format = json_formatter(self.instance)
        else:
            error_format = logging.Formatter(self.error_fmt, self.datefmt)
            access_format = logging.Formatter(self.access_fmt)
            app_format = logging.Formatter(TEXT_APP_FORMAT, self.datefmt)
        request_ids = RequestIdFilter(missing=None if self.json else "-")
        for log, formatter in ((self.error_log, error_format), (self.access_log, access_format)):
            for handler in log.handlers:
                handler.setFormatter(formatter)
                handler.addFilter(request_ids)
        self._set_app_handler(app_format, request_ids)

    @staticmethod
    def _set_app_handler(formatter: logging.Formatter, request_ids: RequestIdFilter) -> None:
        """The app's loggers (``myapp``, ``myapp.requests``, ...) → stderr.

        Set on the root logger before the app is built, so Flask sees a
        handler and adds none of its own.
        """
        root = logging.getLogger()
        for handler in list(root.handlers):
            if getattr(handler, "_myapp", False):
                root.removeHandler(handler)
        handler = logging.StreamHandler(sys.stderr)
        handler._myapp = True
        handler.setFormatter(formatter)
        handler.addFilter(request_ids)
        root.addHandler(handler)
        root.setLevel(logging.INFO)

    def access(self, resp, req, environ, request_time) -> None:
        if not self.json:
            super().access(resp, req, environ, request_time)
            return
        if not self.access_log_enabled:
            return
        try:
            self.access_log.info("%s %s %s", environ.get("REQUEST_METHOD"),
                                 environ.get("PATH_INFO"), _status_code(resp),
                                 extra=self._access_fields(resp, environ, request_time))
        except Exception:
            self.error(traceback.format_exc())

    def _access_fields(self, resp, environ, request_time) -> dict:
        observed = environ.get(ENVIRON_KEY)
        fields = {
            "request_id": None,
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),  # never the query string
            "route": None,
            "status": _status_code(resp),
            "duration_ms": round(request_time.total_seconds() * 1000, 1),
            "bytes": getattr(resp, "sent", None),
            "remote_addr": environ.get("REMOTE_ADDR"),
            "sql_statements": None,
            "sql_ms": None,
            "account_id": None,
        }
        if observed is not None:  # None only if the app never saw the request
            fields.update(
                request_id=observed.request_id,
                route=observed.route,
                sql_statements=observed.sql_statements,
                sql_ms=round(observed.sql_seconds * 1000, 1),
                account_id=observed.account_id,
            )
        return fields


def _status_code(resp) -> int | None:
    status = resp.status
    if isinstance(status, str):
        status = status.split(None, 1)[0]
    try:
        return int(status)
    except (TypeError, ValueError):
        return None
