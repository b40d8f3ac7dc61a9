"""myapp against the usual build: ``bench/run --usual-build [--quick] [--keep]``.

The usual build (bench/usual_build/) is the same product made the way most
Flask apps are: Flask-SQLAlchemy, ``db.paginate`` (OFFSET + COUNT), ORM
objects, ``db.session.commit()`` in the view, Flask-Login's default loader.
Both apps are served by the same ``gunicorn -c gunicorn.conf.py`` (2 workers
x 8 gthread threads) on the same database, both signed in as an editor
through their own login form, and every scenario runs on both in interleaved
rounds (which app goes first alternates each round), so machine noise hits
both alike. Each round gives a ratio myapp / usual build; the report gives
the median of those ratios, and the median req/s of each side.

Scenarios: ``GET /users`` at 1,000 users; at 1,000,000 users the first page
(and myapp's page after 200 ``rel="next"`` links against its first page);
``POST /users`` create -> 303, with every acknowledged create checked to be
stored with its audit row.

The cost of sign-in ("signed-in list page >= 0.9 x the page before
sign-in") is measured like the other targets: at 1,000 users a third
server, myapp with a loader that believes the cookie without reading the
account (``bench/floor_app.py``'s ``cookie-only-sign-in``: the page as it
was before sign-in had its per-request read), is a third side of the list
page's scenario, in the same rounds (the order of the sides reverses each
round); the check is the median of the per-round ratios of req/s.
Then bench/signin_cost.py's in-process figures add what one request waits
for that read (one thread, so the round trip's latency counts in full).
Writes ``bench/results/<date>-usual.{json,md}`` (``--quick``: results/tmp).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from types import SimpleNamespace

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from bench import signin
from bench.suite import (
    DEEP_PAGES, ROOT, THREADS, WORKERS, WRK_CONNECTIONS, WRK_THREADS, csrf_session, database_url,
    drop_database, follow_next_links, fresh_database, machine_info, row_counts, save_results,
    seed, settled_row_counts, size_label, worker_cpu_seconds, wrk,
)
from harness.gunicorn import GunicornServer

SIDES = ("myapp", "usual")
USUAL_APP = "bench.usual_build.app:app"
# myapp without the per-request account read: the side of the sign-in check.
NO_ACCOUNT_READ = "no account read"
NO_ACCOUNT_READ_APP = ("bench.floor_app:app", {"BENCH_FLOOR": "cookie-only-sign-in"})


def quiet(url: str, timeout: float = 60.0) -> None:
    """Wait until no query of this database is running: a run that wrk has
    stopped can leave slow requests in flight (the usual build's COUNT over a
    million rows), which must not eat into the next scenario's time."""
    name = make_url(url).database
    engine = create_engine(url, poolclass=NullPool)
    deadline = time.monotonic() + timeout
    try:
        with engine.connect() as conn:
            while time.monotonic() < deadline:
                busy = conn.scalar(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = :db "
                    "AND state = 'active' AND pid <> pg_backend_pid()"), {"db": name})
                conn.rollback()  # a fresh snapshot of pg_stat_activity next time
                if not busy:
                    return
                time.sleep(0.1)  # polling a condition with a deadline
    finally:
        engine.dispose()


def same_page(side: str, base: str, cookie: str) -> None:
    """Both apps must serve what the bench thinks it measures: the signed-in
    list page with 50 users (wrk counts a redirect to /login as a success)."""
    page, cookie_after = signin.get(base, "/users", cookie)
    rows = page.count("<tr>") - 1  # less the header row
    if signin.EMAIL not in page or rows != 50:
        raise RuntimeError(f"{side}: /users is not the signed-in page of 50 users ({rows} rows)")
    if cookie_after != cookie:
        raise RuntimeError(f"{side}: /users sends a new session cookie to a signed-in browser "
                           "that already has one: wrk would measure a page no visitor sees")


