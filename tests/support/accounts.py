"""The accounts every test starts with, and ways to sign in as them.

Each test starts with one account per role (ids 1, 2, 3 in role order), all
with :data:`PASSWORD`. Their hash is computed once per test process: argon2
is slow on purpose, and the tests sign in often.
"""

from __future__ import annotations

import functools

from sqlalchemy import Connection, create_engine, insert, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from myapp.auth.passwords import hash_password
from myapp.models import Account, Role

PASSWORD = "correct horse battery staple"
EMAILS = {role: f"{role.value}@example.com" for role in Role}
IDS = {role: number for number, role in enumerate(Role, start=1)}


@functools.cache
def password_hash() -> str:
    return hash_password(PASSWORD)


def insert_standard_accounts(conn: Connection) -> None:
    """One account per role, with the ids of :data:`IDS`; ``accounts`` must be empty.

    The ids are given, and the identity set past them, because a test rolled
    back at its end does not roll its sequences back.
    """
    conn.execute(
        insert(Account),
        [{"id": IDS[role], "email": EMAILS[role], "role": role.value,
          "password_hash": password_hash()} for role in Role],
    )
    conn.execute(text("SELECT setval(pg_get_serial_sequence('accounts', 'id'), :last)"),
                 {"last": max(IDS.values())})


def insert_standard_accounts_into(database_url: URL | str) -> None:
    """:func:`insert_standard_accounts`, committed, into the database at
    ``database_url`` (a whole cluster's primary, say)."""
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            insert_standard_accounts(conn)
    finally:
        engine.dispose()


def sign_in_test_client(client, role: Role | None):
    """Make a Flask test client a signed-in ``role`` (None: stay anonymous).

    It writes the session cookie the login view would write, without the
    login form's password check (tests/test_auth.py covers that form): the
    account is still loaded and checked on every request, as in production.
    """
    if role is not None:
        with client.session_transaction() as session:
            session["_user_id"] = f"{IDS[role]}.1"
            session["_fresh"] = True
    return client
