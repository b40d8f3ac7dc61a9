"""Reads from streaming replicas, and every client still reads its own writes.

Everything about where a statement goes is in this module:

* :class:`RoutingSession` is the ``orm.Session`` class of ``db.Session``
  (one ``scoped_session`` registry, as before). Its ``get_bind`` is
  SQLAlchemy's "custom vertical partitioning" recipe: it returns the primary
  engine unless the *request* said its reads may go to a replica
  (``session.info[READ_FROM]``) and the statement is a plain read. A flush,
  anything inside an explicit ``with session.begin():``, an INSERT / UPDATE
  / DELETE, a ``SELECT ... FOR UPDATE`` and a statement carrying
  :data:`PRIMARY_ONLY` always go to the primary. Without a request (CLI
  commands, services called by tests) nothing sets ``READ_FROM``: all on
  the primary.
* :func:`route_request` (a ``before_request``) decides once per request, at
  the view boundary: a GET or HEAD may read from a replica that is healthy
  and has replayed the client's last write; every other method reads from
  the primary.
* Read-your-writes: after a request commits a write on the primary,
  :func:`remember_write_position` stores the primary's WAL position in the
  signed session cookie (one extra ``SELECT pg_current_wal_lsn()`` per
  writing request). A later GET reads from a replica only once that
  replica's ``pg_last_wal_replay_lsn()`` has reached it.
* :class:`Replica` is one replica as this worker process sees it: its
  replay position and lag, probed by one thread while the others use the
  last answer — every ``HEALTH_PROBE_S``, and sooner (``REPLAY_PROBE_S``)
  only for a client whose write it has not been seen to replay — and its state (``ok``,
  ``lagging``, ``unavailable``), logged once per change. A replica that is
  down or too far behind is bypassed; it is used again by itself once a
  probe finds it healthy.

A write that reaches a replica anyway (``text("UPDATE ...")`` run in a GET
view) fails there loudly: a hot standby refuses it
(``cannot execute UPDATE in a read-only transaction``), a 500 in the log.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Sequence
from enum import Enum

from flask import Flask, Response, request, session as cookie
from sqlalchemy import Connection, Delete, Engine, Insert, Select, Update, event, orm
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import SessionTransactionOrigin

from myapp import sessions
from myapp.observability import metrics

log = logging.getLogger(__name__)

# ``session.info`` key: the replica engine this request's plain reads use
# (absent: the primary). Set by route_request, gone with the session at
# teardown's remove().
READ_FROM = "myapp.read_from"
# ``session.info`` key: the session flushed or executed an INSERT, UPDATE
# or DELETE (on the primary): its request records the WAL position after.
WROTE = "myapp.wrote"
# Execution option of a statement that must read the primary's current
# state even in a GET: ``select(...).execution_options(**PRIMARY_ONLY)``.
# The sign-in check (accounts.signed_in_account) uses it, or a lagging
# replica would accept a cookie that was revoked on the primary.
PRIMARY_ONLY = {"myapp_primary_only": True}
# The signed cookie's key: the primary's WAL position after this client's
# last write, as PostgreSQL prints an LSN ("16/B374D848").
COOKIE_KEY = "wal"

# How long a worker trusts what it last learnt about a replica: its state
# and lag (a down or lagging replica is noticed within this, or at once by
# a read that fails on it) ...
HEALTH_PROBE_S = 1.0
# ... and, for a client whose last write the replica had not replayed at the
# last probe, its replay position: the client's reads come back to the
# replica within a few milliseconds of the replay. Replay only moves
# forward, so clients whose writes are older cost no probe at all.
REPLAY_PROBE_S = 0.005
# Replay seen behind this long by one worker: the server's lag figure is real.
LAG_CONFIRM_S = 1.0
SAFE_METHODS = frozenset({"GET", "HEAD"})


class State(str, Enum):
    OK = "ok"
    LAGGING = "lagging"
    UNAVAILABLE = "unavailable"


def parse_lsn(value: str) -> int:
    """PostgreSQL's ``X/Y`` LSN as one comparable number."""
    high, low = value.split("/")
    return (int(high, 16) << 32) | int(low, 16)


# Replay position, and the lag: 0 when the replica has replayed all it has
# received, else how long ago the last transaction it replayed committed
# (see Replica._lag for when that figure is believed).
PROBE_SQL = (
    "SELECT pg_last_wal_replay_lsn()::text, pg_last_wal_receive_lsn()::text,"
    " CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"
    " ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END"
)


