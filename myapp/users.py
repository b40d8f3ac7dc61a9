"""User services: every business rule about users lives here.

Each function takes the ``orm.Session`` to work in as its first argument and
knows nothing of Flask, so the views, the CLI and the tests call the same
code with whatever session they own. Writes open their own short transaction
with ``with session.begin():`` — it commits when the block ends and rolls
back if anything in it raises — and write their audit row inside it, naming
``actor_id``, the account that made the change (None from the command line).

A user comes in three shapes: ``User``, the mapped row a session tracks;
``UserFields`` (myapp.validation), input already cleaned, with no id yet;
``UserSnapshot``, plain values that outlive the session that read them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import insert, orm, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from myapp.models import EMAIL_UNIQUE_INDEX, Account, AuditEvent, User
from myapp.validation import UserFields


class UserNotFound(LookupError):
    """No user has this id (or no longer has): the web answers 404 (myapp.errors)."""


class EmailTaken(ValueError):
    """Another user already has this address (compared ignoring letter case)."""

    message = "A user with this email address already exists."


class UserSnapshot(NamedTuple):
    """A user's values as read at one moment: plain data, no ORM state.

    What the list page shows (a named tuple: a page builds fifty, and a tuple
    is built in a fraction of a dataclass's time), and what a failed edit
    reports (see :class:`StaleVersion`): readable whatever became of the
    session or the row since.
    """

    id: int
    name: str
    email: str
    version: int
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserSnapshot:
        return cls(user.id, user.name, user.email, user.version, user.created_at)


class StaleVersion(Exception):
    """Someone saved the user after the version the caller started from.

    ``current`` is the user as this transaction last read it, for showing
    what changed. It is a snapshot, not the ``User``: the exception ends the
    transaction with a rollback, and a rollback expires every object of the
    session whatever ``expire_on_commit`` says (that setting is about
    commits). Reading an expired attribute later would be a hidden SELECT in
    a new transaction — from a template — and an error if the row had been
    deleted in between.
    """

    def __init__(self, current: UserSnapshot):
        super().__init__(f"user {current.id} is at version {current.version}")
        self.current = current


def is_email_conflict(err: IntegrityError) -> bool:
    """True if ``err`` is the case-insensitive unique email index firing."""
    diag = getattr(err.orig, "diag", None)
    return getattr(diag, "constraint_name", None) == EMAIL_UNIQUE_INDEX


# Built once, its values bound at execution: no statement to build, and no
# cache key to compute, per write.
_AUDIT_INSERT = insert(AuditEvent.__table__)


def _audit(session: orm.Session, user: User, action: str, actor_id: int | None,
           detail: dict | None = None) -> None:
    """Write the audit row of ``action`` by ``actor_id`` in the open
    transaction; by default its detail is the user's values (what was
    created, or deleted).

    A plain INSERT rather than an ``AuditEvent`` added to the session:
    nothing reads the row back in this transaction, so the unit of work's
    bookkeeping for it (a second flush, RETURNING its id and time into an
    object nobody uses) bought nothing (docs/performance.md).
    """
    if detail is None:
        detail = {"name": user.name, "email": user.email}
    session.execute(_AUDIT_INSERT, {"user_id": user.id, "action": action,
                                    "detail": detail, "actor_id": actor_id})


def create_user(session: orm.Session, fields: UserFields, *,
                actor_id: int | None = None) -> User:
    """Insert a user and its ``create`` audit event in one transaction.

    Uniqueness is left to the database: checking first and inserting after
    would let two simultaneous requests both pass the check. The unique
    index decides, and its violation becomes :class:`EmailTaken`.
    """
    try:
        with session.begin():
            user = User(name=fields.name, email=fields.email)
            session.add(user)
            # INSERT now, inside the open transaction: the audit row needs
            # the id PostgreSQL assigns. Nothing is visible to others yet.
            session.flush()
            _audit(session, user, "create", actor_id)
    except IntegrityError as err:
        if is_email_conflict(err):
            raise EmailTaken(fields.email) from None
        raise
    return user


def update_user(session: orm.Session, user_id: int, version: int, fields: UserFields, *,
                actor_id: int | None = None) -> User:
    """Save new values over version ``version`` of the user, with an audit row.

    Two checks guard against lost updates. The submitted ``version`` must be
    the stored one (someone may have saved while the form was open). And the
    UPDATE itself, thanks to ``version_id_col``, says ``WHERE version = ...``:
    if another transaction saves between our read and our write, it matches
    no row and SQLAlchemy raises ``StaleDataError`` — nothing is overwritten.
    """
    try:
        with session.begin():
            user = get_user(session, user_id)
            if user.version != version:
                raise StaleVersion(UserSnapshot.of(user))
            changes = {
                field: {"old": getattr(user, field), "new": getattr(fields, field)}
                for field in ("name", "email")
                if getattr(user, field) != getattr(fields, field)
            }
            if not changes:
                return user
            user.name, user.email = fields.name, fields.email
            session.flush()  # UPDATE ... WHERE id = :id AND version = :version
            _audit(session, user, "update", actor_id, {"changes": changes})
    except StaleDataError:
        # The block rolled back; read the row as the winner left it (a
        # UserNotFound if the winner deleted it).
        raise StaleVersion(UserSnapshot.of(get_user(session, user_id))) from None
    except IntegrityError as err:
        if is_email_conflict(err):
            raise EmailTaken(fields.email) from None
        raise
    return user


def delete_user(session: orm.Session, user_id: int, *, actor_id: int | None = None) -> User:
    """Delete the user; its audit history stays, with a ``delete`` event added.

    The delete form carries no version: "delete this user" stands whatever
    was saved meanwhile. So the row is read ``FOR UPDATE``. A save that
    commits first is waited for, and the values it left are the ones
    audited; a save that comes later waits for this transaction and then
    finds no row. (``version_id_col`` puts the version into the DELETE's
    WHERE too; the lock is what guarantees it still matches.)

    The returned ``User`` is detached once the block commits, and stays
    readable: ``expire_on_commit=False``.
    """
    with session.begin():
        user = get_user(session, user_id, for_update=True)
        session.delete(user)
        _audit(session, user, "delete", actor_id)
    return user


def get_user(session: orm.Session, user_id: int, *, for_update: bool = False) -> User:
    """The user with this id; ``for_update`` locks its row until the transaction ends."""
    user = session.get(User, user_id, with_for_update=True if for_update else None)
    if user is None:
        raise UserNotFound(user_id)
    return user


class HistoryEntry(NamedTuple):
    """One audit event as the history shows it."""

    action: str
    at: datetime
    detail: dict[str, Any]
    actor: str | None  # the email of the account that made the change


def user_history(session: orm.Session, user_id: int) -> list[HistoryEntry]:
    """The user's audit events, newest first (kept after the user is deleted),
    each with the email of the account that made it."""
    stmt = (
        select(AuditEvent.action, AuditEvent.at, AuditEvent.detail, Account.email)
        .outerjoin(Account, AuditEvent.actor_id == Account.id)
        .where(AuditEvent.user_id == user_id)
        .order_by(AuditEvent.id.desc())
    )
    return [HistoryEntry._make(row) for row in session.execute(stmt)]
