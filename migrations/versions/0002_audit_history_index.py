"""Index the audit history page's query: audit_events (user_id, id DESC).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

A user's page lists their audit events newest first
(``WHERE user_id = ? ORDER BY id DESC``, myapp/users.py ``user_history``).
Without this index that is a scan of the whole table per page view; with it,
an index scan of the user's few rows, already in order (EXPLAIN ANALYZE at
1,000,000 users, before and after: docs/migrations.md).

Built CONCURRENTLY: users keep being created, edited and deleted (each
writing an audit row) while it builds. A database made by the pre-migration
``init-db`` already has this very index, so it is adopted at this revision
(myapp/migrating/adoption.py), and the helper would keep an index of that name anyway.
"""
from collections.abc import Sequence

import sqlalchemy as sa

from myapp.migrating.online_ddl import create_index_concurrently, drop_index_concurrently

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_index_concurrently(
        "audit_events_user_id_idx", "audit_events", ["user_id", sa.text("id DESC")]
    )


def downgrade() -> None:
    drop_index_concurrently("audit_events_user_id_idx", "audit_events")
