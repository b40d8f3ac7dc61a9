"""The database session's whole life, in one module.

* One engine per process, built from the config by :func:`init_app`, and
  one more per replica of ``DATABASE_REPLICA_URL``: which one a statement
  uses is :class:`myapp.replicas.RoutingSession`'s decision, made once per
  request (GET/HEAD reads may go to a replica; everything else, and every
  CLI command, to the primary).
* ``Session`` is a module-level ``scoped_session``: a registry made once per
  process that hands each thread its own ``orm.Session``. A view calls
  ``db.Session()`` and gets the session of the thread serving its request;
  services receive it as an argument (typed ``orm.Session``, the ORM class).
* :func:`remove_session` runs on ``teardown_appcontext`` — after every request
  and every CLI command — and calls ``Session.remove()``: the thread's
  session is closed (its connection goes back to the pool; reads ran in
  autocommit, myapp/sessions.py, so there is nothing to roll back) and
  discarded, so the next request on that thread starts clean. It never
  commits: writes commit inside the service that made them.
* :func:`dispose_inherited_pool` runs in every freshly forked gunicorn worker,
  so no worker ever talks over a socket it inherited from the master.
"""

from __future__ import annotations

import logging
import os

from flask import Flask
from sqlalchemy import Engine, create_engine, event, orm, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import NullPool

from myapp import idle_ping, replicas, sessions
from myapp.observability import database as observed_database


class AppSession(sessions.AutocommitReads, replicas.RoutingSession):
    """The ``orm.Session`` class of :data:`Session`, two decisions per statement:

    * *which database* — ``RoutingSession``: a GET/HEAD request's plain reads
      go to its replica, everything else to the primary (myapp/replicas.py);
    * *how* — ``AutocommitReads``: statements outside ``with
      session.begin():`` run in autocommit, with no BEGIN or ROLLBACK round
      trip (myapp/sessions.py says why that is safe).
    """


# expire_on_commit=False: objects a service returns stay readable after its
# transaction commits, without a surprise SELECT (or a DetachedInstanceError
# once the session is removed).
Session = orm.scoped_session(orm.sessionmaker(class_=AppSession, expire_on_commit=False))

_engine: Engine | None = None

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Build this process's engine, bind the session registry, hook teardown."""
    global _engine
    if _engine is not None:
        # A second app in one process (tests do this): start from a clean slate.
        Session.remove()
        _engine.dispose()
    _engine = build_engine(app.config)
    Session.configure(bind=_engine)
    replicas.configure(build_replicas(app.config))
    replicas.init_app(app, Session)
    app.teardown_appcontext(remove_session)


def build_replicas(config) -> replicas.ReplicaSet | None:
    """One engine per ``DATABASE_REPLICA_URL`` entry, pooled like the primary's.

    Their pools' metrics are ``pool="replica"`` (then ``replica2``, ...).
    """
    urls = config.get("DATABASE_REPLICA_URLS") or []
    if not urls:
        return None
    found = []
    for number, url in enumerate(urls, start=1):
        pool_name = "replica" if number == 1 else f"replica{number}"
        engine = build_engine(config, url=url, name=pool_name)
        # Log lines name it by address, as an operator knows it.
        address = f"{engine.url.host}:{engine.url.port or 5432}/{engine.url.database}"
        found.append(replicas.Replica(engine, address, config["DB_REPLICA_MAX_LAG_S"]))
    return replicas.ReplicaSet(found)


