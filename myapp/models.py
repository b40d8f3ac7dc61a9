"""Tables of the contract, as typed SQLAlchemy models.

Defaults and timestamps are computed by PostgreSQL (``server_default``), not
by Python at import time, and rules that must hold under concurrency — the
case-insensitive unique email — are enforced by the database itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
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

# The column shapes both tables use.
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

    __table_args__ = (
        CheckConstraint(
            "action IN ('create', 'update', 'delete')", name="audit_events_action"
        ),
        Index("audit_events_user_id_idx", user_id, id.desc()),
    )
