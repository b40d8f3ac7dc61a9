"""The benchmark suite: ``bench/run`` (see docs/performance.md).

It builds one database per table size with ``seed-users`` (timing it), starts
the production server (``gunicorn -c gunicorn.conf.py``) on each and a plain
Flask hello beside it for the ceiling, then runs every HTTP scenario several
times with wrk, interleaved in rounds so that machine noise hits every
scenario alike. Medians are reported. It also times ``import-users`` and
checks that no acknowledged create was lost and that worker memory stays
flat. Results: ``bench/results/<date>.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from bench import report, signin
from harness.flask_cli import run_flask, start_flask
from harness.gunicorn import GunicornServer

ROOT = Path(__file__).resolve().parent.parent
WRK_SCRIPT = ROOT / "bench" / "wrk.lua"
# The measuring setup: gunicorn 2 workers x 8 threads, wrk -t2 -c16.
WORKERS, THREADS = 2, 8
WRK_THREADS, WRK_CONNECTIONS = 2, 16
DEEP_PAGES = 200


@dataclass(frozen=True)
class Settings:
    sizes: tuple[int, ...]
    rounds: int
    duration: int
    import_rows: tuple[int, ...]
    seed_runs: int
    keep: bool
    quick: bool
    out_dir: Path


def parse_args(argv: list[str]) -> Settings:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke check: small tables, 2 short rounds, results in bench/results/tmp")
    parser.add_argument("--keep", action="store_true", help="keep the bench databases afterwards")
    parser.add_argument("--sizes", help="comma-separated table sizes (default 1000,100000,1000000)")
    parser.add_argument("--rounds", type=int, help="runs of every scenario (default 5)")
    parser.add_argument("--duration", type=int, help="seconds per wrk run (default 6)")
    args = parser.parse_args(argv)
    quick = args.quick
    sizes = args.sizes or ("1000,20000" if quick else "1000,100000,1000000")
    out_dir = ROOT / "bench" / "results" / ("tmp" if quick else "")
    return Settings(
        sizes=tuple(sorted(int(s) for s in sizes.split(","))),
        rounds=args.rounds or (2 if quick else 5),
        duration=args.duration or (2 if quick else 6),
        import_rows=(5_000, 20_000) if quick else (100_000, 1_000_000),
        seed_runs=1 if quick else 3,
        keep=args.keep,
        quick=quick,
        out_dir=out_dir,
    )


# --- databases -------------------------------------------------------------


def database_url(name: str) -> str:
    base = os.environ.get("DATABASE_URL") or "postgresql+psycopg2:///myapp"
    return make_url(base).set(database=name).render_as_string(hide_password=False)


def size_label(size: int) -> str:
    return f"{size // 1_000_000}m" if size % 1_000_000 == 0 else f"{size // 1000}k"


def drop_database(url: str) -> None:
    name = make_url(url).database
    assert name.startswith("myapp_bench_"), name  # never anything but our own
    admin = create_engine(make_url(url).set(database="postgres"),
                          isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def flask_cli(url: str, *args: str, ok: tuple[int, ...] = (0,)) -> tuple[float, int, str]:
    """Run ``flask --app app ARGS``: (seconds, peak RSS in KiB, stdout).

    An exit status outside ``ok`` raises (``import-users`` exits 1 when it
    rejected rows, which the import bench does on purpose).
    """
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = start_flask(*args, database_url=url, stdout=out, stderr=err)
        # wait4 gives this one child's own peak RSS (ru_maxrss, KiB).
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        stdout = out.read()
        if proc.returncode not in ok:
            raise RuntimeError(f"flask {' '.join(args)} failed ({proc.returncode}):\n{stdout}\n{err.read()}")
    return seconds, usage.ru_maxrss, stdout


def write_import_file(path: Path, rows: int, run: str, taken_email: str) -> int:
    """A ``name,email`` CSV of ``rows`` rows, 1% of them bad; returns how many.

    Every 100th row is bad, in turn: an invalid address, a repeat of the
    address on the line before, an address a user in the database has.
    """
    bad = 0
    with path.open("w") as f:
        f.write("name,email\n")
        for n in range(rows):
            email = f"imp-{run}-{n}@example.com"
            if n % 100 == 99:
                email = ("not-an-address", f"imp-{run}-{n - 1}@example.com", taken_email)[n // 100 % 3]
                bad += 1
            f.write(f"Imported User {n},{email}\n")
    return bad


def fresh_database(url: str) -> None:
    """An empty database with the app's tables and the benchmark's account."""
    drop_database(url)
    flask_cli(url, "init-db")
    signin.create_account(url)


@contextmanager
def seeded_database(name: str, users: int) -> Iterator[str]:
    """The URL of database ``name``, fresh and seeded with ``users`` users;
    dropped on the way out, also when the benchmark fails."""
    url = database_url(name)
    fresh_database(url)
    try:
        seed(url, users)
        yield url
    finally:
        drop_database(url)


def seed(url: str, count: int) -> dict:
    seconds, _, _ = flask_cli(url, "seed-users", "--count", str(count))
    return {"count": count, "seconds": round(seconds, 2), "rows_per_s": round(count / seconds)}


def scalar(url: str, sql: str, **params):
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return conn.scalar(text(sql), params)
    finally:
        engine.dispose()


def row_counts(url: str) -> tuple[int, int]:
    """Users and audit events, read in one statement (one snapshot)."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return tuple(conn.execute(text(
                "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM audit_events)")).one())
    finally:
        engine.dispose()


