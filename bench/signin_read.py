"""Which part of sign-in's read costs the signed-in page its throughput:
``bench/run --signin-read``.

The signed-in list page reads the account on every request (revocation
that takes effect at once). Under wrk it serves about a fifth fewer pages
than the same page that believes the cookie, while the read is only ~6 % of
the page's instructions. This bench splits the read's cost in two by
serving the 1,000-user list page, signed in, three ways side by side with
the production gunicorn config, in interleaved rounds:

* *as deployed* — the account read through the ``Session``
  (``myapp.auth.accounts.signed_in_account``);
* *bare cursor* — the same read with psycopg2's cursor on the session's
  connection, nothing of SQLAlchemy in it (``bench/floor_app.py``'s
  ``bare-cursor-sign-in``): the cheapest read of the row there is;
* *cookie only* — no read (``cookie-only-sign-in``; what the usual-build
  bench's "no account read" side serves).

If *bare cursor* served as many pages as *cookie only*, SQLAlchemy's part
would be the cost; if it serves as few as *as deployed*, the round trip
itself is. Reports each side's median req/s and workers' CPU per request
and the medians of the per-round ratios against *cookie only*. Writes
``bench/results/<date>-signin-read.{json,md}``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from contextlib import ExitStack
from datetime import datetime, timezone

from bench import signin
from bench.suite import (
    ROOT, THREADS, WORKERS, check_signed_in, machine_info, rps_recorder, save_results,
    seeded_database, worker_cpu_seconds, wrk,
)
from harness.gunicorn import GunicornServer

USERS = 1_000
BASELINE = "cookie only"
# Side -> (gunicorn app module, environment, what it reads per request).
SIDES = {
    "as deployed": ("wsgi:app", {}, "the account, through the Session"),
    "bare cursor": ("bench.floor_app:app", {"BENCH_FLOOR": "bare-cursor-sign-in"},
                    "the account, with psycopg2's cursor alone"),
    BASELINE: ("bench.floor_app:app", {"BENCH_FLOOR": "cookie-only-sign-in"},
               "nothing: the cookie is believed"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run --signin-read",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    args = parser.parse_args(argv)

    started = datetime.now(timezone.utc)
    runs: dict[str, list[float]] = {}
    with seeded_database("myapp_bench_signin_read", USERS) as url, ExitStack() as stack:
        servers = {name: stack.enter_context(GunicornServer(
            url, workers=WORKERS, threads=THREADS, app_module=module, env=env))
            for name, (module, env, _) in SIDES.items()}
        measure(servers, args, runs)

    results = summarise(runs, args, started)
    save_results(ROOT / "bench" / "results" / f"{started:%Y-%m-%d}-signin-read",
                 results, markdown(results))
    return 0


def measure(servers: dict[str, GunicornServer], args, runs: dict[str, list[float]]) -> None:
    record_rps = rps_recorder(runs, width=16)
    cookies = {name: signin.signed_in_cookie(server.url) for name, server in servers.items()}
    for name, server in servers.items():
        check_signed_in(name, server.url, cookies[name])
        wrk(server.url + "/users", 1, {"BENCH_COOKIE": cookies[name]})  # warm-up
    names = list(servers)
    for round_no in range(1, args.rounds + 1):
        print(f"round {round_no}/{args.rounds}", flush=True)
        # Rotate the order, so that each side goes first, second and last
        # equally often and none always follows another.
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            cpu_before = worker_cpu_seconds(servers[name])
            result = wrk(servers[name].url + "/users", args.duration,
                         {"BENCH_COOKIE": cookies[name]})
            record_rps(name, result)
            runs.setdefault(f"{name} / cpu", []).append(round(
                (worker_cpu_seconds(servers[name]) - cpu_before) * 1000 / result["requests"], 4))


def summarise(runs: dict[str, list[float]], args, started: datetime) -> dict:
    sides = {}
    for name, (_, _, reads) in SIDES.items():
        rps, cpu = runs[name], runs[f"{name} / cpu"]
        sides[name] = {
            "reads": reads,
            "rps_runs": rps, "rps_median": round(statistics.median(rps), 1),
            "cpu_ms_runs": cpu, "cpu_ms_per_request_median": round(statistics.median(cpu), 3),
            # Each round's side against the same round's cookie-only side.
            "rps_ratio_to_baseline": round(statistics.median(
                a / b for a, b in zip(rps, runs[BASELINE])), 3),
        }
    return {
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "config": {"users": USERS, "rounds": args.rounds, "duration_s": args.duration,
                   "gunicorn": f"{WORKERS} workers x {THREADS} threads (gthread), gunicorn.conf.py",
                   "page": "GET /users, signed in as the benchmark's editor"},
        "sides": sides,
    }


def markdown(results: dict) -> str:
    config = results["config"]
    lines = [
        f"Run {results['started']} – {results['finished']}; commit"
        f" {results['machine']['git_commit']}; {config['gunicorn']}; {config['users']:,} users;"
        f" {config['page']}; {config['rounds']} interleaved rounds of {config['duration_s']} s.",
        "",
        f"| side | reads per request | req/s (median) | workers' CPU ms/request | req/s / {BASELINE}"
        " (median of per-round ratios) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for name, side in results["sides"].items():
        lines.append(f"| {name} | {side['reads']} | {side['rps_median']:,.1f}"
                     f" | {side['cpu_ms_per_request_median']:.3f}"
                     f" | {side['rps_ratio_to_baseline']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
