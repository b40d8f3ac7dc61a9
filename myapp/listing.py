"""The users list: newest first, a keyset page at a time, optionally searched."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, orm, select

from myapp.models import EMAIL_MAX, NAME_MAX, USER_SEARCH_TEXT, User
from myapp.users import UserSnapshot

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# Long enough to search for any whole stored value (an address is up to 254).
SEARCH_MAX = max(NAME_MAX, EMAIL_MAX)


_USERS = User.__table__
# Built once, and over the table's columns rather than the mapped attributes:
# the same SQL and rows, but a Core statement, which the session runs without
# the ORM's per-row result loading — Python work on every page that bought
# nothing for plain tuples (docs/performance.md). The limit and the keyset
# cursor are bound parameters, so the first page and a page after a cursor are
# each one statement for the process's whole life: nothing to build, and no
# cache key to compute, per request.
_NEWEST_FIRST = (
    select(_USERS.c.id, _USERS.c.name, _USERS.c.email, _USERS.c.version, _USERS.c.created_at)
    .order_by(_USERS.c.id.desc())
    .limit(bindparam("limit"))
)
_OLDER_THAN = _NEWEST_FIRST.where(_USERS.c.id < bindparam("after"))


@dataclass(frozen=True)
class UserPage:
    users: list[UserSnapshot]
    next_after: int | None  # keyset cursor of the next page, if there is one


def _like_pattern(text: str) -> str:
    """``%text%`` with LIKE's wildcards in ``text`` matched literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_users(
    session: orm.Session,
    *,
    search: str | None = None,
    after: int | None = None,
    limit: int = PAGE_SIZE,
) -> UserPage:
    """Newest users first, one keyset page at a time.

    ``after`` is the id of the last user of the previous page; the page is
    ``id < after``, so its cost does not grow with how deep the page is, and
    one extra row tells whether a next page exists — no COUNT(*).
    """
    stmt = _NEWEST_FIRST if after is None else _OLDER_THAN
    if search:
        pattern = _like_pattern(search)
        # Name or email, through the one trigram index on both (models.py).
        stmt = stmt.where(USER_SEARCH_TEXT.ilike(pattern, escape="\\"))
    params = {"limit": limit + 1, "after": after}
    # all(): one fetchall for the page, not a fetchone per row.
    rows = [UserSnapshot._make(row) for row in session.execute(stmt, params).all()]
    has_more = len(rows) > limit
    rows = rows[:limit]
    return UserPage(users=rows, next_after=rows[-1].id if has_more else None)
