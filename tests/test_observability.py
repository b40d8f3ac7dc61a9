"""Request ids, request metrics and the metric hooks, through Flask's test client.

In one process prometheus_client keeps its values in memory (no
PROMETHEUS_MULTIPROC_DIR), shared by every app of the test run, so each test
compares values before and after what it does. The multiprocess side —
gunicorn's workers added up — is in test_metrics_server.py.
"""

from __future__ import annotations

import re

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import NullPool

from myapp import db
from myapp.auth import signin
from myapp.models import Role
from myapp.observability import database, metrics
from myapp.observability.request_context import request_id_for
from harness.gunicorn import free_port
from tests.support import accounts
from tests.support.database import assert_nothing_written
from tests.support.forms import submit
from tests.support.prometheus import Scrape

FRESH_ID = re.compile(r"[0-9a-f]{32}")


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- request ids ------------------------------------------------------------------


@pytest.mark.parametrize("sent", [
    "a", "req-42", "A.b_c-9", "x" * 128,
    "6f1c8a0d2b3e4f5a6b7c8d9e0f1a2b3c",  # nginx's $request_id
])
def test_a_sane_request_id_is_echoed(client, sent):
    response = client.get("/metrics", headers={"X-Request-ID": sent})
    assert response.headers.get_all("X-Request-ID") == [sent]


@pytest.mark.parametrize("sent", [
    "", "x" * 129, "has space", "tab\there", "bell\x07", "quote\"d", "semi;colon",
    "slash/ed", "ünïcode", "<script>",
])
def test_an_insane_request_id_is_replaced_by_a_fresh_one(client, sent):
    # environ_overrides: the raw header value, control characters included.
    response = client.get("/metrics", environ_overrides={"HTTP_X_REQUEST_ID": sent})
    [request_id] = response.headers.get_all("X-Request-ID")
    assert request_id != sent
    assert FRESH_ID.fullmatch(request_id)


def test_without_a_request_id_each_request_gets_its_own(client):
    ids = {client.get("/metrics").headers["X-Request-ID"] for _ in range(5)}
    assert len(ids) == 5
    assert all(FRESH_ID.fullmatch(request_id) for request_id in ids)


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/", 302),
    ("GET", "/no/such/page", 404),
    ("POST", "/users", 400),  # no CSRF token
    ("DELETE", "/users", 405),
    ("GET", "/static/style.css", 200),
])
def test_every_response_carries_one_request_id(client, database_url, method, path, status):
    response = client.open(path, method=method, headers={"X-Request-ID": "every-1"})
    assert response.status_code == status
    assert response.headers.get_all("X-Request-ID") == ["every-1"]


def test_request_id_rule():
    assert request_id_for("abc") == "abc"
    assert FRESH_ID.fullmatch(request_id_for(None))
    assert FRESH_ID.fullmatch(request_id_for("a\nb"))


# --- request metrics ----------------------------------------------------------------


def test_requests_are_counted_by_url_rule_never_by_raw_path(client, database_url):
    route = "/users/<id:user_id>"
    before = sample("myapp_http_requests_total", route=route, method="GET", status="404")
    timed_before = sample("myapp_http_request_duration_seconds_count", route=route, method="GET")
    for user_id in (123, 456, 789):
        assert client.get(f"/users/{user_id}").status_code == 404
    assert sample("myapp_http_requests_total", route=route, method="GET", status="404") == before + 3
    assert sample("myapp_http_request_duration_seconds_count",
                  route=route, method="GET") == timed_before + 3
    scraped = client.get("/metrics").get_data(as_text=True)
    assert "/users/123" not in scraped
    assert "/users/456" not in scraped


def test_unmatched_paths_and_unknown_methods_share_one_series(client):
    before = sample("myapp_http_requests_total", route="(unmatched)", method="other", status="404")
    for n in range(3):
        assert client.open(f"/nothing/{n}", method="BREW").status_code == 404
    assert sample("myapp_http_requests_total",
                  route="(unmatched)", method="other", status="404") == before + 3
    scraped = client.get("/metrics").get_data(as_text=True)
    assert "BREW" not in scraped
    assert "/nothing/" not in scraped


