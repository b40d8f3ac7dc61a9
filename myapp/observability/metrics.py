"""Every Prometheus metric myapp exports, in one catalogue.

An operator reads this file to know what ``/metrics`` holds; a feature that
wants to count something calls one of the small ``record_*`` functions (or a
metric below), never defines its own elsewhere. docs/operations.md shows the
PromQL for each.

Rules every metric here follows, because they keep Prometheus healthy:

* **Bounded labels.** A label's values come from a fixed set (``route`` is
  the URL *rule*, ``/users/<id:user_id>``, never the raw path; ``method`` is
  folded into the standard verbs), so a client cannot create new series.
  The ``record_*`` functions refuse a value outside their set.
* **Gunicorn multiprocess mode.** Under gunicorn each worker writes its
  values to files in ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` adds them
  up (see :mod:`myapp.observability.multiprocess`). Counters and histograms
  are summed over every worker that ever ran; gauges use a ``live*`` mode, so
  a dead worker's gauges disappear with it. Custom collectors cannot work in
  that mode, so everything is a plain Counter, Gauge or Histogram.
"""

from __future__ import annotations

import os

from prometheus_client import Counter, Gauge, Histogram

# Where this process's metric values live, as prometheus_client saw it when
# it was imported (it decides once): gunicorn.conf.py sets the variable for
# the server; None means plain per-process values (`flask run`, tests,
# commands). Read once here, so a later change to the environment cannot
# make /metrics read a directory these metrics never wrote to.
MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None