def settled_row_counts(url: str, timeout: float = 30.0) -> tuple[int, int]:
    """Row counts once they stop changing (in-flight requests have finished)."""
    deadline = time.monotonic() + timeout
    counts = row_counts(url)
    while time.monotonic() < deadline:
        time.sleep(0.5)  # polling for a condition with a deadline
        latest = row_counts(url)
        if latest == counts:
            break
        counts = latest
    return counts


# --- HTTP ------------------------------------------------------------------


def next_link(page: str) -> str | None:
    tag = re.search(r'<a\b[^>]*\brel="next"[^>]*>', page)
    if not tag:
        return None
    return html.unescape(re.search(r'href="([^"]*)"', tag.group(0)).group(1))


def follow_next_links(base: str, pages: int, cookie: str) -> tuple[str, int]:
    """The path reached after up to ``pages`` ``rel="next"`` links, and how many."""
    path, followed = "/users", 0
    while followed < pages:
        link = next_link(signin.get(base, path, cookie)[0])
        if link is None:
            break
        path, followed = link, followed + 1
    return path, followed


def csrf_session(base: str, cookie: str | None = None) -> tuple[str, str]:
    """A CSRF token from the new-user form, and the signed-in session cookie
    it belongs to (the form page adds the token's secret to the session);
    signed in as the editor first when no ``cookie`` is given."""
    if cookie is None:
        cookie = signin.signed_in_cookie(base)
    page, cookie = signin.get(base, "/users/new", cookie)
    return signin.csrf_token(page), cookie


# --- wrk -------------------------------------------------------------------


def wrk(url: str, duration: int, env: dict[str, str] | None = None) -> dict:
    cmd = ["wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{duration}s",
           "--timeout", "10s", "-s", str(WRK_SCRIPT), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})}).stdout
    line = next(x for x in out.splitlines() if x.startswith("BENCH_JSON "))
    result = json.loads(line.removeprefix("BENCH_JSON "))
    result["rps"] = round(result["requests"] / (result["duration_us"] / 1e6), 1)
    result["non_2xx_3xx"] = result["errors"]["status"]
    return result