def test_sql_statements_of_a_request_are_counted_and_timed(client, app, make_user):
    user_id = make_user().id
    route = "/users/<id:user_id>"
    seen = []  # what the database really received, counted independently

    def count(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    engine = db.engine()
    event.listen(engine, "before_cursor_execute", count)
    try:
        count_before = sample("myapp_http_request_sql_statements_count", route=route)
        sum_before = sample("myapp_http_request_sql_statements_sum", route=route)
        time_before = sample("myapp_http_request_sql_duration_seconds_sum", route=route)
        assert client.get(f"/users/{user_id}").status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(seen) >= 2  # the user, then their history
    assert sample("myapp_http_request_sql_statements_count", route=route) == count_before + 1
    assert sample("myapp_http_request_sql_statements_sum", route=route) == sum_before + len(seen)
    assert sample("myapp_http_request_sql_duration_seconds_sum", route=route) > time_before


# --- pool metrics (one process) -----------------------------------------------------


def test_pool_gauges_follow_checkouts(app):
    engine = db.engine()
    assert sample("myapp_db_pool_size", pool="primary") == 8
    before = sample("myapp_db_pool_checked_out_connections", pool="primary")
    waits = sample("myapp_db_pool_checkout_wait_seconds_count", pool="primary")
    with engine.connect(), engine.connect():
        assert sample("myapp_db_pool_checked_out_connections", pool="primary") == before + 2
    assert sample("myapp_db_pool_checked_out_connections", pool="primary") == before
    assert sample("myapp_db_pool_checkout_wait_seconds_count", pool="primary") == waits + 2


def test_an_invalidated_connection_is_counted(app):
    engine = db.engine()
    before = sample("myapp_db_pool_invalidations_total", pool="primary")
    with engine.connect() as conn:
        conn.invalidate()
    assert sample("myapp_db_pool_invalidations_total", pool="primary") == before + 1


# --- why a 503 -------------------------------------------------------------------------


def _real_error(engine, sql: str):
    with engine.connect() as conn:
        try:
            conn.execute(text(sql))
        except Exception as err:  # the real exception SQLAlchemy raises
            return err
    raise AssertionError(f"{sql!r} did not fail")


def test_database_errors_are_classified_by_cause(database_url):
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        timeout = _real_error(engine, "SET LOCAL statement_timeout = 1; SELECT pg_sleep(1)")
        missing = _real_error(engine, "SELECT * FROM no_such_table")
    finally:
        engine.dispose()
    nowhere = create_engine(f"postgresql+psycopg2://root@127.0.0.1:{free_port()}/x",
                            poolclass=NullPool, connect_args={"connect_timeout": 1})
    with pytest.raises(OperationalError) as refused:
        nowhere.connect()
    assert isinstance(missing, ProgrammingError)
    assert database.unavailable_cause(PoolTimeoutError("QueuePool limit")) == "pool_timeout"
    assert database.unavailable_cause(timeout) == "statement_timeout"
    assert database.unavailable_cause(missing) == "schema_missing"
    assert database.unavailable_cause(refused.value) == "database_unreachable"


# --- feature counters and the hooks for other features ----------------------------


def test_import_rows_are_counted_once_committed(client, tables):
    created = sample("myapp_import_rows_total", outcome="created")
    rejected = sample("myapp_import_rows_total", outcome="rejected")
    csv = "name,email\nAda,ada@example.com\nBob,not-an-email\nCy,cy@example.com\n"
    response = submit(client, "/users/import", {"csv": csv}, page="/users/import")
    assert response.status_code == 200
    assert tables.counts() == (2, 2)
    assert sample("myapp_import_rows_total", outcome="created") == created + 2
    assert sample("myapp_import_rows_total", outcome="rejected") == rejected + 1


def test_a_refused_import_counts_no_rows(client, tables):
    created = sample("myapp_import_rows_total", outcome="created")
    with assert_nothing_written(tables):
        response = submit(client, "/users/import", {"csv": "not,a header\n1,2\n"},
                          page="/users/import")
    assert response.status_code == 422
    assert sample("myapp_import_rows_total", outcome="created") == created


@pytest.mark.parametrize("record, value, name, label", [
    (metrics.record_sign_in, "success", "myapp_sign_in_attempts_total", "outcome"),
    (metrics.record_sign_in, "locked_out", "myapp_sign_in_attempts_total", "outcome"),
    (metrics.record_read, "replica", "myapp_db_reads_total", "target"),
    (metrics.record_replica_fallback, "lagging", "myapp_db_replica_fallbacks_total", "reason"),
    (metrics.record_database_unavailable, "pool_timeout",
     "myapp_database_unavailable_responses_total", "cause"),
])
def test_hooks_count_known_values_and_refuse_others(record, value, name, label):
    before = sample(name, **{label: value})
    record(value)
    assert sample(name, **{label: value}) == before + 1
    with pytest.raises(ValueError, match=label):
        record("anything-else")
    assert sample(name, **{label: "anything-else"}) == 0


def test_the_login_form_counts_each_attempt_by_outcome(new_client):
    """Wrong passwords up to the limit are failures, the next attempt is
    locked out (429), and the right password, for another account, a success."""
    outcomes = ("failure", "locked_out", "success")
    before = {outcome: sample("myapp_sign_in_attempts_total", outcome=outcome)
              for outcome in outcomes}
    client = new_client(None)
    viewer = accounts.EMAILS[Role.VIEWER]
    statuses = [submit(client, "/login", {"email": viewer, "password": "wrong password!"},
                       page="/login").status_code for _ in range(signin.MAX_FAILURES + 1)]
    signed_in = submit(client, "/login", {"email": accounts.EMAILS[Role.EDITOR],
                                          "password": accounts.PASSWORD}, page="/login")
    assert statuses == [401] * signin.MAX_FAILURES + [429]
    assert signed_in.status_code == 303
    counted = {outcome: sample("myapp_sign_in_attempts_total", outcome=outcome) - before[outcome]
               for outcome in outcomes}
    assert counted == {"failure": signin.MAX_FAILURES, "locked_out": 1, "success": 1}


def test_replica_lag_hook_sets_the_gauge():
    metrics.set_replica_lag(2.5)
    assert sample("myapp_db_replica_lag_seconds") == 2.5
    metrics.set_replica_lag(0)
    assert sample("myapp_db_replica_lag_seconds") == 0


def test_fixed_label_sets_exist_before_their_first_event(client):
    scrape = Scrape(client.get("/metrics").get_data(as_text=True))
    for cause in metrics.UNAVAILABLE_CAUSES:
        assert scrape.matching("myapp_database_unavailable_responses_total", cause=cause)
    for outcome in metrics.SIGN_IN_OUTCOMES:
        assert scrape.matching("myapp_sign_in_attempts_total", outcome=outcome)
