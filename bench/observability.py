"""What observability costs: ``bench/run --observability``.

Serves a 1,000-user database twice with the production gunicorn config, side
by side in one run: *on* — the app as deployed with ``LOG_FORMAT=json``
(metrics, request ids, SQL accounting, one JSON object per log line) — and
*off* — ``bench/unobserved_app.py`` with ``LOG_FORMAT=text`` (none of it;
gunicorn's plain access line). Measures the first page of ``/users`` and the
create, every request signed in as the benchmark's editor (bench/signin.py;
each server's list page is checked to be the signed-in page, not the
redirect to /login), in interleaved rounds, as ``bench/suite.py`` does, and reports for
each scenario the median throughput and the median CPU time the workers
spent per request (read from /proc before and after each run: on a shared,
busy machine throughput swings with the neighbours' load, CPU per request
much less), and the cost of *on* against *off* in both (target: at most
5 %). Then, after both servers stopped, the paired in-process measurement
of ``bench/observability_cpu.py`` (CPU per request, on and off taking turns
request by request), which stays precise when the machine is busy. Writes
``bench/results/<date>-observability.{json,md}``; ``--in-process-only``
runs the paired measurement alone, into ``bench/results/tmp/``.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
from contextlib import ExitStack
from datetime import datetime, timezone

from bench import observability_cpu, signin
from bench.suite import (
    ROOT, THREADS, WORKERS, check_signed_in, csrf_session, machine_info, rps_recorder,
    save_results, seeded_database, worker_cpu_seconds, wrk,
)
from harness.gunicorn import GunicornServer

USERS = 1_000
TARGET_COST = 0.05
# Server name -> (gunicorn app module, LOG_FORMAT, what it has).
SERVERS = {
    "on": ("wsgi:app", "json", "metrics, request ids, SQL accounting, JSON logs"),
    "off": ("bench.unobserved_app:app", "text", "none of them; text access log"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run --observability",
                                     description=__doc__.splitlines()[0])
    # Single rounds scatter widely on this shared machine (identical servers:
    # up to 19 % apart; on against off: -17 ... +32 %; docs/performance.md,
    # "What observability costs"), so the median needs many rounds: 25 of
    # 4 s take about 7 minutes.
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    parser.add_argument("--cpu-rounds", type=int, default=40,
                        help="rounds of the paired in-process measurement")
    parser.add_argument("--per-round", type=int, default=50,
                        help="requests of each variant per in-process round")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--in-process-only", action="store_true",
                      help="only the paired in-process measurement (about 2 minutes); "
                           "results/tmp")
    only.add_argument("--a-a", action="store_true",
                      help="serve the off app on both sides: how far apart the wrk reading "
                           "puts two identical servers (the method's noise); results/tmp")
    args = parser.parse_args(argv)
    servers_served = ({"on": SERVERS["off"], "off": SERVERS["off"]} if args.a_a else SERVERS)

    started = datetime.now(timezone.utc)
    runs: dict[str, list[float]] = {}
    with seeded_database("myapp_bench_observability", USERS) as url:
        if not args.in_process_only:
            with ExitStack() as stack:
                servers = {
                    name: stack.enter_context(GunicornServer(
                        url, workers=WORKERS, threads=THREADS, app_module=module,
                        env={"LOG_FORMAT": log_format}))
                    for name, (module, log_format, _) in servers_served.items()
                }
                measure(servers, args, runs)
        if not args.a_a:
            print("in-process, paired (CPU ms per request)", flush=True)
            paired = observability_cpu.measure(url, args.cpu_rounds, args.per_round)

    results = summarise(runs, args, started)
    name = f"{started:%Y-%m-%d}-observability"
    out = ROOT / "bench" / "results" / name
    if args.a_a:
        results["servers"] = {"on": SERVERS["off"][2] + " (A/A run)", "off": SERVERS["off"][2]}
        out = ROOT / "bench" / "results" / "tmp" / f"{name}-a-a"
    else:
        results["in_process"] = {"rounds": args.cpu_rounds, "per_round": args.per_round,
                                 **observability_cpu.summarise(paired)}
    if args.in_process_only:
        out = ROOT / "bench" / "results" / "tmp" / f"{name}-in-process"
    out.parent.mkdir(exist_ok=True)
    save_results(out, results, markdown(results))
    return 0


def measure(servers: dict[str, GunicornServer], args, runs) -> None:
    record_rps = rps_recorder(runs, width=20)

    def record(key: str, server: GunicornServer, url: str, env: dict | None = None) -> None:
        cpu_before = worker_cpu_seconds(server)
        result = wrk(url, args.duration, env)
        cpu_ms = (worker_cpu_seconds(server) - cpu_before) * 1000 / result["requests"]
        record_rps(key, result)
        runs.setdefault(f"{key} / cpu", []).append(round(cpu_ms, 4))

    cookies = {name: signin.signed_in_cookie(server.url) for name, server in servers.items()}
    for name, server in servers.items():
        check_signed_in(name, server.url, cookies[name])
    for name, server in servers.items():  # warm-up: templates compiled, pools filled
        wrk(server.url + "/users", 1, {"BENCH_COOKIE": cookies[name]})
    for round_no in range(1, args.rounds + 1):
        print(f"round {round_no}/{args.rounds}", flush=True)
        # Alternate which server goes first, so neither always follows the other.
        order = list(servers.items())[:: 1 if round_no % 2 else -1]
        for name, server in order:
            record(f"first page / {name}", server, server.url + "/users",
                   {"BENCH_COOKIE": cookies[name]})
        for name, server in order:
            token, cookie = csrf_session(server.url, cookies[name])
            record(f"create / {name}", server, server.url + "/users", {
                "BENCH_CREATE": "1", "BENCH_CSRF": token, "BENCH_COOKIE": cookie,
                "BENCH_RUN": secrets.token_hex(4)})


def summarise(runs: dict[str, list[float]], args, started: datetime) -> dict:
    scenarios = {}
    for scenario in ("first page", "create") if runs else ():
        for name in SERVERS:
            key = f"{scenario} / {name}"
            scenarios[key] = {
                "rps_runs": runs[key], "rps_median": round(statistics.median(runs[key]), 1),
                "cpu_ms_runs": runs[f"{key} / cpu"],
                "cpu_ms_per_request_median": round(statistics.median(runs[f"{key} / cpu"]), 3),
            }
    costs = {}
    for scenario in ("first page", "create") if runs else ():
        on, off = scenarios[f"{scenario} / on"], scenarios[f"{scenario} / off"]
        # Each round's on against the same round's off, then the median:
        # the machine's load drifts over a run, and a round's two servers
        # run back to back, so the pair shares its load (as bench/usual.py).
        throughput_cost = statistics.median(
            1 - on_rps / off_rps for on_rps, off_rps in zip(on["rps_runs"], off["rps_runs"]))
        cpu_cost = statistics.median(
            on_cpu / off_cpu - 1 for on_cpu, off_cpu in zip(on["cpu_ms_runs"], off["cpu_ms_runs"]))
        costs[scenario] = {
            "throughput_cost": round(throughput_cost, 6),
            "cpu_cost": round(cpu_cost, 6),
            "within_target": max(throughput_cost, cpu_cost) <= TARGET_COST,
        }
    return {
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "config": {"users": USERS, "rounds": len(runs and runs["first page / on"]),
                   "duration_s": args.duration,
                   "gunicorn": f"{WORKERS} workers x {THREADS} threads (gthread), gunicorn.conf.py",
                   "target_cost": TARGET_COST},
        "servers": {name: has for name, (_, _, has) in SERVERS.items()},
        "scenarios": scenarios,
        "costs": costs,
    }


def markdown(results: dict) -> str:
    config = results["config"]
    wrk_rounds = (f"median of {config['rounds']} runs of {config['duration_s']} s"
                  if config["rounds"] else "no wrk rounds (--in-process-only)")
    lines = [
        f"Run {results['started']} – {results['finished']}; commit {results['machine']['git_commit']};"
        f" {config['gunicorn']}; {config['users']:,} users; {wrk_rounds}.",
        "",
        "Costs are medians of per-round ratios (each round's on against the same round's off).",
        "",
        "| scenario | off req/s | on req/s | throughput cost | off CPU ms/req | on CPU ms/req"
        " | CPU cost | ≤ 5 % |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    if not results["costs"]:  # --in-process-only
        lines = lines[:1]
    for scenario, cost in results["costs"].items():
        off = results["scenarios"][f"{scenario} / off"]
        on = results["scenarios"][f"{scenario} / on"]
        lines.append(
            f"| {scenario} | {off['rps_median']:,.0f} | {on['rps_median']:,.0f}"
            f" | {cost['throughput_cost']:.1%} | {off['cpu_ms_per_request_median']:.3f}"
            f" | {on['cpu_ms_per_request_median']:.3f} | {cost['cpu_cost']:.1%}"
            f" | {'yes' if cost['within_target'] else 'no'} |")
    paired = results.get("in_process")
    if paired is None:  # an A/A run
        return "\n".join(lines + ["", "A/A run: " + results["servers"]["on"] + "."]) + "\n"
    lines += [
        "",
        f"Paired in one process ({paired['rounds']} rounds of {paired['per_round']} requests"
        " of each variant, taking turns one by one, each timed in CPU time;"
        " cost: median of the rounds' on / off):",
        "",
        "| scenario | off CPU ms/req (median round) | on CPU ms/req (median round) | cost of on | ≤ 5 % |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for scenario in ("first page", "create"):
        row = paired[scenario]
        cost = row["cost"]
        lines.append(
            f"| {scenario} | {row['off_cpu_ms_median']:.3f} | {row['on_cpu_ms_median']:.3f}"
            f" | {cost:.1%} | {'yes' if cost <= TARGET_COST else 'no'} |")
    lines += ["", "on: " + results["servers"]["on"] + "; off: " + results["servers"]["off"] + "."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
