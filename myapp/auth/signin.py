"""Checking a sign-in attempt, with throttling that every worker shares.

Failed attempts are rows in ``login_failures``, so every worker of every
instance counts the same ones. An attempt for an email that already has
``MAX_FAILURES`` failures within ``WINDOW`` is refused before any password
is checked, until the oldest of them is older than the window.

An attempt is counted (as a failure, until its password proves right) in a
short transaction holding a transaction-level advisory lock on its email:
attempts for one address are counted one after another, so ten
simultaneous guesses cannot all slip under the limit; attempts for
different addresses do not wait for each other; and COMMIT, ROLLBACK or a
lost connection releases the lock, also through PgBouncer. The password is
checked after that transaction, holding nothing.

An attempt takes the same time whether the address has an account or not:
an unknown address is checked against a dummy hash, and failures are
counted for every address typed.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import delete, func, orm, select, update

from myapp.auth import passwords
from myapp.auth.accounts import AccountSnapshot
from myapp.models import Account, LoginFailure

log = logging.getLogger(__name__)

MAX_FAILURES = 10
WINDOW = timedelta(minutes=15)
# How many expired failures one attempt deletes at most, in passing.
PRUNE_BATCH = 1000
# The advisory locks of sign-in attempts: (this class, hashtext(email key)).
# The two-key form is a key space of its own, apart from one-key locks such
# as the import's, so no email can ever hash onto those. Spells "logi".
SIGNIN_LOCK_CLASS = 0x6C6F_6769


class SignInFailed(Exception):
    """Wrong email or password (which of the two is not said), or a disabled account."""

    message = "Wrong email or password."


class SignInThrottled(Exception):
    message = (
        f"Too many failed sign-ins for this email. Try again in {WINDOW.seconds // 60} minutes."
    )
    retry_after = int(WINDOW.total_seconds())


def email_key(email: str) -> str:
    return email.strip().lower()


def _recent_failures(session: orm.Session, key: str) -> int:
    return session.scalar(
        select(func.count())
        .select_from(LoginFailure)
        .where(LoginFailure.email_key == key, LoginFailure.at > func.now() - WINDOW)
    )


def _prune_expired(session: orm.Session) -> None:
    """Delete a batch of failures older than the window, skipping any row
    another attempt is deleting right now (no waiting, no deadlock)."""
    expired = (
        select(LoginFailure.id)
        .where(LoginFailure.at <= func.now() - WINDOW)
        .limit(PRUNE_BATCH)
        .with_for_update(skip_locked=True)
    )
    session.execute(delete(LoginFailure).where(LoginFailure.id.in_(expired.scalar_subquery())))


def authenticate(session: orm.Session, email: str, password: str) -> AccountSnapshot:
    """The account ``email`` and ``password`` sign in to.

    Raises :class:`SignInThrottled` (nothing checked, nothing written) or
    :class:`SignInFailed` (the failure stays recorded). A success clears the
    address's failures and upgrades an outdated password hash.

    Two short transactions around the slow part. The first, under the
    email's lock, counts the recent failures and records this attempt as one
    more *before* the password is checked: attempts in flight count against
    the limit, so simultaneous guesses cannot all slip under it, and yet no
    lock, transaction or connection is held while argon2 works. The second,
    after a success, deletes the failures again.
    """
    key = email_key(email)
    with session.begin():
        session.execute(select(func.pg_advisory_xact_lock(SIGNIN_LOCK_CLASS, func.hashtext(key))))
        failures = _recent_failures(session, key)
        if failures >= MAX_FAILURES:
            log.warning("sign-in refused, too many failures: %r", key)
            raise SignInThrottled(key)  # rolls the block back: nothing written
        session.add(LoginFailure(email_key=key))
        _prune_expired(session)
        account = session.scalars(
            select(Account).where(func.lower(Account.email) == key)
        ).one_or_none()
    matches = passwords.verify_password(account.password_hash if account else None, password)
    if not matches or account.disabled:
        reason = "account disabled" if matches else "wrong email or password"
        log.warning("sign-in failed (%s): %r", reason, key)
        if failures + 1 == MAX_FAILURES:
            log.warning("sign-in locked for %s after %d failures: %r", WINDOW, MAX_FAILURES, key)
        raise SignInFailed(key)
    upgraded_hash = (passwords.hash_password(password)
                     if passwords.needs_rehash(account.password_hash) else None)
    with session.begin():
        session.execute(delete(LoginFailure).where(LoginFailure.email_key == key))
        if upgraded_hash:
            session.execute(
                update(Account).where(Account.id == account.id).values(password_hash=upgraded_hash)
            )
    log.info("signed in: %r (%s)", account.email, account.role)
    return AccountSnapshot.of(account)
