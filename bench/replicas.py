"""Replica routing benchmark: ``bench/run --replicas`` (see docs/deployment.md).

One run, same box, through one ``make cluster`` (primary, streaming replica,
PgBouncer) on free ports in a temp dir. Two gunicorn servers of 2 workers x
4 threads, both through the cluster's PgBouncer, in interleaved rounds:

* ``routed``        DATABASE_URL and DATABASE_REPLICA_URL: GET pages read the replica
* ``primary-only``  DATABASE_URL only: everything on the primary

Each round: readers (wrk, list page, signed in, never writing) and at the
same time one writer (wrk -c2, creating users). Figures:

* the share of the readers' page reads served by the replica
  (``myapp_db_reads_total``; only GETs count, and the writer sends POSTs only);
* list-page throughput routed vs primary-only (same round, same writer);
* the read-your-writes check: replica probes per GET (``myapp_db_replica_probes_total``),
  what one probe costs (round trip, measured here), and the CPU of the
  routing decision itself.

Results: ``bench/results/<date>-replicas.{json,md}``.
"""

from __future__ import annotations

import os
import secrets
import statistics
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack
from datetime import datetime, timezone

from prometheus_client.parser import text_string_to_metric_families

from bench import signin
from bench.suite import (WRK_SCRIPT, csrf_session, flask_cli, machine_info, rounds_arguments,
                         save_results, summarise, wrk)
from harness.cluster import LocalCluster
from harness.gunicorn import GunicornServer
from myapp import db, replicas

TARGETS = ("routed", "primary-only")


