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
"""

import os

from sqlalchemy import create_engine

from bench.signin_cost import believe_the_cookie
from myapp import create_app
from myapp.auth.login import login_manager
from myapp.db import Session

VARIANTS = {
    "no-pre-ping": {},
    "autocommit": {"isolation_level": "AUTOCOMMIT"},
}

app = create_app()
_variant = os.environ["BENCH_FLOOR"]


if _variant == "cookie-only-sign-in":
    # The same loader as bench/signin_cost.py's "cookie only": the two
    # measures of sign-in's cost (wrk here, in-process there) take away the
    # same read. The engine stays as deployed.
    login_manager.user_loader(believe_the_cookie)
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
