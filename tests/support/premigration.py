"""The schema the pre-migration ``init-db`` made, frozen.

Until migrations existed, ``flask init-db`` ran ``CREATE EXTENSION pg_trgm``
and ``Base.metadata.create_all`` on myapp/models.py as of commit ad99c62.
These are those tables, copied as they were, so that the adoption tests
keep building a pre-migration database however the models change later.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Engine,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    func,
    literal,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("name", Text, nullable=False),
    Column("email", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    Column("updated_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    Column("version", Integer, server_default=text("1"), nullable=False),
    CheckConstraint("char_length(name) BETWEEN 1 AND 100", name="users_name_length"),
    CheckConstraint("char_length(email) BETWEEN 3 AND 254", name="users_email_length"),
)
Index("users_email_lower_key", func.lower(users.c.email), unique=True)
Index(
    "users_search_trgm_idx",
    (users.c.name + literal("\n", Text) + users.c.email).label("search_text"),
    postgresql_using="gin",
    postgresql_ops={"search_text": "gin_trgm_ops"},
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("user_id", BigInteger, nullable=False),
    Column("action", Text, nullable=False),
    Column("at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    Column("detail", JSONB, server_default="{}", nullable=False),
    CheckConstraint("action IN ('create', 'update', 'delete')", name="audit_events_action"),
)
Index("audit_events_user_id_idx", audit_events.c.user_id, audit_events.c.id.desc())


def create_premigration_schema(engine: Engine) -> None:
    """What the pre-migration ``init-db`` did."""
    with engine.begin() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        metadata.create_all(conn)
