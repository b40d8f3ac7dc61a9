"""What the session's round trips cost: ``bench/run --floor``.

Serves a 1,000-user database three ways with the production gunicorn config —
the app as it is, and the two counter-examples of ``bench/floor_app.py`` (no
pool pre-ping; no pre-ping and no transactions) — beside the plain Flask
hello, and measures ``/healthz``, the first page of ``/users`` and the create
in interleaved rounds, as ``bench/suite.py`` does. The result is each
scenario's median throughput and its ratio to hello: how far from the hello
ceiling the app would be even without the round trips its session model
makes. Writes ``bench/results/<date>-floor.{json,md}``.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
from contextlib import ExitStack
from datetime import datetime, timezone

from bench import signin
from bench.suite import (
    ROOT, THREADS, WORKERS, csrf_session, database_url, drop_database, fresh_database,
    machine_info, rps_recorder, save_results, seed, wrk,
)
from harness.gunicorn import GunicornServer

USERS = 1_000
# Server name -> (gunicorn app module, BENCH_FLOOR, what it leaves out).
SERVERS = {
    "app": ("wsgi:app", None, "nothing: the app as deployed"),
    "no pre-ping": ("bench.floor_app:app", "no-pre-ping", "the pool's pre-ping (1 round trip)"),
    "autocommit": ("bench.floor_app:app", "autocommit",
                   "pre-ping, BEGIN and ROLLBACK/COMMIT (3 round trips)"),
    "cookie-only sign-in": ("bench.floor_app:app", "cookie-only-sign-in",
                            "the signed-in account's read (server-side revocation)"),
}
# Without transactions a create is not atomic: it is not measured that way.
CREATES_ON = ("app", "no pre-ping")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run --floor", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=6, help="seconds per wrk run")
    args = parser.parse_args(argv)

    started = datetime.now(timezone.utc)
    url = database_url("myapp_bench_floor")
    fresh_database(url)
    runs: dict[str, list[float]] = {}
    try:
        seed(url, USERS)
        with GunicornServer("postgresql+psycopg2:///unused", workers=WORKERS, threads=THREADS,
                            app_module="bench.hello:app") as hello:
            with ExitStack() as stack:
                servers = {
                    name: stack.enter_context(GunicornServer(
                        url, workers=WORKERS, threads=THREADS, app_module=module,
                        env={"BENCH_FLOOR": variant} if variant else None))
                    for name, (module, variant, _) in SERVERS.items()
                }
                measure(hello, servers, args, runs)
    finally:
        drop_database(url)

    results = summarise(runs, args, started)
    out = ROOT / "bench" / "results" / f"{started:%Y-%m-%d}-floor"
    save_results(out, results, markdown(results))
    return 0


def measure(hello: GunicornServer, servers: dict[str, GunicornServer], args, runs) -> None:
    record = rps_recorder(runs)

    cookies = {name: signin.signed_in_cookie(server.url) for name, server in servers.items()}
    for name, server in servers.items():  # warm-up: templates compiled, pools filled
        wrk(server.url + "/users", 1, {"BENCH_COOKIE": cookies[name]})
    for round_no in range(1, args.rounds + 1):
        print(f"round {round_no}/{args.rounds}", flush=True)
        record("hello", wrk(hello.url + "/", args.duration))
        for name, server in servers.items():
            record(f"healthz / {name}", wrk(server.url + "/healthz", args.duration))
            record(f"first page / {name}", wrk(server.url + "/users", args.duration,
                                                {"BENCH_COOKIE": cookies[name]}))
            if name in CREATES_ON:
                token, cookie = csrf_session(server.url, cookies[name])
                record(f"create / {name}", wrk(server.url + "/users", args.duration, {
                    "BENCH_CREATE": "1", "BENCH_CSRF": token, "BENCH_COOKIE": cookie,
                    "BENCH_RUN": secrets.token_hex(4)}))


def summarise(runs: dict[str, list[float]], args, started: datetime) -> dict:
    hello = statistics.median(runs["hello"])
    return {
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "config": {"users": USERS, "rounds": args.rounds, "duration_s": args.duration,
                   "gunicorn": f"{WORKERS} workers x {THREADS} threads (gthread), gunicorn.conf.py"},
        "servers": {name: without for name, (_, _, without) in SERVERS.items()},
        "scenarios": {
            key: {"runs": values, "rps_median": round(statistics.median(values), 1),
                  "of_hello": round(statistics.median(values) / hello, 3)}
            for key, values in runs.items()
        },
    }


def markdown(results: dict) -> str:
    lines = [
        f"Run {results['started']} – {results['finished']}; commit {results['machine']['git_commit']};"
        f" {results['config']['gunicorn']}; {results['config']['users']:,} users;"
        f" median of {results['config']['rounds']} runs of {results['config']['duration_s']} s.",
        "",
        "| scenario | server leaves out | req/s (median) | of hello |",
        "| --- | --- | ---: | ---: |",
    ]
    for key, scenario in results["scenarios"].items():
        name = key.split(" / ")[-1]
        without = results["servers"].get(name, "")
        lines.append(f"| {key} | {without} | {scenario['rps_median']:,.0f} | {scenario['of_hello']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
