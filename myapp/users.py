"""User services: every business rule about users lives here.

Each function takes the ``Session`` to work in as its first argument and
knows nothing of Flask, so the views, the CLI and the tests call the same
code with whatever session they own. Writes open their own short transaction
with ``with session.begin():`` — it commits when the block ends and rolls
back if anything in it raises — and write their audit row inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from myapp.models import EMAIL_UNIQUE_INDEX, USER_SEARCH_TEXT, AuditEvent, User
from myapp.validation import UserFields

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


class UserNotFound(LookupError):
    pass


class EmailTaken(ValueError):
    """Another user already has this address (compared ignoring letter case)."""

    message = "A user with this email address already exists."


class UserSnapshot(NamedTuple):
    """A user's values at one moment: plain data, no ORM state."""

    id: int
    name: str
    email: str
    version: int

    @classmethod
    def of(cls, user: User) -> UserSnapshot:
        return cls(user.id, user.name, user.email, user.version)


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


class UserRow(NamedTuple):
    """What the list page shows of a user: plain values, no ORM state.

    A named tuple rather than a frozen dataclass: a page builds fifty, and a
    tuple is built in a fraction of the time.
    """

    id: int
    name: str
    email: str
    created_at: datetime


@dataclass(frozen=True)
class UserPage:
    users: list[UserRow]
    next_after: int | None  # keyset cursor of the next page, if there is one


def is_email_conflict(err: IntegrityError) -> bool:
    """True if ``err`` is the case-insensitive unique email index firing."""
    diag = getattr(err.orig, "diag", None)
    return getattr(diag, "constraint_name", None) == EMAIL_UNIQUE_INDEX


def create_user(session: Session, fields: UserFields) -> User:
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
            session.add(
                AuditEvent(
                    user_id=user.id,
                    action="create",
                    detail={"name": user.name, "email": user.email},
                )
            )
    except IntegrityError as err:
        if is_email_conflict(err):
            raise EmailTaken(fields.email) from None
        raise
    return user


def update_user(session: Session, user_id: int, version: int, fields: UserFields) -> User:
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
            session.add(AuditEvent(user_id=user.id, action="update", detail={"changes": changes}))
    except StaleDataError:
        # The block rolled back; read the row as the winner left it (a
        # UserNotFound if the winner deleted it).
        raise StaleVersion(UserSnapshot.of(get_user(session, user_id))) from None
    except IntegrityError as err:
        if is_email_conflict(err):
            raise EmailTaken(fields.email) from None
        raise
    return user


def delete_user(session: Session, user_id: int) -> User:
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
        session.add(
            AuditEvent(
                user_id=user.id,
                action="delete",
                detail={"name": user.name, "email": user.email},
            )
        )
    return user


def _like_pattern(text: str) -> str:
    """``%text%`` with LIKE's wildcards in ``text`` matched literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_users(
    session: Session,
    *,
    search: str | None = None,
    after: int | None = None,
    limit: int = PAGE_SIZE,
) -> UserPage:
    """Newest users first, one keyset page at a time.

    ``after`` is the id of the last user of the previous page; the page is
    ``id < after``, so its cost does not grow with how deep the page is, and
    one extra row tells whether a next page exists — no COUNT(*).
    """
    stmt = (
        select(User.id, User.name, User.email, User.created_at)
        .order_by(User.id.desc())
        .limit(limit + 1)
    )
    if after is not None:
        stmt = stmt.where(User.id < after)
    if search:
        pattern = _like_pattern(search)
        # Name or email, through the one trigram index on both (models.py).
        stmt = stmt.where(USER_SEARCH_TEXT.ilike(pattern, escape="\\"))
    rows = [UserRow._make(row) for row in session.execute(stmt)]
    has_more = len(rows) > limit
    rows = rows[:limit]
    return UserPage(users=rows, next_after=rows[-1].id if has_more else None)


def get_user(session: Session, user_id: int, *, for_update: bool = False) -> User:
    """The user with this id; ``for_update`` locks its row until the transaction ends."""
    user = session.get(User, user_id, with_for_update=True if for_update else None)
    if user is None:
        raise UserNotFound(user_id)
    return user


def user_history(session: Session, user_id: int) -> list[AuditEvent]:
    """The user's audit events, newest first (kept after the user is deleted)."""
    stmt = (
        select(AuditEvent)
        .where(AuditEvent.user_id == user_id)
        .order_by(AuditEvent.id.desc())
    )
    return list(session.scalars(stmt))
