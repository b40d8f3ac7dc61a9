"""Sign-in: the accounts table, login failures, and who made each audited change.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

Expand only: two new tables and one nullable column. Code from before
sign-in runs on this schema unchanged (it never names the new column, and
its rows get NULL: "no account", as for changes made from the command line).

Locks on a live database: the new tables lock nothing that exists. Adding
the nullable column without a default is a catalog change (a brief ACCESS
EXCLUSIVE on ``audit_events``, no rewrite). The foreign key from
``audit_events.actor_id`` to ``accounts`` is added ``NOT VALID`` here
(SHARE ROW EXCLUSIVE on both tables, no scan) and validated by revision
0004, whose scan of ``audit_events`` holds only SHARE UPDATE EXCLUSIVE:
validating here would scan the whole table while this revision's ACCESS
EXCLUSIVE from ``ADD COLUMN`` is still held, blocking every read until the
scan ends. ``NOT VALID`` does not weaken anything meanwhile: every row
inserted or updated from now on is checked; only the old rows (all NULL)
wait for the scan.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("session_version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("disabled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True),
                  server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True),
                  server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("char_length(email) BETWEEN 3 AND 254",
                           name="accounts_email_length"),
        sa.CheckConstraint("role IN ('viewer', 'editor', 'admin')", name="accounts_role"),
    )
    # Unique ignoring case, like users: one account per address however typed.
    op.create_index(
        "accounts_email_lower_key", "accounts", [sa.text("lower(email)")], unique=True
    )

    op.create_table(
        "login_failures",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("email_key", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("login_failures_email_key_at_idx", "login_failures", ["email_key", "at"])
    op.create_index("login_failures_at_idx", "login_failures", ["at"])

    op.add_column("audit_events", sa.Column("actor_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        "audit_events_actor_id_fkey", "audit_events", "accounts", ["actor_id"], ["id"],
        postgresql_not_valid=True,
    )


def downgrade() -> None:
    op.drop_constraint("audit_events_actor_id_fkey", "audit_events", type_="foreignkey")
    op.drop_column("audit_events", "actor_id")
    op.drop_table("login_failures")  # their indexes go with them
    op.drop_table("accounts")
