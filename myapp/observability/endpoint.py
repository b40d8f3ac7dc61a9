"""``GET /metrics``: the instance's metrics in Prometheus' text format.

A blueprint of its own, so that what applies to it (no sign-in, never served
on nginx's public ports) can name it in one place. It never touches the
database: a scrape must answer while the database is down, that is when it
matters most.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from myapp.observability import metrics, multiprocess

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def expose() -> Response:
    if metrics.MULTIPROCESS_DIR is not None:
        body = multiprocess.collect(Path(metrics.MULTIPROCESS_DIR))  # every gunicorn worker
    else:
        body = generate_latest(REGISTRY)  # one process: `flask run`, the test client
    # The classic text format (0.0.4): what generate_latest writes, and what
    # every Prometheus version reads.
    return Response(body, content_type=CONTENT_TYPE_PLAIN_0_0_4)
