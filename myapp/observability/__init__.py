"""Seeing inside a running myapp: metrics, request ids, structured logs.

* :mod:`.metrics` — the catalogue of every Prometheus metric, and the
  ``record_*`` functions features call;
* :mod:`.request_context` — the request id and per-request figures (a WSGI
  middleware and a context variable);
* :mod:`.database` — pool and SQL metrics from SQLAlchemy (attached by
  ``myapp.db.build_engine``);
* :mod:`.endpoint` — ``GET /metrics``;
* :mod:`.multiprocess` — prometheus_client's gunicorn multiprocess mode;
* :mod:`.logs` — text or JSON log lines (gunicorn's ``logger_class``).

The operator's side — what to scrape, the alerts, the dashboards — is in
docs/operations.md and deploy/prometheus/.
"""

from __future__ import annotations

from flask import Flask

from myapp.observability import endpoint
from myapp.observability.request_context import RequestObserver, note_route


def init_app(app: Flask) -> None:
    # Outermost middleware: it times the whole request, teardown included,
    # and puts X-Request-ID on every response, error pages too.
    app.wsgi_app = RequestObserver(app.wsgi_app, app.config["SLOW_REQUEST_MS"])
    app.teardown_request(note_route)
    app.register_blueprint(endpoint.bp)
