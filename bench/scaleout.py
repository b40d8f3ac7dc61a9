"""Scale-out benchmark: ``bench/run --scaleout`` (see docs/performance.md).

One run, same box, same total workers x threads (16), interleaved rounds:

* ``direct``            gunicorn 4 workers x 4 threads → PostgreSQL (the primary)
* ``cluster``           nginx → 2 instances x (2 workers x 4 threads) → PgBouncer → primary
* ``pgbouncer+pool``    gunicorn 4 x 4 → PgBouncer, SQLAlchemy's pool (DB_POOL_SIZE = threads)
* ``pgbouncer+nullpool`` gunicorn 4 x 4 → PgBouncer, no pool in the app (DB_POOL_SIZE=0)

for the list page and create (wrk, bench/wrk.lua). The cluster is a
``make cluster`` on free ports in a temp dir; every server uses its primary.
Results: ``bench/results/<date>-scaleout.{json,md}``.
"""

from __future__ import annotations

import json
import secrets
import sys
from datetime import datetime, timezone

from bench.suite import csrf_session, flask_cli, machine_info, rounds_arguments, summarise, wrk
from harness.cluster import LocalCluster
from harness.gunicorn import GunicornServer

SCENARIOS = ("list", "create")
TARGETS = ("direct", "cluster", "pgbouncer+pool", "pgbouncer+nullpool")


def run_scenario(base: str, scenario: str, duration: int) -> dict:
    if scenario == "list":
        return wrk(f"{base}/users", duration)
    token, cookie = csrf_session(base)
    return wrk(f"{base}/users", duration, {"BENCH_CREATE": "1", "BENCH_CSRF": token,
                                           "BENCH_COOKIE": cookie,
                                           "BENCH_RUN": secrets.token_hex(4)})


def main(argv: list[str] | None = None) -> int:
    args = rounds_arguments("bench/run --scaleout", __doc__.splitlines()[0], argv)

    started = datetime.now(timezone.utc)
    runs: dict[str, list[dict]] = {f"{s}@{t}": [] for s in SCENARIOS for t in TARGETS}
    with LocalCluster(instances=2, env={"WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "4"},
                      timeout=600) as cluster:
        primary = cluster.database_url("primary")
        # As the cluster's instances connect: one application_name for all.
        through_pgbouncer = cluster.database_url("pgbouncer") + "?application_name=myapp"
        flask_cli(primary, "seed-users", "--count", str(args.users))
        servers = {
            "direct": GunicornServer(primary, workers=4, threads=4),
            "pgbouncer+pool": GunicornServer(through_pgbouncer, workers=4, threads=4),
            "pgbouncer+nullpool": GunicornServer(through_pgbouncer, workers=4, threads=4,
                                                 env={"DB_POOL_SIZE": "0"}),
        }
        try:
            for server in servers.values():
                server.__enter__()
            bases = {"cluster": cluster.url, **{name: s.url for name, s in servers.items()}}
            for round_number in range(1, args.rounds + 1):
                for scenario in SCENARIOS:
                    for target in TARGETS:
                        result = run_scenario(bases[target], scenario, args.duration)
                        runs[f"{scenario}@{target}"].append(result)
                        print(f"round {round_number} {scenario:<6} {target:<19}"
                              f" {result['rps']:>8} req/s p99"
                              f" {result['latency_us']['p99'] / 1000:.1f} ms", flush=True)
        finally:
            for server in servers.values():
                server.stop()

    summary = {key: summarise(results) for key, results in runs.items()}
    ratios = {
        scenario: {
            "cluster_rps_vs_direct": round(summary[f"{scenario}@cluster"]["rps_median"]
                                           / summary[f"{scenario}@direct"]["rps_median"], 3),
            "cluster_p99_vs_direct": round(summary[f"{scenario}@cluster"]["p99_ms"]
                                           / summary[f"{scenario}@direct"]["p99_ms"], 3),
            "nullpool_rps_vs_pool": round(summary[f"{scenario}@pgbouncer+nullpool"]["rps_median"]
                                          / summary[f"{scenario}@pgbouncer+pool"]["rps_median"], 3),
        }
        for scenario in SCENARIOS
    }
    results = {"started": started.isoformat(), "args": vars(args) | {"out": str(args.out)},
               "machine": machine_info(), "summary": summary, "ratios": ratios, "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{started:%Y-%m-%d}-scaleout"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2))
    stem.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))
    return 0


def markdown(results: dict) -> str:
    lines = [f"# Scale-out benchmark, {results['started'][:16]} UTC",
             "",
             f"`bench/run --scaleout --rounds {results['args']['rounds']}"
             f" --duration {results['args']['duration']}`, {results['args']['users']} users;"
             " wrk -t2 -c16; medians of the rounds.",
             "",
             "| scenario | target | req/s (median) | min–max | p50 ms | p99 ms | errors |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: |"]
    for key, s in results["summary"].items():
        scenario, target = key.split("@")
        lines.append(f"| {scenario} | {target} | {s['rps_median']} | {s['rps_min']}–{s['rps_max']}"
                     f" | {s['p50_ms']} | {s['p99_ms']} | {s['errors']} |")
    lines += ["", "| scenario | cluster/direct req/s | cluster/direct p99 | NullPool/pool req/s |",
              "| --- | ---: | ---: | ---: |"]
    for scenario, r in results["ratios"].items():
        lines.append(f"| {scenario} | {r['cluster_rps_vs_direct']} | {r['cluster_p99_vs_direct']}"
                     f" | {r['nullpool_rps_vs_pool']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
