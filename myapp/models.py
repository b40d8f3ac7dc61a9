"""Tables of the contract, as typed SQLAlchemy models: the users the app
manages and their audit trail, and the accounts that sign in to manage them.

Defaults and timestamps are computed by PostgreSQL (``server_default``), not
by Python at import time, and rules that must hold under concurrency — the
case-insensitive unique email — are enforced by the database itself.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Text,
    func,
    literal,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAME_MAX = 100
BIGINT_MAX = 2**63 - 1  # the largest id PostgreSQL's bigint can hold
EMAIL_MIN, EMAIL_MAX = 3, 254
EMAIL_UNIQUE_INDEX = "users_email_lower_key"

# The column shapes the tables share.
BigIdentity = Annotated[int, mapped_column(BigInteger, Identity(), primary_key=True)]
ServerTimestamp = Annotated[
    datetime, mapped_column(DateTime(timezone=True), server_default=func.now())
]


class Base(DeclarativeBase):
    type_annotation_map = {str: Text}


class User(Base):
    __tablename__ = "users"

    id: Mapped[BigIdentity]
    name: Mapped[str]
    email: Mapped[str] = mapped_column()  # assigned: the index below names it
    created_at: Mapped[ServerTimestamp]
    updated_at: Mapped[ServerTimestamp] = mapped_column(onupdate=func.now())
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))

    __mapper_args__ = {
        # Optimistic locking: every UPDATE says "... WHERE version = <what I
        # read>" and fails if another transaction saved in between.
        "version_id_col": version,
        # Fetch server-generated columns (id, timestamps) with RETURNING at
        # flush, so they are loaded without another round trip.
        "eager_defaults": True,
    }
    __table_args__ = (
        CheckConstraint(
            f"char_length(name) BETWEEN 1 AND {NAME_MAX}", name="users_name_length"
        ),
        CheckConstraint(
            f"char_length(email) BETWEEN {EMAIL_MIN} AND {EMAIL_MAX}",
            name="users_email_length",
        ),
        Index(EMAIL_UNIQUE_INDEX, func.lower(email), unique=True),
    )


# What ?q= searches: name and email as one string, so that ONE trigram index
# serves ILIKE '%term%' on both. Two indexes (one per column) cost twice the
# upkeep on every insert and two index scans per search (docs/performance.md).
# Validation lets no control character into either column, nor into a search
# term, so no match can span the newline between them.
USER_SEARCH_TEXT = User.name + literal("\n", Text) + User.email

SEARCH_INDEX = Index(
    "users_search_trgm_idx",
    USER_SEARCH_TEXT.label("search_text"),
    postgresql_using="gin",
    postgresql_ops={"search_text": "gin_trgm_ops"},
)


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[BigIdentity] = mapped_column()  # assigned: the index below names it
    # Deliberately not a foreign key: the history outlives the user.
    user_id: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str]
    at: Mapped[ServerTimestamp]
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    # The account that made the change; NULL for changes made from the
    # command line (import-users, seed-users) and for rows older than sign-in.
    actor_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("accounts.id", name="audit_events_actor_id_fkey")
    )

    __table_args__ = (
        CheckConstraint(
            "action IN ('create', 'update', 'delete')", name="audit_events_action"
        ),
        Index("audit_events_user_id_idx", user_id, id.desc()),
    )


# --- sign-in -------------------------------------------------------------------


class Role(enum.StrEnum):
    """What an account may do; each role may also do everything the ones
    before it may."""

    VIEWER = "viewer"  # reads users
    EDITOR = "editor"  # also creates, edits, deletes and imports them
    ADMIN = "admin"  # also manages accounts

    def includes(self, other: Role) -> bool:
        return _ROLE_RANKS[self] >= _ROLE_RANKS[other]


# Each role's place in the order above, counted once: every page asks a few
# times (the access check, the menu), and listing the enum each time cost
# 2 µs an answer (docs/performance.md).
_ROLE_RANKS = {role: rank for rank, role in enumerate(Role)}


ACCOUNT_EMAIL_UNIQUE_INDEX = "accounts_email_lower_key"


class Account(Base):
    """Someone who can sign in. Kept apart from the ``users`` the app manages."""

    __tablename__ = "accounts"

    id: Mapped[BigIdentity]
    email: Mapped[str] = mapped_column()  # assigned: the index below names it
    role: Mapped[str]
    # argon2id, in the PHC string format (algorithm, parameters, salt, hash).
    password_hash: Mapped[str]
    # Part of every session cookie of this account, compared on each request:
    # raising it (sign out, new password, new role, disabled) makes every
    # cookie issued before worthless.
    session_version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    disabled: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[ServerTimestamp]
    updated_at: Mapped[ServerTimestamp] = mapped_column(onupdate=func.now())

    __mapper_args__ = {"eager_defaults": True}
    __table_args__ = (
        CheckConstraint(
            f"char_length(email) BETWEEN {EMAIL_MIN} AND {EMAIL_MAX}",
            name="accounts_email_length",
        ),
        CheckConstraint(
            "role IN ({})".format(", ".join(f"'{role}'" for role in Role)),
            name="accounts_role",
        ),
        Index(ACCOUNT_EMAIL_UNIQUE_INDEX, func.lower(email), unique=True),
    )


class LoginFailure(Base):
    """One failed (or not yet checked) sign-in attempt, for throttling: kept
    in the database so that every worker of every instance counts the same."""

    __tablename__ = "login_failures"

    id: Mapped[BigIdentity]
    # lower(email) as typed, whether or not an account has it: throttling
    # only known addresses would tell an attacker which ones exist.
    email_key: Mapped[str] = mapped_column()  # assigned: the indexes below name it
    at: Mapped[ServerTimestamp] = mapped_column()

    __table_args__ = (
        Index("login_failures_email_key_at_idx", email_key, at),
        Index("login_failures_at_idx", at),  # pruning the expired ones
    )