# --- requests ---------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "myapp_http_requests_total",
    "HTTP requests answered, by URL rule, method and status code.",
    ["route", "method", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "myapp_http_request_duration_seconds",
    "Time from the request reaching the app to its response being ready, by URL rule and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
REQUEST_SQL_STATEMENTS = Histogram(
    "myapp_http_request_sql_statements",
    "SQL statements one request sent to the database, by URL rule.",
    ["route"],
    buckets=(0, 1, 2, 3, 5, 8, 13, 21, 50, 100),
)
REQUEST_SQL_DURATION = Histogram(
    "myapp_http_request_sql_duration_seconds",
    "Time one request spent in SQL statements (sent until the result came back), by URL rule.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# A 503 answered because of the database, by what went wrong.
UNAVAILABLE_CAUSES = (
    "pool_timeout",  # no pooled connection within DB_POOL_TIMEOUT
    "database_unreachable",  # connection refused, cut or closed by the server
    "statement_timeout",  # PostgreSQL cancelled a statement (statement_timeout)
    "schema_missing",  # the tables do not exist: init-db was never run
    "database_error",  # any other operational error (deadlock, serialization, ...)
)
DATABASE_UNAVAILABLE = Counter(
    "myapp_database_unavailable_responses_total",
    "503 pages answered because of the database, by cause.",
    ["cause"],
)

# --- the connection pool (one per worker process) ---------------------------

POOL_SIZE = Gauge(
    "myapp_db_pool_size",
    "Connections the worker's pool may hold (DB_POOL_SIZE), per worker process.",
    ["pool"],
    multiprocess_mode="liveall",
)
POOL_CHECKED_OUT = Gauge(
    "myapp_db_pool_checked_out_connections",
    "Connections checked out of the pool right now, per worker process.",
    ["pool"],
    multiprocess_mode="liveall",
)
POOL_CHECKOUT_WAIT = Histogram(
    "myapp_db_pool_checkout_wait_seconds",
    "Time to get a usable connection from the pool: queueing for a free one, "
    "plus the pre-ping and, for a new connection, connecting.",
    ["pool"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
POOL_TIMEOUTS = Counter(
    "myapp_db_pool_timeouts_total",
    "Checkouts that gave up after DB_POOL_TIMEOUT seconds without a connection.",
    ["pool"],
)
POOL_INVALIDATIONS = Counter(
    "myapp_db_pool_invalidations_total",
    "Pooled connections thrown away as broken (failed pre-ping, lost connection).",
    ["pool"],
)

# --- features ---------------------------------------------------------------

IMPORT_OUTCOMES = ("created", "rejected")
IMPORT_ROWS = Counter(
    "myapp_import_rows_total",
    "CSV import rows, by outcome, counted when the import's transaction commits.",
    ["outcome"],
)

# Hooks for sign-in (issue 13): defined here, counted by the sign-in views.
SIGN_IN_OUTCOMES = (
    "success",  # right password: signed in
    "failure",  # wrong email or password (401)
    "locked_out",  # refused because the email had too many failures (429)
)
SIGN_IN_ATTEMPTS = Counter(
    "myapp_sign_in_attempts_total",
    "Sign-in attempts, by outcome.",
    ["outcome"],
)

# Hooks for replica routing (issue 15): defined here, set by the router.
READ_TARGETS = ("primary", "replica")
DB_READS = Counter(
    "myapp_db_reads_total",
    "Read-only requests (GET/HEAD) by the database that served them.",
    ["target"],
)
REPLICA_FALLBACK_REASONS = (
    "unavailable",  # the replica could not be reached
    "lagging",  # the replica was too far behind
    "read_your_writes",  # the client wrote recently; its reads go to the primary
)
REPLICA_FALLBACKS = Counter(
    "myapp_db_replica_fallbacks_total",
    "Reads sent to the primary although a replica is configured, by reason.",
    ["reason"],
)
REPLICA_PROBES = Counter(
    "myapp_db_replica_probes_total",
    "Queries of a replica's replay position and lag by the router (per worker: once a second,"
    " more often only while a client waits for its own write to be replayed).",
)
REPLICA_LAG = Gauge(
    "myapp_db_replica_lag_seconds",
    "Replication lag the replica router last observed (highest over the live workers).",
    multiprocess_mode="livemax",
)

# Every series of a fixed label set exists from the start, at 0, so rate()
# and alerts see a counter before its first event rather than no data.
for _cause in UNAVAILABLE_CAUSES:
    DATABASE_UNAVAILABLE.labels(cause=_cause)
for _outcome in IMPORT_OUTCOMES:
    IMPORT_ROWS.labels(outcome=_outcome)
for _outcome in SIGN_IN_OUTCOMES:
    SIGN_IN_ATTEMPTS.labels(outcome=_outcome)
for _target in READ_TARGETS:
    DB_READS.labels(target=_target)
for _reason in REPLICA_FALLBACK_REASONS:
    REPLICA_FALLBACKS.labels(reason=_reason)


def _checked(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def record_import(created: int, rejected: int) -> None:
    """A CSV import committed ``created`` rows and rejected ``rejected``."""
    IMPORT_ROWS.labels(outcome="created").inc(created)
    IMPORT_ROWS.labels(outcome="rejected").inc(rejected)


def record_sign_in(outcome: str) -> None:
    """Count one sign-in attempt: ``success``, ``failure`` or ``locked_out``."""
    SIGN_IN_ATTEMPTS.labels(outcome=_checked(outcome, SIGN_IN_OUTCOMES, "outcome")).inc()


def record_read(target: str) -> None:
    """Count one read served by ``primary`` or ``replica``."""
    DB_READS.labels(target=_checked(target, READ_TARGETS, "target")).inc()


def record_replica_fallback(reason: str) -> None:
    """Count one read sent to the primary instead of the replica, and why."""
    REPLICA_FALLBACKS.labels(reason=_checked(reason, REPLICA_FALLBACK_REASONS, "reason")).inc()


def record_replica_probe() -> None:
    """The router asked a replica for its replay position once."""
    REPLICA_PROBES.inc()


def set_replica_lag(seconds: float) -> None:
    """The replica's replay lag as the router just measured it."""
    REPLICA_LAG.set(seconds)


def record_database_unavailable(cause: str) -> None:
    """Count one 503 answered because of the database (see UNAVAILABLE_CAUSES)."""
    DATABASE_UNAVAILABLE.labels(cause=_checked(cause, UNAVAILABLE_CAUSES, "cause")).inc()
