"""Ping a pooled connection before use only if it sat idle for a while.

``pool_pre_ping=True`` sends a ``SELECT 1`` every time a connection leaves
the pool: one round trip per request, to catch a connection that died while
it waited (the server restarted, a network cut, an idle timeout on the way).
A connection handed back a moment ago has had no time to die unnoticed,
and one that died under a request was already thrown away — SQLAlchemy
invalidates a connection whose statement fails with a disconnect, and with
it every connection of the pool older than the failure. So the ping is only
worth its round trip after the connection sat idle: :func:`install` sends
it when more than ``after_idle_s`` passed since the connection came back.
The price: a backend killed within that moment (``pg_terminate_backend``, a
pooler restarted under load) fails the one request that next uses it, per
worker, where a ping at every checkout would have replaced it unnoticed.

It is SQLAlchemy's documented "pessimistic" pattern on the pool's
``checkout`` event: a dead connection raises ``DisconnectionError``, and the
pool replaces it with a fresh one before the request gets it (and raises the
connect error — a 503 page — if it cannot).
"""

from __future__ import annotations

import time

from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError

IDLE_SINCE = "myapp_idle_since"  # key in each connection's ``info`` dict


def install(engine: Engine, after_idle_s: float) -> None:
    """Ping ``engine``'s connections at checkout after ``after_idle_s`` idle
    (0: at every checkout, like ``pool_pre_ping``)."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def note_idle_since(dbapi_connection, connection_record) -> None:
        if dbapi_connection is not None:
            connection_record.info[IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def ping_if_idle(dbapi_connection, connection_record, connection_proxy) -> None:
        idle_since = connection_record.info.pop(IDLE_SINCE, None)
        if idle_since is None or time.monotonic() - idle_since <= after_idle_s:
            return  # new, or used a moment ago
        try:
            # psycopg2: SELECT 1 in autocommit, so no transaction is left open.
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as err:
            raise DisconnectionError(f"connection idle {time.monotonic() - idle_since:.1f} s "
                                     f"failed its ping: {err}") from err
