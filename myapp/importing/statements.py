"""The two SQL statements an import runs per batch, built once at start-up.

Both take the batch as arrays (one bound parameter each) that ``unnest``
turns back into rows: one short statement per batch, not one per row.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, Text, bindparam, func, insert, literal, select, true
from sqlalchemy.dialects.postgresql import ARRAY

from myapp.models import AuditEvent, User


def _screen_statement():
    """For each address of ``:emails``, in order: its key and, if taken, by whom.

    Returns (key, owner id or NULL, line in this run or NULL). The key is
    PostgreSQL's ``lower()``, the very expression of the unique index. Rows
    this transaction has already inserted are visible to it, so earlier
    lines of the file count as taken. Each key is looked up on its own
    through a LATERAL subquery with LIMIT 1 (the index is unique, so this
    changes no result): the planner cannot flatten it into a hash join, and
    always probes the ``lower(email)`` index — even in a table filled within
    this very transaction, whose statistics still say "empty". (A plain
    ``= ANY(:keys)`` or join then degrades into a sequential scan per batch,
    and the import into quadratic time.)
    """
    emails = (
        func.unnest(bindparam("emails", type_=ARRAY(Text)))
        .table_valued("email", with_ordinality="position")
        .render_derived(name="batch")
    )
    key = func.lower(emails.c.email)
    # Only for the (few) taken addresses: their audit row from this run, if any.
    line_in_this_run = (
        select(AuditEvent.detail["line"].as_integer())
        .where(
            AuditEvent.user_id == User.id,
            AuditEvent.action == "create",
            AuditEvent.detail["import"].astext == bindparam("run"),
        )
        .scalar_subquery()
    )
    owner = (
        select(User.id, line_in_this_run.label("line"))
        .where(func.lower(User.email) == key)
        .limit(1)
        .lateral("owner")
    )
    return (
        select(key, owner.c.id, owner.c.line)
        .select_from(emails)
        .outerjoin(owner, true())
        .order_by(emails.c.position)
    )


def _insert_batch_statement():
    """INSERT the batch's users and, through a data-modifying CTE, their audit rows."""
    rows = (
        func.unnest(
            bindparam("names", type_=ARRAY(Text)),
            bindparam("emails", type_=ARRAY(Text)),
            bindparam("lines", type_=ARRAY(Integer)),
        )
        .table_valued("name", "email", "line")
        .render_derived(name="batch")
    )
    # Core tables, not ORM entities: this is a plain INSERT ... SELECT, with
    # none of the ORM's per-object bookkeeping.
    users, audit_events = User.__table__, AuditEvent.__table__
    created = (
        insert(users)
        .from_select(["name", "email"], select(rows.c.name, rows.c.email))
        .returning(users.c.id, users.c.email)
        .cte("created")
    )
    detail = func.jsonb_build_object(
        "name", rows.c.name,
        "email", rows.c.email,
        "source", "import",
        "import", bindparam("run", type_=Text),
        "line", rows.c.line,
    )
    return insert(audit_events).from_select(
        ["user_id", "action", "detail", "actor_id"],
        select(created.c.id, literal("create"), detail,
               bindparam("actor_id", type_=BigInteger)).join_from(
            created, rows, created.c.email == rows.c.email
        ),
    )


SCREEN = _screen_statement()
INSERT_BATCH = _insert_batch_statement()