def build_engine(config, *, instrumented: bool = True, url: str | None = None,
                 name: str = "primary") -> Engine:
    """An engine whose pool matches the worker's threads.

    ``max_overflow=0``: the pool *is* the limit. With one connection per
    thread a request never waits for another's connection; if one does (a
    misconfiguration), it waits ``DB_POOL_TIMEOUT`` seconds and gets a 503.

    ``DB_POOL_SIZE=0``: no pool in the app (``NullPool``), each request
    connects anew — only sensible with a pooler such as PgBouncer next to
    it (measured in docs/deployment.md, "Pool arithmetic").

    No per-connection settings travel in the startup packet: PgBouncer in
    transaction mode refuses them. The server-side limits are the role's
    own settings in the database instead (myapp/role_settings.py).

    ``instrumented``: pool and SQL metrics (see myapp.observability.database);
    only the benchmark turns them off, to measure what they cost.
    ``url``/``name``: a replica's engine (default: ``DATABASE_URL``, "primary").
    """
    if config["DB_POOL_SIZE"] == 0:
        pool_options = {"poolclass": NullPool}
    else:
        pool_options = {
            "pool_size": config["DB_POOL_SIZE"],
            "max_overflow": 0,
            "pool_timeout": config["DB_POOL_TIMEOUT"],
            # The connection given back last is handed out first. With the
            # ping after idle, first-in-first-out would rotate through every
            # connection a busy moment opened: at a few requests a second
            # each would sit idle past DB_PING_AFTER_IDLE_MS and cost a ping
            # (a round trip) on every request. Last-in-first-out keeps the
            # traffic on the fewest connections; the others stay idle and
            # are pinged only when a busy moment needs them again.
            "pool_use_lifo": True,
        }
        if instrumented:
            pool_options["poolclass"] = observed_database.pool_class(name)
    engine = create_engine(
        url or config["DATABASE_URL"],
        **pool_options,
        # Bound values stay out of error messages, so no value a visitor
        # typed (one day a password) reaches a log line with an exception.
        hide_parameters=True,
        connect_args={
            "connect_timeout": config["DB_CONNECT_TIMEOUT"],
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        },
    )
    event.listen(engine, "do_connect", _name_connection)
    if config["DB_POOL_SIZE"] != 0:
        # A connection the server (or a network cut) closed while it sat in
        # the pool is noticed and replaced before a request gets it: pinged
        # when it sat idle, not on every checkout (myapp/idle_ping.py).
        idle_ping.install(engine, config["DB_PING_AFTER_IDLE_MS"] / 1000)
    if instrumented:
        observed_database.instrument(engine, name)
    return engine


def _name_connection(dialect, conn_rec, cargs, cparams) -> None:
    # Evaluated at connect time, in the process that connects, so
    # pg_stat_activity shows which worker holds each connection. A name
    # given in DATABASE_URL (?application_name=myapp) wins: behind PgBouncer
    # a server connection serves every worker in turn, and PgBouncer sends a
    # SET application_name each time it changes hands between two names.
    cparams.setdefault("application_name", f"myapp[{os.getpid()}]")


def engine() -> Engine:
    """This process's engine (after :func:`init_app`)."""
    if _engine is None:
        raise RuntimeError("myapp.db.init_app() has not been called in this process")
    return _engine


def remove_session(exc: BaseException | None = None) -> None:
    """``teardown_appcontext`` hook: close and discard this thread's session.

    Closing rolls back whatever transaction is still open, which may need
    the database (reads run in autocommit, so usually nothing is sent; a
    session bound to a connection in a transaction, as in the tests, does).
    If the connection died after the request's last query (database cut or
    restarted), that rollback fails: SQLAlchemy has then already invalidated
    the connection and handed it back to the pool, which replaces it, and
    the server has dropped the transaction with the connection. The answer
    the view built is still right, so the error must not turn it into a 500
    (tests/faults/test_outage.py found exactly that) — and the broken session
    must still be discarded, which ``Session.remove()`` skips when ``close()``
    raises, or the thread's next request would inherit it.
    """
    try:
        Session.remove()
    except DBAPIError as err:
        log.warning("rollback at the end of a request failed, connection dropped: %s",
                    str(err.orig).strip().splitlines()[0] if err.orig else err)
        Session.registry.clear()


def dispose_inherited_pool() -> None:
    """Forget every connection inherited from the parent process.

    Call it first thing in a forked child (gunicorn's ``post_fork``). Pooled
    connections are sockets; a parent and child using one socket interleave
    their protocol messages. ``close=False`` drops the child's references
    without closing them, because closing would send a terminate message on
    the parent's connection. The session registry is cleared the same way.
    """
    Session.registry.clear()
    if _engine is not None:
        _engine.dispose(close=False)
    if replicas.replica_set() is not None:
        replicas.replica_set().dispose(close=False)


def ping(session: orm.Session) -> bool:
    """True if the database answers a trivial query through ``session``."""
    try:
        # The primary's health, also in a GET whose reads go to a replica.
        session.execute(text("SELECT 1").execution_options(**replicas.PRIMARY_ONLY))
    except (DBAPIError, PoolTimeoutError):
        return False
    return True