class Replica:
    """One replica, as this worker process last saw it."""

    def __init__(self, engine: Engine, name: str, max_lag_s: float):
        self.engine = engine
        self.name = name
        self.max_lag_s = max_lag_s
        self.state = State.OK  # until a probe says otherwise (logged then)
        self.replay_lsn = 0
        self.lag_s = 0.0
        self._checked_at = float("-inf")
        self._waiting_since: tuple[int, float] | None = None  # (received LSN, first seen)
        self._lock = threading.Lock()
        event.listen(engine, "handle_error", _mark_as_from_a_replica)

    def observe(self, max_age: float = HEALTH_PROBE_S) -> State:
        """The replica's state, probed again if what we know is older than ``max_age``.

        One thread probes; the others carry on with the last answer rather
        than queue behind it (a down replica must not stall requests).
        """
        if time.monotonic() - self._checked_at >= max_age and self._lock.acquire(blocking=False):
            try:
                self._probe()
            finally:
                self._lock.release()
        return self.state

    def mark_unavailable(self, reason: str) -> None:
        """Its probe failed: bypass it until a later probe finds it healthy."""
        self._checked_at = time.monotonic()
        self._set_state(State.UNAVAILABLE, reason)

    def _probe(self) -> None:
        metrics.record_replica_probe()
        try:
            replay, received, server_lag = one_row(self.engine, PROBE_SQL)
        except (DBAPIError, PoolTimeoutError) as err:
            self.mark_unavailable(first_line(err))
            return
        now = self._checked_at = time.monotonic()
        if replay is None:  # promoted, or not a standby at all
            self._set_state(State.UNAVAILABLE, "it is not replaying WAL (not a standby)")
            return
        self.replay_lsn = parse_lsn(replay)
        self.lag_s = self._lag(now, parse_lsn(received) if received else self.replay_lsn,
                               float(server_lag or 0))
        metrics.set_replica_lag(self.lag_s)
        if self.lag_s > self.max_lag_s:
            self._set_state(State.LAGGING, f"{self.lag_s:.1f} s behind the primary")
        else:
            self._set_state(State.OK, "")

    def _lag(self, now: float, received: int, server_lag: float) -> float:
        """The replica's lag: the server's figure once this worker has seen
        replay stay behind for LAG_CONFIRM_S, else at most how long it has.

        The server's figure (the age of the last transaction replayed) is
        the true lag while replay is stuck, but after the primary sat idle
        it is the idle time, for the few milliseconds until the next
        transaction is replayed: not worth a "lagging" state and a log line.
        """
        if self.replay_lsn >= received:
            self._waiting_since = None
            return 0.0
        if self._waiting_since is None or self.replay_lsn >= self._waiting_since[0]:
            self._waiting_since = (received, now)  # behind again, on newer WAL
        behind_for = now - self._waiting_since[1]
        return server_lag if behind_for >= LAG_CONFIRM_S else min(server_lag, behind_for)

    def _set_state(self, state: State, why: str) -> None:
        if state is self.state:
            return
        self.state = state
        if state is State.OK:
            log.warning("replica %s is back in use", self.name)
        else:
            log.warning("replica %s is %s, reads go to the primary: %s", self.name, state.value, why)


# Attribute set on a database error raised by a replica's engine (handle_error
# runs for failed statements and failed connects alike), so an error page
# can tell a replica's failure (read again from the primary) from the
# primary's (a 503).
FROM_REPLICA = "myapp_from_replica"


def _mark_as_from_a_replica(context) -> None:
    if context.sqlalchemy_exception is not None:
        setattr(context.sqlalchemy_exception, FROM_REPLICA, True)


def first_line(err: Exception) -> str:
    orig = getattr(err, "orig", None) or err
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


class ReplicaSet:
    """The configured replicas of this process; chooses one for a request."""

    def __init__(self, replicas: Sequence[Replica]):
        self.replicas = list(replicas)
        self._turns = itertools.count()

    def choose(self, min_lsn: int) -> tuple[Replica | None, str]:
        """A healthy replica that has replayed ``min_lsn``, or None and why not."""
        usable = [r for r in self.replicas if r.observe() is State.OK]
        if not usable:
            return None, self.health()
        caught_up = [r for r in usable if r.replay_lsn >= min_lsn]
        if not caught_up:
            # The client wrote after the last probe: ask again (at most
            # every REPLAY_PROBE_S), the write has likely been replayed since.
            caught_up = [r for r in usable if r.observe(REPLAY_PROBE_S) is State.OK
                         and r.replay_lsn >= min_lsn]
        if not caught_up:
            return None, "read_your_writes"
        # In turn (itertools.count is atomic under the GIL): reads spread evenly.
        return caught_up[next(self._turns) % len(caught_up)], "replica"

    def health(self) -> str:
        """/healthz's ``replica``: ``ok`` if any replica serves reads, else the best state."""
        states = {r.state for r in self.replicas}
        for state in (State.OK, State.LAGGING):
            if state in states:
                return state.value
        return State.UNAVAILABLE.value

    def for_engine(self, engine: Engine | None) -> Replica | None:
        return next((r for r in self.replicas if r.engine is engine), None)

    def dispose(self, close: bool = True) -> None:
        for replica in self.replicas:
            replica.engine.dispose(close=close)