def writer(base: str, duration: int, cookie: str) -> subprocess.Popen:
    """One writing client pair: wrk -t1 -c2 POSTing the new-user form."""
    token, cookie = csrf_session(base, cookie)
    return subprocess.Popen(
        ["wrk", "-t1", "-c2", f"-d{duration}s", "--timeout", "10s", "-s", str(WRK_SCRIPT),
         f"{base}/users"],
        env={**os.environ, "BENCH_CREATE": "1", "BENCH_CSRF": token, "BENCH_COOKIE": cookie,
             "BENCH_RUN": secrets.token_hex(4)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def routing_counts(base: str) -> dict[str, float]:
    """Reads by target and replica probes so far, from the server's /metrics."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        text = response.read().decode()
    counts = {"replica": 0.0, "primary": 0.0, "probes": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "myapp_db_reads_total":
                counts[sample.labels["target"]] += sample.value
            elif sample.name == "myapp_db_replica_probes_total":
                counts["probes"] += sample.value
    return counts


def decision_cost(replica_url: str, calls: int = 20_000) -> dict:
    """The routing decision in-process, against the real replica: µs per
    call with the probe cache warm, and one probe's round trip."""
    engine = db.build_engine({"DB_POOL_SIZE": 1, "DB_POOL_TIMEOUT": 5, "DB_CONNECT_TIMEOUT": 3,
                              "DB_PING_AFTER_IDLE_MS": 1000},
                             url=replica_url, name="replica", instrumented=False)
    try:
        replica = replicas.Replica(engine, "bench", max_lag_s=10)
        choice = replicas.ReplicaSet([replica])
        probe_times = []
        for _ in range(200):
            started = time.perf_counter()
            replica._probe()
            probe_times.append(time.perf_counter() - started)
        replica._checked_at = float("inf")  # cache warm: no probe in the timed calls
        started = time.perf_counter()
        for _ in range(calls):
            choice.choose(1)
        per_call = (time.perf_counter() - started) / calls
    finally:
        engine.dispose()
    return {"decision_us": round(per_call * 1e6, 2),
            "probe_ms_median": round(statistics.median(probe_times) * 1000, 3)}


def measure_round(base: str, reader_cookie: str, writer_cookie: str, duration: int) -> dict:
    """Readers on the list page while one writer creates users; the readers'
    throughput, and where the server's page reads went meanwhile."""
    before = routing_counts(base)
    writing = writer(base, duration, writer_cookie)
    result = wrk(f"{base}/users", duration, {"BENCH_COOKIE": reader_cookie})
    writing.communicate(timeout=duration + 60)
    after = routing_counts(base)
    delta = {key: after[key] - before[key] for key in after}
    reads = delta["replica"] + delta["primary"]
    result["replica_share"] = round(delta["replica"] / reads, 4) if reads else None
    result["probes_per_read"] = round(delta["probes"] / reads, 4) if reads else None
    return result


def main(argv: list[str] | None = None) -> int:
    args = rounds_arguments("bench/run --replicas", __doc__.splitlines()[0], argv)

    started = datetime.now(timezone.utc)
    runs: dict[str, list[dict]] = {target: [] for target in TARGETS}
    with LocalCluster(instances=1, timeout=600) as cluster:
        primary = cluster.database_url("primary")
        flask_cli(primary, "seed-users", "--count", str(args.users))
        signin.create_account(primary)
        through_pgbouncer = cluster.database_url("pgbouncer") + "?application_name=myapp"
        replica_url = (cluster.database_url("pgbouncer", "myapp_replica")
                       + "?application_name=myapp")
        servers = {
            "routed": GunicornServer(through_pgbouncer, workers=2, threads=4,
                                     env={"DATABASE_REPLICA_URL": replica_url}),
            "primary-only": GunicornServer(through_pgbouncer, workers=2, threads=4),
        }
        with ExitStack() as running:  # every server stopped, whatever happens
            for server in servers.values():
                running.enter_context(server)
            cookies = {name: (signin.signed_in_cookie(s.url), signin.signed_in_cookie(s.url))
                       for name, s in servers.items()}
            for round_number in range(1, args.rounds + 1):
                for target in TARGETS:
                    result = measure_round(servers[target].url, *cookies[target], args.duration)
                    runs[target].append(result)
                    print(f"round {round_number} list {target:<13} {result['rps']:>8} req/s"
                          f" replica share {result['replica_share']}"
                          f" probes/read {result['probes_per_read']}", flush=True)
        cost = decision_cost(replica_url)

    summary = {target: summarise(results) for target, results in runs.items()}
    routed = runs["routed"]
    figures = {
        "routed_vs_primary_only_rps": round(summary["routed"]["rps_median"]
                                            / summary["primary-only"]["rps_median"], 3),
        "replica_share_of_reader_reads": min(r["replica_share"] for r in routed),
        "probes_per_read": statistics.median(r["probes_per_read"] for r in routed),
        **cost,
    }
    figures["check_us_per_request"] = round(
        figures["decision_us"] + figures["probes_per_read"] * figures["probe_ms_median"] * 1000, 1)
    results = {"started": started.isoformat(), "args": vars(args) | {"out": str(args.out)},
               "machine": machine_info(), "summary": summary, "figures": figures, "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    save_results(args.out / f"{started:%Y-%m-%d}-replicas", results, markdown(results))
    return 0


def markdown(results: dict) -> str:
    a, f = results["args"], results["figures"]
    lines = [f"# Replica routing benchmark, {results['started'][:16]} UTC", "",
             f"`bench/run --replicas --rounds {a['rounds']} --duration {a['duration']}`,"
             f" {a['users']} users; readers wrk -t2 -c16 on the list page, one writer wrk -t1 -c2"
             " creating users at the same time; medians of the rounds.", "",
             "| server | list req/s (median) | min–max | p50 ms | p99 ms | errors |",
             "| --- | ---: | --- | ---: | ---: | ---: |"]
    for target, s in results["summary"].items():
        lines.append(f"| {target} | {s['rps_median']} | {s['rps_min']}–{s['rps_max']}"
                     f" | {s['p50_ms']} | {s['p99_ms']} | {s['errors']} |")
    lines += ["", "| figure | value |", "| --- | ---: |",
              f"| list req/s, routed / primary-only | {f['routed_vs_primary_only_rps']} |",
              f"| share of the readers' reads on the replica (lowest round) |"
              f" {f['replica_share_of_reader_reads']} |",
              f"| replica probes per GET | {f['probes_per_read']} |",
              f"| one probe (round trip), ms | {f['probe_ms_median']} |",
              f"| routing decision, µs (cache warm) | {f['decision_us']} |",
              f"| read-your-writes check per request, µs (decision + probes) |"
              f" {f['check_us_per_request']} |"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
