"""What each Python-cost change of issue 17 bought: ``bench/run --python-cost``.

Each change is a switch that this script can turn back: for every switch,
and for the signed-in list page and the create, the same Flask test client
(signed in through the login form, a 1,000-user database) serves a batch of
requests with the change undone, then a batch with it, interleaved in
rounds. What is timed is the CPU time of the serving thread
(``time.thread_time``: the app's Python work, not PostgreSQL's, not waiting
for it), so the figure is the change's own saving. The ratio of each round
(before / after) is reported, median over rounds: a busy machine slows both
halves of a round alike, and which half goes first alternates. Writes ``bench/results/<date>-python-cost.{json,md}``.

The "before" code is kept here, and only here, as it was before the change.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import statistics
import time
from datetime import datetime, timezone

from flask import url_for
from markupsafe import Markup, escape
from sqlalchemy import bindparam, event, insert, select

from bench import signin
from bench.suite import (ROOT, database_url, drop_database, fresh_database, machine_info,
                         save_results, seed)
from myapp import create_app, db, listing, sessions, templating, users
from myapp.auth import accounts
from myapp.auth.login import login_manager
from myapp.models import USER_SEARCH_TEXT, Account, AuditEvent, User
from myapp.replicas import PRIMARY_ONLY
from myapp.users import UserSnapshot

USERS = 1_000


# --- the code as it was --------------------------------------------------------


def signed_in_account_built_per_request(session, account_id, session_version):
    row = session.execute(
        select(*accounts._SNAPSHOT_COLUMNS).where(Account.id == account_id)
    ).one_or_none()
    if row is None or row.disabled or row.session_version != session_version:
        return None
    return accounts._snapshot(row)


def audit_as_orm_object(session, user, action, actor_id, detail=None):
    if detail is None:
        detail = {"name": user.name, "email": user.email}
    session.add(AuditEvent(user_id=user.id, action=action, detail=detail, actor_id=actor_id))


def list_users_orm_built_per_request(session, *, search=None, after=None,
                                     limit=listing.PAGE_SIZE):
    stmt = (
        select(User.id, User.name, User.email, User.version, User.created_at)
        .order_by(User.id.desc())
        .limit(limit + 1)
    )
    if after is not None:
        stmt = stmt.where(User.id < after)
    if search:
        pattern = listing._like_pattern(search)
        stmt = stmt.where(USER_SEARCH_TEXT.ilike(pattern, escape="\\"))
    rows = [UserSnapshot._make(row) for row in session.execute(stmt)]
    has_more = len(rows) > limit
    rows = rows[:limit]
    return listing.UserPage(users=rows, next_after=rows[-1].id if has_more else None)


SIGNED_IN_ACCOUNT_ORM = (
    select(*accounts._SNAPSHOT_COLUMNS)
    .where(Account.id == bindparam("account_id"))
    .execution_options(**PRIMARY_ONLY)
)


def audit_built_per_write(session, user, action, actor_id, detail=None):
    if detail is None:
        detail = {"name": user.name, "email": user.email}
    session.execute(insert(AuditEvent.__table__).values(
        user_id=user.id, action=action, detail=detail, actor_id=actor_id))


def timestamp_escaped(moment):
    utc = moment.astimezone(timezone.utc)
    exact = escape(utc.isoformat())
    readable = escape(
        f"{utc.day} {templating.MONTHS[utc.month - 1]} {utc.year}, {utc.hour:02}:{utc.minute:02} UTC"
    )
    return Markup(f'<time datetime="{exact}" title="{exact}">{readable}</time>')  # nosec B704


def timestamp_formatted_twice(moment):
    utc = moment.astimezone(timezone.utc)
    exact = utc.isoformat()
    readable = f"{utc.day} {templating.MONTHS[utc.month - 1]} {utc.year}, {utc.hour:02}:{utc.minute:02} UTC"
    return Markup(f'<time datetime="{exact}" title="{exact}">{readable}</time>')  # nosec B704


def layout_url_per_page(endpoint, filename=None):
    return url_for(endpoint) if filename is None else url_for(endpoint, filename=filename)


_NEW = {"signed_in_account": accounts.signed_in_account, "_audit": users._audit,
        "_SIGNED_IN_ACCOUNT": accounts._SIGNED_IN_ACCOUNT, "list_users": listing.list_users}
# The app being measured (its Jinja environment holds the filters).
_APP = {}


def session_protection(on: bool) -> None:
    login_manager.session_protection = None if on else "basic"


def statement_built_once(on: bool) -> None:
    accounts.signed_in_account = (_NEW["signed_in_account"] if on
                                  else signed_in_account_built_per_request)


def audit_as_insert(on: bool) -> None:
    users._audit = _NEW["_audit"] if on else audit_as_orm_object


def core_reads(on: bool) -> None:
    accounts._SIGNED_IN_ACCOUNT = (_NEW["_SIGNED_IN_ACCOUNT"] if on
                                   else SIGNED_IN_ACCOUNT_ORM)
    listing.list_users = _NEW["list_users"] if on else list_users_orm_built_per_request


def audit_insert_built_once(on: bool) -> None:
    # "Before" is the plain INSERT of the switch above, built per write.
    users._audit = _NEW["_audit"] if on else audit_built_per_write


def timestamp_filter_before(before):
    """A switch between ``before`` and the ``timestamp`` filter as it is now."""
    def switch(on: bool) -> None:
        if "app" in _APP:
            _APP["app"].jinja_env.filters["timestamp"] = templating.timestamp if on else before
    return switch


def layout_urls_built_once(on: bool) -> None:
    if "app" in _APP:
        _APP["app"].jinja_env.globals["layout_url"] = (templating.layout_url if on
                                                       else layout_url_per_page)


def reads_in_autocommit_by_session_event(on: bool) -> None:
    if "app" not in _APP:
        return
    engine = db.engine()
    twins = _APP.setdefault("twins", {})
    if not twins:
        twins[True] = sessions._autocommit_twin(engine)
        # Before: the twin flipped each connection it made in autocommit
        # itself, with a connection event (engine_connect). The session's
        # after_begin listener flips it again: one attribute, no round trip.
        twins[False] = engine.execution_options(**{sessions.AUTOCOMMIT: True})
        event.listen(twins[False], "engine_connect", sessions._autocommit_on)
    sessions._autocommit_twins[engine] = twins[on]


SWITCHES = {
    "no session-protection hash": session_protection,
    "sign-in statement built once": statement_built_once,
    "audit row as a plain INSERT": audit_as_insert,
    # Issue 17, second round (issue-17c):
    "reads as Core statements built once": core_reads,
    "audit INSERT built once": audit_insert_built_once,
    # "After" is the filter as it is now, so this ratio also holds the
    # fourth round's change below.
    "timestamp without escape()": timestamp_filter_before(timestamp_escaped),
    # Issue 17, third round:
    "layout URLs built once": layout_urls_built_once,
    "reads' autocommit set by a session event": reads_in_autocommit_by_session_event,
    # Issue 17, fourth round:
    "timestamp in one f-string": timestamp_filter_before(timestamp_formatted_twice),
}


def all_changes(on: bool, switches=None) -> None:
    # Newest first, so that where two changes replaced the same code (the
    # audit row), the older "before" is the one left in place.
    for switch in reversed(list((switches or SWITCHES).values())):
        switch(on)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run --python-cost",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--requests", type=int, default=100, help="per round, switch and state")
    parser.add_argument("--only", action="append", choices=list(SWITCHES),
                        help="measure only this change (repeatable); the last row, 'all of "
                             "these', switches the chosen ones together")
    args = parser.parse_args(argv)

    started = datetime.now(timezone.utc)
    url = database_url("myapp_bench_python_cost")
    fresh_database(url)
    try:
        seed(url, USERS)
        results = measure(url, args)
    finally:
        db.Session.remove()
        db.engine().dispose()
        drop_database(url)
        all_changes(True)
    results = {"started": started.isoformat(timespec="seconds"),
               "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": machine_info(), "users": USERS, "rounds": args.rounds,
               "requests_per_round": args.requests, **results}
    out = ROOT / "bench" / "results" / f"{started:%Y-%m-%d}-python-cost"
    save_results(out, results, markdown(results))
    return 0


def measure(url: str, args) -> dict:
    app = _APP["app"] = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench-python-cost"})
    client = signin.signed_in_test_client(app)
    token = signin.csrf_token(client.get("/users/new").get_data(as_text=True))
    signed_in = client.get_cookie("session").value
    numbers = itertools.count()

    def list_page():
        assert client.get("/users").status_code == 200

    def create():
        n = next(numbers)
        assert client.post("/users", data={"csrf_token": token, "name": f"Cost {n}",
                                           "email": f"cost-{n}@example.com"}).status_code == 303
        # A browser follows the redirect, whose page takes the flashed
        # message out of the cookie again; without that the cookie would
        # grow by one message per create, and every request with it.
        client.set_cookie("session", signed_in)

    pages = {"signed-in list page": list_page, "create": create}
    chosen = {name: switch for name, switch in SWITCHES.items()
              if not args.only or name in args.only}
    switches = {**chosen,
                "all of them" if not args.only else "all of these":
                    lambda on: all_changes(on, chosen)}

    def cpu_ms(request) -> float:
        gc.collect()  # not a collection left over from the other half
        began = time.thread_time()
        for _ in range(args.requests):
            request()
        return (time.thread_time() - began) / args.requests * 1000

    for request in pages.values():
        for _ in range(20):
            request()  # warm-up: caches, pool, the first statements compiled
    figures: dict[str, dict[str, list[float]]] = {}
    for round_no in range(1, args.rounds + 1):
        for name, switch in switches.items():
            for page, request in pages.items():
                all_changes(True)
                # Which half goes first alternates, so neither always gets
                # the warmer caches.
                states = (False, True) if round_no % 2 else (True, False)
                timed = {}
                for on in states:
                    switch(on)
                    timed[on] = cpu_ms(request)
                before, after = timed[False], timed[True]
                entry = figures.setdefault(f"{name} / {page}",
                                           {"before_ms": [], "after_ms": [], "ratio": []})
                entry["before_ms"].append(round(before, 4))
                entry["after_ms"].append(round(after, 4))
                entry["ratio"].append(round(before / after, 4))
        print(f"round {round_no}/{args.rounds}", flush=True)
    return {"scenarios": {
        key: {**values,
              "median_before_ms": round(statistics.median(values["before_ms"]), 3),
              "median_after_ms": round(statistics.median(values["after_ms"]), 3),
              "median_ratio": round(statistics.median(values["ratio"]), 3)}
        for key, values in figures.items()
    }}


def markdown(results: dict) -> str:
    lines = [
        f"Run {results['started']} – {results['finished']}; {results['users']:,} users; "
        f"Flask test client in one process, signed in; CPU time of the serving thread; "
        f"median of {results['rounds']} rounds of {results['requests_per_round']} requests "
        "per state.",
        "",
        "| change | page | CPU ms before | after | ratio before/after (median of rounds) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for key, figures in results["scenarios"].items():
        change, page = key.split(" / ")
        lines.append(f"| {change} | {page} | {figures['median_before_ms']:.3f} | "
                     f"{figures['median_after_ms']:.3f} | {figures['median_ratio']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