def worker_cpu_seconds(server: GunicornServer) -> float:
    """User + system CPU time of the server's workers so far."""
    ticks = 0
    for pid in server.worker_pids():
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def check_signed_in(name: str, base: str, cookie: str) -> None:
    """What wrk is sent must fetch the signed-in list page, and the page must
    not hand that browser a new cookie (which wrk would never store)."""
    status, page, cookie_after = signin.request(base, "GET", "/users", cookie)
    signin.check_list_page(f"{name} ({base})", status, page)
    if cookie_after != cookie:
        raise RuntimeError(f"{name}: /users sends a new session cookie to a signed-in browser")


def worker_rss_kib(server: GunicornServer) -> dict[int, int]:
    rss = {}
    for pid in server.worker_pids():
        status = Path(f"/proc/{pid}/status").read_text()
        rss[pid] = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    return rss


# --- the run ----------------------------------------------------------------


class Suite:
    def __init__(self, settings: Settings):
        self.s = settings
        self.runs: dict[str, list[dict]] = {}  # scenario key -> one result per round
        self.info: dict[str, dict] = {}  # scenario key -> what it measured
        self.memory: dict[str, dict] = {}
        self.seed: list[dict] = []
        self.imports: dict = {}
        self.writes = {"acknowledged": 0, "stored": 0, "audit_rows": 0, "runs": []}
        self.databases: list[str] = []

    def log(self, message: str) -> None:
        print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)

    def record(self, key: str, result: dict) -> None:
        self.runs.setdefault(key, []).append(result)
        bad = result["non_2xx_3xx"] + sum(v for k, v in result["errors"].items() if k != "status")
        self.log(f"  {key:<22} {result['rps']:>8.1f} req/s  p50 {result['latency_us']['p50'] / 1000:6.1f} ms"
                 f"  p99 {result['latency_us']['p99'] / 1000:6.1f} ms" + (f"  ERRORS {bad}" if bad else ""))

    def run(self) -> dict:
        started = datetime.now(timezone.utc)
        try:
            self.build_databases()
            with GunicornServer("postgresql+psycopg2:///unused", workers=WORKERS, threads=THREADS,
                                app_module="bench.hello:app") as hello:
                for size in self.s.sizes:
                    self.bench_size(size, hello)
            self.bench_imports()
            self.bench_extra_seeds()
        finally:
            if not self.s.keep:
                for url in self.databases:
                    drop_database(url)
        return self.results(started)

    def build_databases(self) -> None:
        for size in self.s.sizes:
            url = database_url(f"myapp_bench_{size_label(size)}")
            self.databases.append(url)
            self.log(f"building {make_url(url).database} with seed-users --count {size}")
            fresh_database(url)
            result = seed(url, size)
            self.seed.append(result)
            self.log(f"  seeded {size} users in {result['seconds']} s ({result['rows_per_s']} rows/s)")

    def bench_extra_seeds(self) -> None:
        size = max(self.s.sizes)
        url = database_url("myapp_bench_seed")
        self.databases.append(url)
        for _ in range(self.s.seed_runs - 1):
            fresh_database(url)
            result = seed(url, size)
            self.seed.append(result)
            self.log(f"seed-users --count {size}: {result['seconds']} s")
        drop_database(url)

    def scenarios(self, size: int, base: str, largest: bool) -> dict[str, tuple[str, dict]]:
        """Scenario name -> (URL, wrk environment) for the server of one size."""
        label = size_label(size)
        # Every request is signed in, as a visitor's are: wrk sends this cookie.
        cookie = signin.signed_in_cookie(base)
        signed_in = {"BENCH_COOKIE": cookie}
        deep_path, depth = follow_next_links(base, DEEP_PAGES, cookie)
        # A number someone might type: "12" at 1k, "12345" at 1m — found in
        # the names and emails of a handful (~20) of the generated users.
        term = "123456789"[: len(str(size)) - 2]
        matches = scalar(
            database_url(f"myapp_bench_{label}"),
            "SELECT count(*) FROM users WHERE name ILIKE :p OR email ILIKE :p", p=f"%{term}%")
        middle = scalar(database_url(f"myapp_bench_{label}"),
                        "SELECT id FROM users ORDER BY id OFFSET :n LIMIT 1", n=size // 2)
        self.info[f"deep page@{label}"] = {"path": deep_path, "pages_followed": depth}
        self.info[f"search@{label}"] = {"q": term, "matches": matches}
        self.info[f"detail@{label}"] = {"user_id": middle}
        found = {
            "first page": (f"{base}/users", signed_in),
            "deep page": (base + deep_path, signed_in),
            "search": (f"{base}/users?q={term}", signed_in),
            "detail": (f"{base}/users/{middle}", signed_in),
        }
        if largest:
            token, cookie = csrf_session(base, cookie)
            found["create"] = (f"{base}/users", {"BENCH_CREATE": "1", "BENCH_CSRF": token,
                                                  "BENCH_COOKIE": cookie})
        return found

    def bench_size(self, size: int, hello: GunicornServer) -> None:
        label = size_label(size)
        url = database_url(f"myapp_bench_{label}")
        largest = size == max(self.s.sizes)
        self.log(f"serving {make_url(url).database}")
        with GunicornServer(url, workers=WORKERS, threads=THREADS) as app:
            scenarios = self.scenarios(size, app.url, largest)
            # Warm-up: every worker imports its templates and fills its pool.
            for target, env in scenarios.values():
                if "BENCH_CREATE" not in env:
                    wrk(target, 1, env)
            wrk(hello.url + "/", 1)
            rss_warm = worker_rss_kib(app)
            for round_no in range(1, self.s.rounds + 1):
                self.log(f"round {round_no}/{self.s.rounds} at {size} users")
                self.record(f"hello@{label}", wrk(hello.url + "/", self.s.duration))
                for name, (target, env) in scenarios.items():
                    if "BENCH_CREATE" in env:
                        self.record(f"{name}@{label}", self.create_run(url, target, env))
                    else:
                        self.record(f"{name}@{label}", wrk(target, self.s.duration, env))
            rss_end = worker_rss_kib(app)
            self.memory[label] = {
                "after_warmup_kib": rss_warm, "after_run_kib": rss_end,
                "max_ratio": round(max(rss_end[p] / rss_warm[p] for p in rss_warm if p in rss_end), 3),
            }
            self.log(f"  worker RSS after warm-up {rss_warm}, after the run {rss_end}")

    def create_run(self, url: str, target: str, env: dict) -> dict:
        users_before, audit_before = row_counts(url)
        result = wrk(target, self.s.duration, {**env, "BENCH_RUN": secrets.token_hex(4)})
        # wrk stops with requests in flight; the server may still commit them.
        users_after, audit_after = settled_row_counts(url)
        stored, audit = users_after - users_before, audit_after - audit_before
        self.writes["acknowledged"] += result["created"]
        self.writes["stored"] += stored
        self.writes["audit_rows"] += audit
        self.writes["runs"].append({"acknowledged": result["created"], "stored": stored,
                                    "audit_rows": audit})
        return result

    def bench_imports(self) -> None:
        """The lifecycle issue's import target: files with 1% bad rows, rows/s
        and the command's memory above what it needs to import one row."""
        url = database_url(f"myapp_bench_{size_label(max(self.s.sizes))}")
        if run_flask("import-users", "--help", database_url=url).returncode != 0:
            self.imports = {"status": "not available: this checkout has no import-users command"}
            self.log("import-users: not available in this checkout, skipped")
            return
        taken = scalar(url, "SELECT email FROM users ORDER BY id LIMIT 1")
        csv_dir = self.s.out_dir / "tmp"
        csv_dir.mkdir(parents=True, exist_ok=True)
        path = csv_dir / "import.csv"
        write_import_file(path, 1, secrets.token_hex(4), taken)
        _, start_kib, _ = flask_cli(url, "import-users", str(path), ok=(0, 1))
        runs = []
        for rows in self.s.import_rows:
            for _ in range(max(2, self.s.rounds // 2)):
                bad = write_import_file(path, rows, secrets.token_hex(4), taken)
                before = scalar(url, "SELECT count(*) FROM users")
                seconds, peak_kib, out = flask_cli(url, "import-users", str(path), ok=(0, 1))
                stored = scalar(url, "SELECT count(*) FROM users") - before
                runs.append({"rows": rows, "bad_rows": bad, "seconds": round(seconds, 2),
                             "rows_per_s": round(rows / seconds), "stored": stored,
                             "peak_rss_kib": peak_kib, "output": out.strip().splitlines()[0]})
                self.log(f"import-users {rows} rows ({bad} bad): {seconds:.1f} s,"
                         f" {rows / seconds:.0f} rows/s, peak RSS {peak_kib // 1024} MiB")
        path.unlink()
        self.imports = {"status": "measured", "start_rss_kib": start_kib, "runs": runs}

    def results(self, started: datetime) -> dict:
        return {
            "started": started.isoformat(timespec="seconds"),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "quick": self.s.quick,
            "machine": machine_info(),
            "config": {
                "sizes": self.s.sizes, "rounds": self.s.rounds, "duration_s": self.s.duration,
                "gunicorn": f"{WORKERS} workers x {THREADS} threads (gthread), gunicorn.conf.py",
                "wrk": f"-t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{self.s.duration}s",
            },
            "scenarios": {
                key: {"info": self.info.get(key, {}), "runs": runs, **summarise(runs)}
                for key, runs in self.runs.items()
            },
            "seed": self.seed,
            "import": self.imports,
            "writes": self.writes,
            "memory": self.memory,
        }


def summarise(runs: list[dict]) -> dict:
    med = statistics.median
    return {
        "rps_median": round(med(r["rps"] for r in runs), 1),
        "rps_min": min(r["rps"] for r in runs),
        "rps_max": max(r["rps"] for r in runs),
        "p50_ms": round(med(r["latency_us"]["p50"] for r in runs) / 1000, 2),
        "p99_ms": round(med(r["latency_us"]["p99"] for r in runs) / 1000, 2),
        "errors": sum(r["non_2xx_3xx"] + r["errors"]["connect"] + r["errors"]["read"]
                      + r["errors"]["write"] + r["errors"]["timeout"] for r in runs),
    }


def rps_recorder(runs: dict[str, list[float]], width: int = 28):
    """``record(key, wrk_result)``: keep the run's req/s under ``key``, print it,
    and stop the benchmark on any failed request."""
    def record(key: str, result: dict) -> None:
        errors = sum(result["errors"].values())  # connect, read, write, timeout, non-2xx/3xx
        if errors:
            kinds = ", ".join(f"{kind} {n}" for kind, n in result["errors"].items() if n)
            raise RuntimeError(f"{key}: {errors} failed requests ({kinds})")
        runs.setdefault(key, []).append(result["rps"])
        print(f"  {key:<{width}} {result['rps']:>8.1f} req/s", flush=True)

    return record


def rounds_arguments(prog: str, description: str, argv: list[str] | None) -> argparse.Namespace:
    """The options of the wrk-round benchmarks (--scaleout, --replicas)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    return parser.parse_args(argv)


def save_results(out: Path, results: dict, table: str) -> None:
    """``out``.json and ``out``.md, and the table on the console."""
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(table)
    print(table)
    print(f"json: {out.with_suffix('.json')}\nmarkdown: {out.with_suffix('.md')}")


def machine_info() -> dict:
    def cmd(*args: str) -> str:
        return subprocess.run(args, capture_output=True, text=True).stdout.strip()

    return {
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "python": sys.version.split()[0],
        "postgresql": scalar(database_url("postgres"), "SHOW server_version"),
        "wrk": cmd("wrk", "-v").splitlines()[0] if cmd("wrk", "-v") else "",
        "git_commit": cmd("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"),
    }


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(sys.argv[1:] if argv is None else argv)
    results = Suite(settings).run()
    paths = report.write(results, settings.out_dir)
    print(Path(paths["markdown"]).read_text())
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
