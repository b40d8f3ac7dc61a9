"""Account services: creating accounts, changing them, and recognising the
signed-in one on each request. Like every service, each function takes the
``orm.Session`` to work in and knows nothing of Flask.

Revocation: every account has a ``session_version``, which is part of each
session cookie it signs in with (see :class:`AccountSnapshot`). Signing
out, a new password, a new role and disabling all raise it, so every cookie
issued before no longer matches and signs nobody in — on every worker and
instance at once, since the number lives in the database.

"Never the last admin": the changes that could take away the last enabled
admin first lock every enabled admin's row, so two admins demoting each
other at the same moment take turns and the second is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, exists, func, orm, select
from sqlalchemy.exc import IntegrityError

from myapp.auth import passwords
from myapp.models import ACCOUNT_EMAIL_UNIQUE_INDEX, Account, Role
from myapp.replicas import PRIMARY_ONLY
from myapp.validation import InvalidField, clean_email

log = logging.getLogger(__name__)

FIRST_ADMIN_EMAIL = "admin@example.com"


class AccountNotFound(LookupError):
    pass


class AccountEmailTaken(ValueError):
    message = "An account with this email address already exists."


class LastAdmin(Exception):
    message = "This is the last enabled admin account; make another admin first."


@dataclass(frozen=True)
class AccountSnapshot:
    """An account's values at one moment: plain data, no ORM state.

    What the services hand out, and what the signed-in account is on every
    request: it stays readable after the request's session is removed, or
    after a rollback expired everything the session had loaded.
    """

    id: int
    email: str
    role: Role
    session_version: int
    disabled: bool
    created_at: datetime

    @classmethod
    def of(cls, account: Account) -> AccountSnapshot:
        return cls(account.id, account.email, Role(account.role), account.session_version,
                   account.disabled, account.created_at)


_SNAPSHOT_COLUMNS = (Account.id, Account.email, Account.role, Account.session_version,
                     Account.disabled, Account.created_at)


# Built once: the sign-in check runs on every request, and building the
# statement cost more than SQLAlchemy's cached compilation of it. Over the
# table's columns, not the mapped attributes: the same SQL and the same rows,
# but a Core statement, which the session runs without the ORM's result
# loading — per-request work that bought nothing for six plain values
# (docs/performance.md). get_bind routes it like any other read.
_ACCOUNTS = Account.__table__
_SIGNED_IN_ACCOUNT = (
    select(_ACCOUNTS.c.id, _ACCOUNTS.c.email, _ACCOUNTS.c.role, _ACCOUNTS.c.session_version,
           _ACCOUNTS.c.disabled, _ACCOUNTS.c.created_at)
    .where(_ACCOUNTS.c.id == bindparam("account_id"))
    # From the primary even in a GET whose pages read a replica: a replica
    # behind the primary would still accept a revoked cookie.
    .execution_options(**PRIMARY_ONLY)
)


def _snapshot(row) -> AccountSnapshot:
    return AccountSnapshot(row.id, row.email, Role(row.role), row.session_version,
                           row.disabled, row.created_at)


def clean_password(raw: str | None) -> str:
    """A new password: at least 12 characters; kept exactly as typed."""
    value = raw or ""
    if len(value) < passwords.PASSWORD_MIN:
        raise InvalidField(
            f"The password must be at least {passwords.PASSWORD_MIN} characters long."
        )
    if len(value) > passwords.PASSWORD_MAX:
        raise InvalidField(
            f"The password must be at most {passwords.PASSWORD_MAX} characters long."
        )
    return value


def create_account(session: orm.Session, email: str, role: Role, password: str) -> AccountSnapshot:
    """Create an account; ``email`` and ``password`` are checked here too.

    Raises :class:`~myapp.validation.InvalidField` or
    :class:`AccountEmailTaken` (decided by the unique index, like users').
    """
    email, password = clean_email(email), clean_password(password)
    password_hash = passwords.hash_password(password)  # slow: outside the transaction
    try:
        with session.begin():
            account = Account(email=email, role=Role(role).value, password_hash=password_hash)
            session.add(account)
    except IntegrityError as err:
        if getattr(getattr(err.orig, "diag", None), "constraint_name", None) == (
            ACCOUNT_EMAIL_UNIQUE_INDEX
        ):
            raise AccountEmailTaken(email) from None
        raise
    return AccountSnapshot.of(account)


def create_first_admin(session: orm.Session, email: str = FIRST_ADMIN_EMAIL) -> tuple[str, str] | None:
    """With no account at all, create an admin with a random password.

    Returns ``(email, password)`` for the caller to show once, or None when
    an account already exists (also when another process created it first).
    """
    with session.begin():
        if session.scalar(select(exists().select_from(Account))):
            return None
    password = passwords.random_password()
    try:
        create_account(session, email, Role.ADMIN, password)
    except AccountEmailTaken:
        return None
    return email, password


def signed_in_account(session: orm.Session, account_id: int, session_version: int
                      ) -> AccountSnapshot | None:
    """The account a session cookie names, if that cookie is still good.

    One read by primary key, always on the primary. None when the account
    is gone or disabled, or its ``session_version`` has moved on since the
    cookie was issued.
    """
    row = session.execute(_SIGNED_IN_ACCOUNT, {"account_id": account_id}).one_or_none()
    if row is None or row.disabled or row.session_version != session_version:
        return None
    return _snapshot(row)


def list_accounts(session: orm.Session) -> list[AccountSnapshot]:
    rows = session.execute(select(*_SNAPSHOT_COLUMNS).order_by(func.lower(Account.email)))
    return [_snapshot(row) for row in rows]


def get_account(session: orm.Session, account_id: int) -> AccountSnapshot:
    row = session.execute(
        select(*_SNAPSHOT_COLUMNS).where(Account.id == account_id)
    ).one_or_none()
    if row is None:
        raise AccountNotFound(account_id)
    return _snapshot(row)


def _locked_account(session: orm.Session, account_id: int) -> Account:
    account = session.get(Account, account_id, with_for_update=True)
    if account is None:
        raise AccountNotFound(account_id)
    return account


def _lock_enabled_admins(session: orm.Session) -> list[int]:
    """Lock every enabled admin's row (in id order, so that concurrent
    callers queue instead of deadlocking) and return their ids."""
    return list(session.scalars(
        select(Account.id)
        .where(Account.role == Role.ADMIN.value, Account.disabled.is_(False))
        .order_by(Account.id)
        .with_for_update()
    ))


def _refuse_last_admin(admins: list[int], account: Account) -> None:
    if admins == [account.id]:
        raise LastAdmin(account.id)


def end_sessions(session: orm.Session, account_id: int) -> None:
    """Sign the account out everywhere: every cookie issued so far is void."""
    with session.begin():
        _locked_account(session, account_id).session_version += 1


def change_role(session: orm.Session, account_id: int, role: Role) -> AccountSnapshot:
    """Give the account ``role``; its sessions end. Raises :class:`LastAdmin`."""
    role = Role(role)
    with session.begin():
        admins = _lock_enabled_admins(session)
        account = _locked_account(session, account_id)
        if account.role != role.value:
            if role is not Role.ADMIN:
                _refuse_last_admin(admins, account)
            account.role = role.value
            account.session_version += 1
    return AccountSnapshot.of(account)


def reset_password(session: orm.Session, account_id: int, password: str) -> AccountSnapshot:
    """Set a new password; every session of the account ends."""
    password_hash = passwords.hash_password(clean_password(password))
    with session.begin():
        account = _locked_account(session, account_id)
        account.password_hash = password_hash
        account.session_version += 1
    return AccountSnapshot.of(account)


def set_disabled(session: orm.Session, account_id: int, disabled: bool) -> AccountSnapshot:
    """Disable (every session ends, sign-in refused) or enable the account.
    Raises :class:`LastAdmin` rather than disable the last enabled admin."""
    with session.begin():
        admins = _lock_enabled_admins(session)
        account = _locked_account(session, account_id)
        if account.disabled != disabled:
            if disabled:
                _refuse_last_admin(admins, account)
                account.session_version += 1
            account.disabled = disabled
    return AccountSnapshot.of(account)