class RoutingSession(orm.Session):
    """An ``orm.Session`` that sends a request's plain reads to its replica."""

    def get_bind(self, mapper=None, *, clause=None, bind=None, **kw):
        if bind is not None or isinstance(self.bind, Connection):
            # An explicit bind, or a session bound to one connection (the
            # test suite's SAVEPOINT-per-test fixture): nothing to route.
            return super().get_bind(mapper, clause=clause, bind=bind, **kw)
        return self.target_engine(clause)

    def target_engine(self, clause) -> Engine:
        """The primary (``self.bind``), or this request's replica for a plain read."""
        replica = self.info.get(READ_FROM)
        if replica is None or self.needs_primary(clause):
            return self.bind
        return replica

    def needs_primary(self, clause) -> bool:
        if self._flushing or isinstance(clause, (Insert, Update, Delete)):
            return True
        if isinstance(clause, Select) and clause._for_update_arg is not None:
            return True
        options = getattr(clause, "get_execution_options", None)
        if options is not None and options().get("myapp_primary_only"):
            return True
        transaction = self.get_transaction()
        # Inside ``with session.begin():`` (a write, by the services' rule);
        # a transaction the session began by itself is just reading.
        return transaction is not None and transaction.origin is not SessionTransactionOrigin.AUTOBEGIN


def _note_write(session: orm.Session, *args) -> None:
    session.info[WROTE] = True


def _note_orm_write(state: orm.ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        state.session.info[WROTE] = True


event.listen(RoutingSession, "after_flush", _note_write)
event.listen(RoutingSession, "do_orm_execute", _note_orm_write)


# --- the request boundary -------------------------------------------------------

_replicas: ReplicaSet | None = None


def configure(replicas: ReplicaSet | None) -> None:
    """This process's replicas (db.init_app builds them); None: none configured."""
    global _replicas
    if _replicas is not None:
        _replicas.dispose()
    _replicas = replicas


def replica_set() -> ReplicaSet | None:
    return _replicas


def init_app(app: Flask, session_registry: orm.scoped_session) -> None:
    def route() -> None:
        route_request(session_registry())

    def remember(response: Response) -> Response:
        return remember_write_position(session_registry(), response)

    app.before_request(route)
    app.after_request(remember)


def route_request(session: orm.Session) -> None:
    """``before_request``: where this request's plain reads go, decided once."""
    if _replicas is None or request.method not in SAFE_METHODS or request.endpoint in (
            None, "static", "metrics.expose"):
        return
    wal = cookie.get(COOKIE_KEY)
    replica, outcome = _replicas.choose(parse_lsn(wal) if wal else 0)
    if replica is None:
        metrics.record_replica_fallback(outcome)
        metrics.record_read("primary")
        return
    session.info[READ_FROM] = replica.engine
    metrics.record_read("replica")


def remember_write_position(session: orm.Session, response: Response) -> Response:
    """``after_request``: after a write, the primary's WAL position into the cookie.

    Read after the commit, so it is at or past the commit record: a replica
    that has replayed it has replayed the write.
    """
    if _replicas is None or not session.info.get(WROTE):
        return response
    try:
        cookie[COOKIE_KEY] = wal_position(session.bind)
    except (DBAPIError, PoolTimeoutError) as err:
        # The write is committed, its position unknown: this client reads
        # from the primary until its next write records a position.
        log.warning("could not read the primary's WAL position after a write: %s", first_line(err))
        cookie[COOKIE_KEY] = "FFFFFFFF/FFFFFFFF"
    return response


def wal_position(primary: Engine) -> str:
    """The primary's ``pg_current_wal_lsn()``."""
    return one_row(primary, "SELECT pg_current_wal_lsn()::text")[0]


def one_row(engine: Engine, sql: str) -> tuple:
    """One row of ``sql`` in one round trip, on a connection in autocommit
    (myapp/sessions.py): a transaction would add a BEGIN and a ROLLBACK.
    Errors arrive as SQLAlchemy's, with a dead connection already
    invalidated and replaced in the pool."""
    with sessions.autocommit_connection(engine) as connection:
        return tuple(connection.exec_driver_sql(sql).one())


def read_failed_on_replica(session: orm.Session, error: Exception) -> bool:
    """After a database error in a request: was it this request's replica?

    If so the session forgets the replica, so the caller can retry the read
    on the primary (myapp.errors), and the replica is probed again at once:
    a connection that died in the pool (the replica or a pooler restarted;
    SQLAlchemy has just invalidated the pool's others) must not keep a
    healthy replica out of use, while a replica that is down fails the
    probe and is bypassed from now on.
    """
    if _replicas is None or not getattr(error, FROM_REPLICA, False):
        return False
    engine = session.info.pop(READ_FROM, None)
    if engine is None:
        return False
    replica = _replicas.for_engine(engine)
    if replica is not None:
        replica.observe(max_age=0)
    return True


def health() -> str | None:
    """/healthz's ``replica`` value (None: no replica configured)."""
    return None if _replicas is None else _replicas.health()
