"""Validate audit_events.actor_id's foreign key, added NOT VALID by 0003.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

Its own revision, as docs/migrations.md's lock table asks: the check of the
existing rows scans all of ``audit_events``, and run in 0003's transaction
it would do so under the ACCESS EXCLUSIVE lock of 0003's ``ADD COLUMN``,
stopping every read and write of the table for the whole scan.
``VALIDATE CONSTRAINT`` on its own holds SHARE UPDATE EXCLUSIVE: requests
go on. Kept alone in its revision because the helper's
``autocommit_block`` commits whatever the revision did before it.
"""
from collections.abc import Sequence

from alembic import op

from myapp.migrating.online_ddl import validate_constraint

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    validate_constraint("audit_events_actor_id_fkey", "audit_events")


def downgrade() -> None:
    # Back to 0003's state: the same foreign key, NOT VALID. PostgreSQL has
    # no "invalidate", so drop and re-add it (no scan either way).
    op.drop_constraint("audit_events_actor_id_fkey", "audit_events", type_="foreignkey")
    op.create_foreign_key(
        "audit_events_actor_id_fkey", "audit_events", "accounts", ["actor_id"], ["id"],
        postgresql_not_valid=True,
    )
