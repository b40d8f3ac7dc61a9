"""What sign-in costs a page: ``bench/run --signin-cost``.

Server-side revocation means one read of the signed-in account per request.
This prices it in the app's own process, where a busy machine blurs the
figures least: a 1,000-user database, one signed-in Flask test client (signed
in through the login form), and each page served two ways, interleaved in
rounds — the app as deployed, and with a ``user_loader`` that believes the
cookie without reading the account (what Flask's cookie session alone gives:
no revocation). For each it reports what the session does for one
request, counted from SQLAlchemy's events (pool checkouts, begins,
statements, commits and rollbacks: what the session does, not what reaches
PostgreSQL, which tests/test_round_trips.py counts on the wire), and the
median time per request. Writes ``bench/results/<date>-signin.{json,md}``.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections import Counter
from datetime import datetime, timezone

from sqlalchemy import event

from bench import signin
from bench.suite import (ROOT, database_url, drop_database, fresh_database, machine_info,
                         save_results, seed)
from myapp import create_app, db
from myapp.auth.login import SignedInAccount, load_account, login_manager
from myapp.models import Role

USERS = 1_000
VARIANTS = {
    "as deployed": "the account is read on every request (revocation)",
    "cookie only": "the account is believed from the cookie (no revocation)",
}


def believe_the_cookie(cookie_id: str) -> SignedInAccount:
    """A ``user_loader`` that takes the cookie's word: the signed-in account
    without reading it (no revocation). Also bench/floor_app.py's."""
    account_id, session_version = (int(part) for part in cookie_id.split("."))
    return SignedInAccount(account_id, signin.EMAIL, Role.EDITOR, session_version, False,
                           datetime.now(timezone.utc))


def use(variant: str) -> None:
    login_manager.user_loader(load_account if variant == "as deployed" else believe_the_cookie)


# What SQLAlchemy does for one request, by event. Not round trips: since
# issue 17 a read's "begin" and "rollback" send nothing (autocommit) and a
# checkout pings only a connection that sat idle; tests/test_round_trips.py
# counts what reaches PostgreSQL, on the wire.
ENGINE_EVENTS = {"begin": "begin", "before_cursor_execute": "statement", "commit": "commit",
                 "rollback": "rollback"}


def sqlalchemy_events(engine, request) -> dict[str, int]:
    """SQLAlchemy's checkouts, begins, statements, commits and rollbacks
    during one ``request()``. Call it only after the timed requests: a
    connection event listener switches the engine onto SQLAlchemy's event
    dispatch for every statement, and removing the listener does not switch
    it back (``Engine._has_events`` stays set)."""
    counts: Counter[str] = Counter()
    listeners = [(engine.pool, "checkout", lambda *a: counts.update(["checkout"]))]
    listeners += [(engine, name, lambda *a, kind=kind: counts.update([kind]))
                  for name, kind in ENGINE_EVENTS.items()]
    for target, name, listener in listeners:
        event.listen(target, name, listener)
    try:
        request()
    finally:
        for target, name, listener in listeners:
            event.remove(target, name, listener)
    return dict(counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run --signin-cost",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=100, help="per round and variant")
    args = parser.parse_args(argv)

    started = datetime.now(timezone.utc)
    url = database_url("myapp_bench_signin")
    fresh_database(url)
    try:
        seed(url, USERS)
        results = measure(url, args)
    finally:
        db.Session.remove()
        db.engine().dispose()
        drop_database(url)
    results = {"started": started.isoformat(timespec="seconds"),
               "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": machine_info(), "users": USERS, "rounds": args.rounds,
               "requests_per_round": args.requests, **results}
    out = ROOT / "bench" / "results" / f"{started:%Y-%m-%d}-signin"
    save_results(out, results, markdown(results))
    return 0


def measure(url: str, args) -> dict:
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench-signin-cost"})
    client = signin.signed_in_test_client(app)
    token = signin.csrf_token(client.get("/users/new").get_data(as_text=True))
    numbers = itertools.count()

    def list_page():
        assert client.get("/users").status_code == 200

    def create():
        n = next(numbers)
        assert client.post("/users", data={"csrf_token": token, "name": f"Cost {n}",
                                           "email": f"cost-{n}@example.com"}).status_code == 303

    pages = {"first page": list_page, "create": create}
    for variant in VARIANTS:
        use(variant)
        for request in pages.values():
            request()  # warm-up
    timings: dict[str, list[float]] = {}
    for round_no in range(1, args.rounds + 1):
        for name, request in pages.items():
            for variant in VARIANTS:
                use(variant)
                began = time.perf_counter()
                for _ in range(args.requests):
                    request()
                per_request_ms = (time.perf_counter() - began) / args.requests * 1000
                timings.setdefault(f"{name} / {variant}", []).append(round(per_request_ms, 3))
        print(f"round {round_no}/{args.rounds}: " + ", ".join(
            f"{key} {values[-1]:.2f} ms" for key, values in timings.items()), flush=True)
    events = {}  # counted last: see sqlalchemy_events
    for variant in VARIANTS:
        use(variant)
        for name, request in pages.items():
            events[f"{name} / {variant}"] = sqlalchemy_events(db.engine(), request)
    use("as deployed")
    return {
        "variants": VARIANTS,
        "scenarios": {
            key: {"sqlalchemy_events": events[key], "ms_per_request": values,
                  "median_ms": round(statistics.median(values), 3)}
            for key, values in timings.items()
        },
    }


def markdown(results: dict) -> str:
    lines = [
        f"Run {results['started']} – {results['finished']}; {results['users']:,} users; "
        f"Flask test client in one process; median of {results['rounds']} rounds of "
        f"{results['requests_per_round']} requests.",
        "",
        "| page | sign-in | SQLAlchemy events (not round trips: tests/test_round_trips.py)"
        " | ms per request (median) |",
        "| --- | --- | ---: | ---: |",
    ]
    for key, figures in results["scenarios"].items():
        page, variant = key.split(" / ")
        events = figures["sqlalchemy_events"]
        detail = ", ".join(f"{events.get(kind, 0)} {kind}" for kind in ("checkout", *ENGINE_EVENTS.values()))
        lines.append(f"| {page} | {variant} | {detail} | {figures['median_ms']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
