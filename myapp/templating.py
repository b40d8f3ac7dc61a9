"""What templates get besides a view's own values: filters, and the numbers
people see, each from its one source."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from functools import cache, lru_cache

from flask import Flask, current_app, request, url_for
from jinja2 import Environment
from markupsafe import Markup

from myapp.config import MAX_UPLOAD_TEXT
from myapp.listing import PAGE_SIZE, SEARCH_MAX
from myapp.users import UserSnapshot

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def timestamp(moment: datetime) -> Markup:
    """A ``<time>`` element: a readable UTC date for people, the exact ISO
    timestamp for machines (and on hover).

    One filter call per timestamp, because the list page shows fifty and
    three template expressions each cost more. The date is spelled out
    rather than ``strftime``-ed: ``%b`` follows the server's locale and
    ``%-d`` exists only in glibc (and this is also faster).
    """
    utc = moment.astimezone(timezone.utc)
    exact = utc.isoformat()  # "2026-11-30T19:05:07.123456+00:00"
    # Nothing to escape: the element is made here of digits, "-", ":", "+",
    # ".", "T", spaces and a month name from MONTHS, never of stored text. Not
    # calling escape() saves two escapes (and Markup objects) per row: 100 on
    # a list page. "HH:MM" is sliced out of the ISO string rather than
    # formatted again, all in one f-string (docs/performance.md).
    return Markup(  # nosec B704
        f'<time datetime="{exact}" title="{exact}">'
        f"{utc.day} {MONTHS[utc.month - 1]} {utc.year}, {exact[11:16]} UTC</time>"
    )


def layout_url(endpoint: str, filename: str | None = None) -> str:
    """``url_for(endpoint)``, or a static file's URL, for the links that every
    page repeats (the layout's stylesheet, script, icon and menu).

    Built once per application root and kept: such a URL depends only on the
    URL map, fixed once the app is built, and on where the app is mounted
    (``request.script_root``: the WSGI server's ``SCRIPT_NAME``). A page has
    a dozen of them; building each with ``url_for`` on every page cost 5% of
    the list page (docs/performance.md). URLs with values that vary (an id,
    a page cursor) keep using ``url_for``. Like the template it is called
    from, it needs a request.
    """
    if endpoint.startswith("."):
        # Relative to the current blueprint, which is not part of the key.
        raise ValueError(f"layout_url needs a full endpoint name, not {endpoint!r}")
    return _built_url(current_app._get_current_object(), request.script_root, endpoint, filename)


@lru_cache(maxsize=256)  # endpoints x roots: a few dozen in practice
def _built_url(app: Flask, script_root: str, endpoint: str, filename: str | None) -> str:
    if filename is None:
        return url_for(endpoint)
    return url_for(endpoint, filename=filename)


# Rendered rows a worker keeps: twenty full pages, about 1 MB.
USER_ROW_CACHE_SIZE = 1000
USER_ROW_TEMPLATE = "users/_row.html"  # its macro user_row(user, users_url)


def user_rows_renderer(env: Environment) -> Callable[[Sequence[UserSnapshot]], Markup]:
    """``user_rows(users)`` for ``env``'s templates: the users table's rows,
    each rendered once per distinct user and then reused.

    A row shows the user's own values and nothing about who is looking, so
    its HTML follows from the users' URL and the user's values alone. Those
    are the cache key: the whole snapshot, not just id and version, so a
    user whose name, email or anything else changed is a new key and can
    never be shown as it was. Rendering fifty rows was a fifth of the list
    page's Python work; reusing them costs a dictionary lookup each, and a
    row seen for the first time costs a little more than before (the macro
    call and the cache entry; docs/performance.md). The cache is bounded
    (least recently used rows go first) and per process, safe to share
    between a worker's threads like any ``lru_cache``.

    With ``TEMPLATES_AUTO_RELOAD`` (``flask run --debug``) every row is
    rendered afresh, so an edit of the row template shows at once.
    """

    def row_macros():  # the row template's module: its macro user_row
        return env.get_template(USER_ROW_TEMPLATE).module

    loaded_row_macros = cache(row_macros)  # looked up once, not once a row

    @lru_cache(maxsize=USER_ROW_CACHE_SIZE)
    def cached_row(users_url: str, user: UserSnapshot) -> Markup:
        # Checked on a miss only: an ORM User would hash the same after a
        # change and bring back a stale row; a snapshot's values are its key.
        if type(user) is not UserSnapshot:
            raise TypeError(f"user_rows needs UserSnapshot rows, not {type(user).__name__}")
        return loaded_row_macros().user_row(user, users_url)

    def user_rows(users: Sequence[UserSnapshot]) -> Markup:
        # One URL for the whole table, not a url_for per row: /users/<id> is
        # this prefix plus the id.
        users_url = layout_url("users.list_users")
        if env.auto_reload:  # debug: rendered afresh, so template edits show at once
            macros = row_macros()
            rows = [macros.user_row(user, users_url) for user in users]
        else:
            rows = [cached_row(users_url, user) for user in users]
        html = "".join(rows)
        # Each row is an autoescaping macro's output, already safe HTML.
        # (Markup("").join would escape-check each row again: 30 µs a page.)
        return Markup(html)  # nosec B704

    return user_rows


def init_app(app: Flask) -> None:
    app.add_template_filter(timestamp)
    # Globals, not a context processor: set once, no work per render.
    app.jinja_env.globals.update(
        PAGE_SIZE=PAGE_SIZE, SEARCH_MAX=SEARCH_MAX, MAX_UPLOAD_TEXT=MAX_UPLOAD_TEXT,
        layout_url=layout_url, user_rows=user_rows_renderer(app.jinja_env),
    )
