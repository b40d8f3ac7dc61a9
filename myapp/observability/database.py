"""Metrics from SQLAlchemy: the pool of each worker and the SQL of each request.

:func:`instrument` attaches everything to an engine that
:func:`myapp.db.build_engine` made with ``poolclass=pool_class(name)``:

* SQL: the dialect's execute hooks (``do_execute``, ``do_executemany``,
  ``do_execute_no_params``) run each statement and add it and its time to
  the current request (:mod:`request_context`); outside a request (CLI
  commands) they leave the statement to SQLAlchemy. Not the usual
  ``before_cursor_execute`` / ``after_cursor_execute`` pair: any
  *connection* event listener switches every connection of the engine onto
  SQLAlchemy's event-dispatching path (at begin, each execute, commit); the
  dialect hooks are looked up once per statement (docs/performance.md,
  "What observability costs"). A worker's first connection to a database
  runs SQLAlchemy's own set-up queries (server version, schema): they count
  towards the request that made the connection, which waited for them.
* The pool: ``checkout`` / ``checkin`` keep the checked-out gauge,
  ``invalidate`` counts broken connections thrown away.
* The checkout wait and pool timeouts: SQLAlchemy has no event *before* a
  checkout, so :class:`InstrumentedQueuePool` times its public ``connect()``
  — what the engine calls for every connection it hands out.
"""

from __future__ import annotations

import functools
from time import perf_counter

from psycopg2 import errorcodes
from sqlalchemy import Engine, event
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import QueuePool

from myapp.observability import metrics
from myapp.observability.request_context import current

# A pool entry's flag: counted in the checked-out gauge. A checkin can come
# without a checkout event (a checkout that failed half-way is checked back
# in), so the gauge only goes down for what it counted going up.
_COUNTED = "myapp.counted_as_checked_out"


class InstrumentedQueuePool(QueuePool):
    """A QueuePool that times every checkout and counts the ones that time out."""

    metrics_name = "primary"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Runs in the process that uses the pool: gunicorn's post_fork
        # disposes the inherited pool, which builds a new one in the worker.
        metrics.POOL_SIZE.labels(self.metrics_name).set(self.size())
        metrics.POOL_CHECKED_OUT.labels(self.metrics_name).set(0)
        self._waits = metrics.POOL_CHECKOUT_WAIT.labels(self.metrics_name)
        self._timeouts = metrics.POOL_TIMEOUTS.labels(self.metrics_name)

    def connect(self):
        started = perf_counter()
        try:
            return super().connect()
        except PoolTimeoutError:
            self._timeouts.inc()
            raise
        finally:
            self._waits.observe(perf_counter() - started)


@functools.cache
def pool_class(name: str) -> type[InstrumentedQueuePool]:
    """The pool class whose metrics carry ``pool=name`` (``primary``, ``replica``).

    A class rather than an attribute set on a pool: ``engine.dispose()``
    builds a fresh pool of the same class, which must keep its name.
    """
    if name == InstrumentedQueuePool.metrics_name:
        return InstrumentedQueuePool
    return type(f"{name.title()}QueuePool", (InstrumentedQueuePool,), {"metrics_name": name})


def instrument(engine: Engine, name: str = "primary") -> None:
    """Attach the SQL and pool listeners to ``engine`` (pool metrics as ``name``)."""
    checked_out = metrics.POOL_CHECKED_OUT.labels(name)
    invalidations = metrics.POOL_INVALIDATIONS.labels(name)

    # On the pool itself, not the engine: an engine's pool listeners go
    # through a joined dispatcher on every checkout (measured: twice the
    # cost). engine.dispose() builds the new pool with the same listeners.
    @event.listens_for(engine.pool, "checkout")
    def on_checkout(dbapi_connection, pool_entry, proxy):
        pool_entry.record_info[_COUNTED] = True
        checked_out.inc()

    @event.listens_for(engine.pool, "checkin")
    def on_checkin(dbapi_connection, pool_entry):
        if pool_entry.record_info.pop(_COUNTED, False):
            checked_out.dec()

    @event.listens_for(engine.pool, "invalidate")
    def on_invalidate(dbapi_connection, pool_entry, exception):
        invalidations.inc()

    dialect = engine.dialect  # the engine's own; its autocommit twin shares it
    for hook in ("do_execute", "do_executemany", "do_execute_no_params"):
        event.listen(engine, hook, _accounted(getattr(dialect, hook)))


def _accounted(execute):
    """A dialect execute hook that runs ``execute`` (the dialect's own
    ``do_execute``, ...) and adds the statement and its time to the current
    request. Returning True tells SQLAlchemy the statement has run; an error
    propagates to SQLAlchemy's handling as if the dialect had raised it."""

    def run_accounted(*args) -> bool:
        observed = current()
        if observed is None:
            return False  # outside a request: SQLAlchemy runs it as usual
        observed.sql_statements += 1
        started = perf_counter()
        try:
            execute(*args)
        finally:
            observed.sql_seconds += perf_counter() - started
        return True

    return run_accounted


def unavailable_cause(error: Exception) -> str:
    """Why a database error became a 503: one of ``metrics.UNAVAILABLE_CAUSES``."""
    if isinstance(error, PoolTimeoutError):
        return "pool_timeout"
    code = getattr(getattr(error, "orig", None), "pgcode", None)
    if code == errorcodes.QUERY_CANCELED:
        return "statement_timeout"
    if code == errorcodes.UNDEFINED_TABLE:
        return "schema_missing"
    # No SQLSTATE: the client library failed (refused, cut, timed out
    # connecting). Class 08: connection exceptions; 57P: the server shut down.
    if code is None or code.startswith(("08", "57P")):
        return "database_unreachable"
    return "database_error"
