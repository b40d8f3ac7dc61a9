"""The app's ``orm.Session``: reads outside a transaction run in autocommit.

A page that only reads (the list, a detail page, the signed-in account)
never calls ``session.begin()``; SQLAlchemy would still wrap its statements
in a transaction of its own ("autobegin"): psycopg2 sends ``BEGIN`` before
the first one and the teardown's ``Session.remove()`` a ``ROLLBACK`` after
the last — two round trips to the database that carry nothing. Under READ
COMMITTED, PostgreSQL's default and ours, every statement takes a fresh
snapshot anyway, so the statements of one read page see no more consistent
a picture inside a transaction than outside one. So :class:`AutocommitReads`
gives such statements a connection in ``AUTOCOMMIT``: each is its own
transaction, ended by the server, with no ``BEGIN`` and no ``ROLLBACK``.

Writes are not affected, and cannot become affected by accident:

* inside ``with session.begin():`` (every service that writes) the session
  uses the engine as configured, so the block is one transaction that
  commits or rolls back as a whole, exactly as before;
* a flush or an ``INSERT``/``UPDATE``/``DELETE`` statement outside an
  explicit ``begin()`` raises :class:`WriteOutsideTransaction` instead of
  being committed statement by statement — the app never does this, and a
  change that would should fail its tests, not quietly lose atomicity.

The autocommit engine is a twin of the engine, ``engine.execution_options()``
with one option of ours: it shares the engine's pool and event listeners.
When the session begins using a connection of the twin (SQLAlchemy's
``after_begin`` session event, before any statement), it puts the psycopg2
connection in ``autocommit`` mode; the pool takes it out again when the
connection comes back. Flipping that attribute is local to the client (no
round trip). A session event rather than the twin's own ``engine_connect``:
any connection event on an engine puts every statement of its connections
through SQLAlchemy's event dispatching (the list page measured 1.03 times
faster without it, docs/performance.md). Code outside a session uses
:func:`autocommit_connection`. SQLAlchemy's own way,
``isolation_level="AUTOCOMMIT"``, was measured first and is not used: psycopg2
implements it with ``SET default_transaction_isolation`` — one round trip
when the connection is taken and one when it is given back, more than the
``BEGIN`` and ``ROLLBACK`` it saves (tests/test_round_trips.py counts).

A session bound to a ``Connection`` (the test suite's rolled-back
transactions) is left exactly as SQLAlchemy makes it.

The class is a small mixin over ``orm.Session``: it asks ``super().get_bind()``
which engine a statement belongs to (``myapp.replicas`` may route reads to a
replica) and only changes *how* that engine's connection is used.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, event, orm
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import SessionTransactionOrigin

# The twin's execution option: its connections are to run in autocommit.
AUTOCOMMIT = "myapp_autocommit"

# One autocommit twin per engine, made once: the session keeps one
# connection per engine object, so a new twin per statement would check out
# a new connection per statement. A process has one engine per database it
# uses (tests that build many apps keep their disposed engines here too).
_autocommit_twins: dict[Engine, Engine] = {}
_making_a_twin = threading.Lock()


class WriteOutsideTransaction(InvalidRequestError):
    """A write was attempted outside ``with session.begin():``."""


def _autocommit_twin(engine: Engine) -> Engine:
    """``engine``, sharing its pool, whose connections a session uses in autocommit.

    Its connections are put in autocommit by the session (or by
    :func:`autocommit_connection`), not by the twin: connected directly, it
    gives an ordinary transactional connection.
    """
    twin = _autocommit_twins.get(engine)
    if twin is None:
        with _making_a_twin:  # the first requests of a worker's threads arrive together
            twin = _autocommit_twins.get(engine)
            if twin is None:
                twin = engine.execution_options(**{AUTOCOMMIT: True})
                # A pool event, on the engine's pool (shared with the twin).
                event.listen(engine, "checkin", _autocommit_off)
                _autocommit_twins[engine] = twin
    return twin


@contextmanager
def autocommit_connection(engine: Engine) -> Iterator[Connection]:
    """A connection of ``engine`` in autocommit, outside any session."""
    with _autocommit_twin(engine).connect() as connection:
        _autocommit_on(connection)
        yield connection


def _autocommit_on(connection: Connection) -> None:
    connection.connection.dbapi_connection.autocommit = True


def _autocommit_off(dbapi_connection, connection_record) -> None:
    # None: the connection was invalidated (closed), nothing to restore.
    if dbapi_connection is not None and dbapi_connection.autocommit:
        dbapi_connection.autocommit = False


class AutocommitReads(orm.Session):
    """Statements outside an explicit ``session.begin()`` run in autocommit;
    writes there raise :class:`WriteOutsideTransaction`."""

    def in_explicit_transaction(self) -> bool:
        transaction = self.get_transaction()  # the outermost one
        return transaction is not None and transaction.origin is SessionTransactionOrigin.BEGIN

    def get_bind(self, mapper=None, *, clause=None, **kw: Any):
        bind = super().get_bind(mapper, clause=clause, **kw)
        if not isinstance(bind, Engine) or self.in_explicit_transaction():
            return bind
        if self._flushing or getattr(clause, "is_dml", False):
            raise WriteOutsideTransaction(
                "a write outside `with session.begin():` would be autocommitted "
                "statement by statement; open a transaction for it"
            )
        return _autocommit_twin(bind)


@event.listens_for(AutocommitReads, "after_begin")
def _twin_connection_in_autocommit(session, transaction, connection: Connection) -> None:
    # Before the connection's first statement: psycopg2 has sent no BEGIN yet.
    if connection.get_execution_options().get(AUTOCOMMIT):
        _autocommit_on(connection)