class Comparison:
    def __init__(self, args):
        self.args = args
        self.runs: dict[str, dict[str, list[dict]]] = {}  # scenario -> side -> wrk results
        self.info: dict[str, dict] = {}
        self.writes: dict[str, dict] = {side: {"acknowledged": 0, "stored": 0, "audit_rows": 0}
                                        for side in SIDES}
        self.seed: list[dict] = []

    def log(self, message: str) -> None:
        print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)

    def record(self, scenario: str, side: str, result: dict) -> None:
        self.runs.setdefault(scenario, {}).setdefault(side, []).append(result)
        bad = result["non_2xx_3xx"] + sum(v for k, v in result["errors"].items() if k != "status")
        self.log(f"  {scenario:<24} {side:<15} {result['rps']:>8.1f} req/s"
                 f"  p50 {result['latency_us']['p50'] / 1000:7.1f} ms"
                 f"  gunicorn CPU {result.get('gunicorn_cpu_ms_per_request', 0):.2f} ms/request" + (f"  ERRORS {bad}" if bad else ""))

    def create_run(self, url: str, side: str, target: str, env: dict) -> dict:
        users_before, audit_before = row_counts(url)
        result = wrk(target, self.args.duration, {**env, "BENCH_RUN": secrets.token_hex(4)})
        users_after, audit_after = settled_row_counts(url)  # in-flight creates finish
        w = self.writes[side]
        w["acknowledged"] += result["created"]
        w["stored"] += users_after - users_before
        w["audit_rows"] += audit_after - audit_before
        return result

    def block(self, size: int, scenarios: dict[str, dict[str, tuple[str, dict]]], url: str,
              servers: dict[str, GunicornServer]) -> None:
        """Every scenario, both sides, ``rounds`` times; the side that goes
        first alternates from one round to the next."""
        for sides in scenarios.values():  # warm-up: templates, pools
            for target, env in sides.values():
                if "BENCH_CREATE" not in env:
                    wrk(target, 1, env)
                    quiet(url)
        for round_no in range(1, self.args.rounds + 1):
            self.log(f"round {round_no}/{self.args.rounds} at {size:,} users")
            for scenario, sides in scenarios.items():
                order = list(sides) if round_no % 2 else list(reversed(sides))
                for side in order:
                    target, env = sides[side]
                    cpu_before = worker_cpu_seconds(servers[side])
                    if "BENCH_CREATE" in env:
                        result = self.create_run(url, side, target, env)
                    else:
                        result = wrk(target, self.args.duration, env)
                    quiet(url)
                    # Includes the few requests still in flight when wrk stopped.
                    result["gunicorn_cpu_ms_per_request"] = round(
                        (worker_cpu_seconds(servers[side]) - cpu_before) * 1000 / max(1, result["requests"]), 3)
                    self.record(scenario, side, result)

    def bench_size(self, size: int, url: str, largest: bool) -> None:
        label = size_label(size)
        with ExitStack() as stack:
            servers = {
                "myapp": stack.enter_context(GunicornServer(url, workers=WORKERS, threads=THREADS)),
                "usual": stack.enter_context(GunicornServer(url, workers=WORKERS, threads=THREADS,
                                                            app_module=USUAL_APP)),
            }
            if not largest:  # the sign-in check, on the small table only
                app_module, env = NO_ACCOUNT_READ_APP
                servers[NO_ACCOUNT_READ] = stack.enter_context(GunicornServer(
                    url, workers=WORKERS, threads=THREADS, app_module=app_module, env=env))
            mine = servers["myapp"]
            cookies = {side: signin.signed_in_cookie(s.url) for side, s in servers.items()}
            for side, server in servers.items():
                same_page(side, server.url, cookies[side])
            # At 1,000 users the list page has a third side, for the sign-in check.
            scenarios: dict[str, dict[str, tuple[str, dict]]] = {
                f"list@{label}": {side: (server.url + "/users", {"BENCH_COOKIE": cookies[side]})
                                  for side, server in servers.items()},
            }
            if largest:
                deep_path, depth = follow_next_links(mine.url, DEEP_PAGES, cookies["myapp"])
                self.info[f"deep page@{label}"] = {"path": deep_path, "pages_followed": depth}
                scenarios[f"deep page@{label}"] = {
                    "myapp": (mine.url + deep_path, {"BENCH_COOKIE": cookies["myapp"]})}
                create = {}
                for side in SIDES:
                    token, cookie = csrf_session(servers[side].url, cookies[side])
                    create[side] = (servers[side].url + "/users", {"BENCH_CREATE": "1", "BENCH_CSRF": token,
                                                                   "BENCH_COOKIE": cookie})
                scenarios["create"] = create
            self.block(size, scenarios, url, servers)

    def signin_cost(self, url: str) -> dict:
        """bench/signin_cost.py's in-process measure, on the small database
        (after the HTTP rounds: its creates must not change what they read)."""
        from bench import signin_cost
        from myapp import db

        self.log("the cost of sign-in (in-process, bench/signin_cost.py)")
        try:
            return signin_cost.measure(url, SimpleNamespace(rounds=self.args.signin_rounds,
                                                            requests=self.args.signin_requests))
        finally:
            db.Session.remove()
            db.engine().dispose()

    def run(self) -> dict:
        started = datetime.now(timezone.utc)
        load_at_start = os.getloadavg()
        sizes = (1_000, 20_000) if self.args.quick else (1_000, 1_000_000)
        urls = {size: database_url(f"myapp_bench_usual_{size_label(size)}") for size in sizes}
        signin_results = {}
        try:
            for size, url in urls.items():
                self.log(f"building {make_url(url).database} with seed-users --count {size}")
                fresh_database(url)
                self.seed.append(seed(url, size))
                self.log(f"  seeded in {self.seed[-1]['seconds']} s")
            for size, url in urls.items():
                self.bench_size(size, url, largest=size == max(sizes))
            signin_results = self.signin_cost(urls[min(sizes)])
        finally:
            if not self.args.keep:
                for url in urls.values():
                    drop_database(url)
        return {
            "started": started.isoformat(timespec="seconds"),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "quick": self.args.quick,
            "machine": {**machine_info(), "load_average_at_start": load_at_start},
            "config": {
                "rounds": self.args.rounds, "duration_s": self.args.duration,
                "gunicorn": f"{WORKERS} workers x {THREADS} threads (gthread), gunicorn.conf.py, both apps",
                "wrk": f"-t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{self.args.duration}s",
                "usual_build": USUAL_APP,
            },
            "seed": self.seed,
            "scenarios": {scenario: self.summary(scenario) for scenario in self.runs},
            "writes": self.writes,
            "signin_cost": signin_results,
        }

    def summary(self, scenario: str) -> dict:
        sides = self.runs[scenario]
        out = {"info": self.info.get(scenario, {}), "runs": sides}
        for side, results in sides.items():
            out[side] = {
                "rps": [r["rps"] for r in results],
                "rps_median": round(statistics.median(r["rps"] for r in results), 1),
                "p50_ms": round(statistics.median(r["latency_us"]["p50"] for r in results) / 1000, 2),
                "cpu_ms_per_request": round(statistics.median(
                    r.get("gunicorn_cpu_ms_per_request", 0) for r in results), 3),
                "errors": sum(r["non_2xx_3xx"] + r["errors"]["connect"] + r["errors"]["read"]
                              + r["errors"]["write"] + r["errors"]["timeout"] for r in results),
                "non_2xx_3xx": sum(r["non_2xx_3xx"] for r in results),
            }
        if "myapp" in sides and "usual" in sides:
            ratios = [m["rps"] / u["rps"] for m, u in zip(sides["myapp"], sides["usual"])]
            out["ratios"] = [round(r, 3) for r in ratios]
            out["ratio_median"] = round(statistics.median(ratios), 3)
        return out


