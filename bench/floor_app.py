"""myapp with parts of its session model taken away — for ``bench/floor.py`` only.

This module is the counter-example: it exists to measure what the app's
database round trips cost, by serving the same views without them. Never
deploy it. ``BENCH_FLOOR`` picks what is taken away:

* ``no-pre-ping``: the pool hands out connections without testing them first
  (one round trip fewer per request; a connection the server dropped while it
  sat in the pool would reach a view and cost the visitor a 503).
* ``autocommit``: no pre-ping, and no transaction around anything: no
  ``BEGIN`` and no ``ROLLBACK`` (two more round trips fewer; the reads of one
  request no longer share a snapshot, and writes are not atomic).
* ``cookie-only-sign-in``: the engine as deployed, but the signed-in account
  is believed from the cookie without reading it (what Flask's cookie
  session alone gives): no revocation — a cookie stays good after logout, a
  new password, a new role or a disabled account.
* ``bare-cursor-sign-in``: the account *is* read on every request, as
  deployed, but with psycopg2's cursor on the session's connection instead
  of a statement through the ``Session``: the cheapest read there is, to
  measure how much of sign-in's cost is the read itself and how much
  SQLAlchemy's part of it. (Its SQL is not counted in the request's
  metrics, and it skips the services' pattern: a measuring device only.)
"""

import os

from sqlalchemy import create_engine

from bench.signin_cost import believe_the_cookie
from myapp import create_app
from myapp.auth.login import SignedInAccount, login_manager
from myapp.db import Session
from myapp.models import Role
from myapp.observability import request_context

VARIANTS = {
    "no-pre-ping": {},
    "autocommit": {"isolation_level": "AUTOCOMMIT"},
}

app = create_app()
_variant = os.environ["BENCH_FLOOR"]


def read_with_a_bare_cursor(cookie_id: str) -> SignedInAccount | None:
    """``load_account`` with the account's row read by psycopg2 directly, on
    the connection the session would use (the benchmarks configure no
    replica, so that is the primary). What it leaves out of the deployed
    loader: SQLAlchemy, and the engine's SQL metrics and error handling."""
    try:
        account_id, session_version = (int(part) for part in cookie_id.split("."))
    except ValueError:
        return None
    dbapi_connection = Session().connection().connection.dbapi_connection
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SELECT id, email, role, session_version, disabled, created_at"
                       " FROM accounts WHERE id = %s", (account_id,))
        row = cursor.fetchone()
    if row is None or row[4] or row[3] != session_version:
        return None
    request_context.set_account_id(account_id)
    return SignedInAccount(row[0], row[1], Role(row[2]), row[3], row[4], row[5])


if _variant == "cookie-only-sign-in":
    # The same loader as bench/signin_cost.py's "cookie only": the two
    # measures of sign-in's cost (wrk here, in-process there) take away the
    # same read. The engine stays as deployed.
    login_manager.user_loader(believe_the_cookie)
elif _variant == "bare-cursor-sign-in":
    login_manager.user_loader(read_with_a_bare_cursor)
else:
    # Rebind the process's session registry to an engine built without the
    # parts being measured; the views and services run unchanged on top of it.
    Session.configure(bind=create_engine(
        app.config["DATABASE_URL"],
        pool_size=app.config["DB_POOL_SIZE"],
        max_overflow=0,
        pool_pre_ping=False,
        **VARIANTS[_variant],
    ))