def ratio_of_medians(results: dict, a: str, b: str) -> float | None:
    sc = results["scenarios"]
    if a in sc and b in sc:
        return round(sc[a]["myapp"]["rps_median"] / sc[b]["myapp"]["rps_median"], 3)
    return None


def median_ratio(a: list[float], b: list[float]) -> float:
    """The median of round-by-round ratios a / b (both run in the same rounds)."""
    return round(statistics.median(x / y for x, y in zip(a, b)), 3)


def markdown(results: dict) -> str:
    m = results["machine"]
    load = lambda values: " / ".join(f"{v:.2f}" for v in values)  # noqa: E731
    lines = [
        f"Run {results['started']} – {results['finished']}"
        f"{' (quick mode)' if results['quick'] else ''}; commit {m['git_commit']}; "
        f"{m['cpus']} CPUs shared with other work; load average (1/5/15 min) "
        f"{load(m['load_average_at_start'])} at the start, {load(m['load_average_at_end'])} at the end; "
        f"{results['config']['gunicorn']}; wrk {results['config']['wrk']}; "
        f"{results['config']['rounds']} interleaved rounds; both signed in as an editor.",
        "",
        "| scenario | myapp req/s | usual build req/s | ratio (median of per-round ratios) | per-round ratios "
        "| gunicorn CPU ms per request (myapp / usual) | non-2xx/3xx + socket errors (myapp / usual) |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for scenario, s in results["scenarios"].items():
        mine = s["myapp"]
        usual = s.get("usual")
        ratios = s.get("ratios")
        name = scenario.replace("@", " @")
        if s["info"].get("pages_followed"):
            name += f" (after {s['info']['pages_followed']} next links)"
        usual_rps = f"{usual['rps_median']:,.1f}" if usual else "—"
        ratio = f"**{s['ratio_median']:.2f}**" if ratios else "—"
        per_round = ", ".join(f"{r:.2f}" for r in ratios) if ratios else ""
        usual_errors = usual["errors"] if usual else "—"
        cpu = lambda side: s[side].get("cpu_ms_per_request") if side in s else None  # noqa: E731
        cpu_cell = " / ".join("—" if cpu(side) is None else f"{cpu(side):.2f}" for side in SIDES)
        lines.append(f"| {name} | {mine['rps_median']:,.0f} | {usual_rps} | {ratio} | "
                     f"{per_round} | {cpu_cell} | {mine['errors']} / {usual_errors} |")
        if NO_ACCOUNT_READ in s:  # the sign-in check's side, in the same rounds
            unread = s[NO_ACCOUNT_READ]
            per_round = ", ".join(f"{m / u:.2f}" for m, u in zip(mine["rps"], unread["rps"]))
            lines.append(f"| {name}, myapp {NO_ACCOUNT_READ} (cookie only) | "
                         f"{unread['rps_median']:,.0f} | — | — | signed-in / this: {per_round} | "
                         f"{unread['cpu_ms_per_request']:.2f} / — | {unread['errors']} / — |")
    lines += ["", "| check | measured | required | met |", "| --- | ---: | ---: | --- |"]

    def check(name, value, op, required):
        met = value is not None and (value >= required if op == ">=" else value <= required)
        shown = "—" if value is None else value
        lines.append(f"| {name} | {shown} | {op} {required} | {'yes' if met else '**no**'} |")

    sc = results["scenarios"]
    lists = [k for k in sc if k.startswith("list@")]  # smallest table first
    small = lists[0] if lists else None
    large = lists[-1] if len(lists) > 1 else None
    deep = next((k for k in sc if k.startswith("deep page@")), None)
    if "create" in sc:
        check("create: myapp / usual build", sc["create"].get("ratio_median"), ">=", 1.3)
    if small:
        check(f"{small}: myapp / usual build", sc[small].get("ratio_median"), ">=", 2.0)
    if small and large:
        check(f"myapp {large} / {small} (separate blocks of rounds)",
              ratio_of_medians(results, large, small), ">=", 0.9)
    if deep and large:
        check(f"myapp {deep} / {large} (median of per-round ratios)",
              median_ratio(sc[deep]["myapp"]["rps"], sc[large]["myapp"]["rps"]), ">=", 0.9)
    if small and NO_ACCOUNT_READ in sc[small]:
        check(f"signed-in {small} / the same page without the account read "
              "(median of per-round ratios)",
              median_ratio(sc[small]["myapp"]["rps"], sc[small][NO_ACCOUNT_READ]["rps"]), ">=", 0.9)
    errors = sum(s[side]["errors"] for s in sc.values()
                 for side in (*SIDES, NO_ACCOUNT_READ) if side in s)
    check("failed requests (non-2xx/3xx, socket errors), every server", errors, "<=", 0)
    for side, w in results["writes"].items():
        lost = max(0, w["acknowledged"] - w["stored"])
        check(f"{side}: creates acknowledged (303) {w['acknowledged']:,} / stored {w['stored']:,} / "
              f"audit rows {w['audit_rows']:,} — acknowledged but not stored", lost, "<=", 0)
    cost = results.get("signin_cost", {}).get("scenarios", {})
    if cost:
        lines += ["", "What one request waits for sign-in in myapp (bench/signin_cost.py, in-process, "
                  "one thread: the account read's round trip counts in full; round trips on the "
                  "wire: tests/test_round_trips.py):", "",
                  "| page | sign-in | ms per request (median) |", "| --- | --- | ---: |"]
        for key, figures in cost.items():
            page, variant = key.split(" / ")
            lines.append(f"| {page} | {variant} | {figures['median_ms']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run --usual-build", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke check: 20,000 users for the large table, 2 short rounds, results in bench/results/tmp")
    parser.add_argument("--keep", action="store_true", help="keep the bench databases afterwards")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5)")
    parser.add_argument("--duration", type=int, help="seconds per wrk run (default 6)")
    parser.add_argument("--signin-rounds", type=int, default=9)
    parser.add_argument("--signin-requests", type=int, default=100)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.duration = args.duration or (2 if args.quick else 6)
    if args.quick:
        args.signin_rounds, args.signin_requests = 2, 20
    results = Comparison(args).run()
    out_dir = ROOT / "bench" / "results" / ("tmp" if args.quick else "")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_results(out_dir / f"{results['started'][:10]}-usual", results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
