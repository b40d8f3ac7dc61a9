"""Where a request's time goes: py-spy on a real gunicorn worker under wrk load.

    .venv/bin/python -m bench.profile --split [--seconds 15] [--usual-build]
    .venv/bin/python -m bench.profile DATABASE_URL PATH [--seconds 10] [--create]

``--split`` builds its own 1,000-user database, serves it with the
production server (2 workers x 8 gthread threads), signs in as an editor and
profiles the signed-in ``GET /users`` and ``POST /users`` (create -> 303) in
turn: py-spy samples one worker (``--gil``: only the thread holding the GIL,
i.e. Python CPU time) while wrk drives the page. Every sample is put in one
bucket (:data:`FEATURES`, then :data:`LAYERS`) and the shares are printed as
a table, and written to ``bench/results/<date>-profile.{json,md}``.

With DATABASE_URL and PATH it profiles that one page of an existing database
and also prints the functions holding the most samples, inclusive.
The flame-graph input (py-spy's raw, collapsed stacks: load it into any
flame-graph viewer) is kept in bench/results/tmp/.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import secrets
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

from bench import signin
from bench.suite import (
    ROOT, THREADS, WORKERS, csrf_session, database_url, drop_database, fresh_database,
    machine_info, seed, wrk,
)
from harness.gunicorn import GunicornServer

PY_SPY = Path(sys.executable).with_name("py-spy")
USUAL_APP = "bench.usual_build.app:app"
COUNTED = re.compile(r" [0-9]+$")
FRAME = re.compile(r"^(?P<func>.*?) \((?P<path>[^()]*?)(?::\d+)?\)$")

# A sample belongs to the first feature any of its frames is in (checked in
# this order: sign-in loading inside a template is sign-in, CSRF inside
# validation is CSRF, the CSRF token's signing is CSRF, not the session
# cookie's), with all the SQL and ORM work done on its behalf.
# Each rule: (path fragment, function names or None for any).
FEATURES: list[tuple[str, list[tuple[str, set[str] | None]]]] = [
    ("sign-in loading", [
        ("flask_login/login_manager.py", {"_load_user", "_session_protection_failed"}),
        ("myapp/auth/login.py", {"load_account"}),
        ("bench/usual_build/app.py", {"load_user"}),
    ]),
    # Building the audit row; its INSERT runs in the unit of work's flush,
    # which py-spy cannot tell apart from the user's: see "ORM unit of work".
    ("audit row", [("myapp/users.py", {"_audit"})]),
    ("form construction and CSRF", [
        ("flask_wtf/csrf.py", None),
        ("wtforms/csrf/", None),
        ("flask_wtf/form.py", {"__init__", "wrap_formdata", "_is_submitted", "is_submitted"}),
        ("wtforms/form.py", {"__call__", "__init__", "process"}),
        ("wtforms/meta.py", None),
    ]),
    ("validation", [
        ("wtforms/form.py", {"validate"}),
        ("wtforms/fields/core.py", {"validate", "pre_validate", "post_validate", "_run_validation_chain"}),
        ("wtforms/validators.py", None),
        ("email_validator/", None),
        ("myapp/validation.py", None),
    ]),
    ("flash and session cookie", [
        ("flask/helpers.py", {"flash", "get_flashed_messages"}),
        ("flask/sessions.py", None),
        ("itsdangerous/", None),
    ]),
    # Rendering, with the url_for calls and filters the templates make.
    ("Jinja", [("jinja2/", None), (".html", None)]),
]
# Otherwise a sample belongs to the layer of its innermost frame that is in
# one (a leaf in the standard library counts for whoever called it).
# (myapp's request observer wraps the whole app: a feature rule would claim
# every sample, so logs and metrics are a layer.)
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("logs and metrics", ("myapp/observability/", "prometheus_client/", "pythonjsonlogger/",
                          "gunicorn/glogging.py", "logging/")),
    ("SQL execution (engine, pool, psycopg2)", ("psycopg2/", "sqlalchemy/engine/", "sqlalchemy/pool/",
                             "sqlalchemy/dialects/")),
    ("ORM: unit of work, queries, SQL compiling", ("sqlalchemy/", "flask_sqlalchemy/")),
    ("Werkzeug and Flask", ("werkzeug/", "flask/", "flask_login/", "flask_wtf/", "wtforms/")),
    ("app code (views, services)", ("myapp/", "bench/usual_build/")),
    ("gunicorn", ("gunicorn/",)),
]
BUCKETS = [name for name, _ in FEATURES] + [name for name, _ in LAYERS] + ["other"]


def frames(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rpartition(" ")
    return stack.split(";"), int(count)


def records(collapsed: Path) -> list[str]:
    """The collapsed stacks, one per sample group ("frame;frame;... COUNT").

    Now and then py-spy reads a frame's name while the process changes it
    and writes a few lines of source code into it: those lines are joined
    back to the record they belong to, which ends with its count.
    """
    out, pending = [], []
    for line in collapsed.read_text().splitlines():
        pending.append(line)
        if COUNTED.search(line):
            out.append(" ".join(pending))
            pending = []
    return out


def parse(frame: str) -> tuple[str, str]:
    match = FRAME.match(frame)
    return (match["func"], match["path"]) if match else (frame, "")


def bucket(stack: list[str]) -> str:
    parsed = [parse(frame) for frame in stack]
    for name, rules in FEATURES:
        for func, path in parsed:
            if any(fragment in path and (names is None or func in names) for fragment, names in rules):
                return name
    for func, path in reversed(parsed):  # innermost first
        for name, fragments in LAYERS:
            if any(fragment in path for fragment in fragments):
                return name
    return "other"


def split(collapsed: Path) -> dict:
    """Samples per bucket, and the total."""
    counts: collections.Counter[str] = collections.Counter()
    for line in records(collapsed):
        stack, count = frames(line)
        counts[bucket(stack)] += count
    return {"samples": sum(counts.values()), "buckets": {name: counts[name] for name in BUCKETS}}


def record(server: GunicornServer, path: str, env: dict, seconds: int, out: Path) -> None:
    """py-spy on one worker for ``seconds`` while wrk drives ``path``."""
    # A fresh run token for every wrk run: its emails restart at 1, and
    # repeated emails would profile the 409 page instead of the create.
    wrk(server.url + path, 2, {**env, "BENCH_RUN": secrets.token_hex(4)})  # warm-up
    load = threading.Thread(target=wrk, args=(server.url + path, seconds + 2,
                                              {**env, "BENCH_RUN": secrets.token_hex(4)}))
    load.start()
    try:
        subprocess.run([str(PY_SPY), "record", "--pid", str(server.worker_pids()[0]),
                        "--duration", str(seconds), "--format", "raw", "--output", str(out),
                        "--nonblocking", "--gil", "--rate", "200"],
                       check=True, capture_output=True)
    finally:
        load.join()


def signed_in_env(server: GunicornServer, create: bool) -> dict:
    cookie = signin.signed_in_cookie(server.url)
    if not create:
        return {"BENCH_COOKIE": cookie}
    token, cookie = csrf_session(server.url, cookie)
    return {"BENCH_CREATE": "1", "BENCH_CSRF": token, "BENCH_COOKIE": cookie}


def markdown(results: dict) -> str:
    pages = list(results["pages"])
    lines = [
        f"py-spy {results['py_spy']} on one of {WORKERS} gunicorn workers ({THREADS} gthread threads), "
        f"{results['app']}, {results['users']:,} users, signed in as an editor, wrk -t2 -c16, "
        f"{results['seconds']} s per page at 200 samples/s, --gil (Python CPU only); commit "
        f"{results['machine']['git_commit']}; load average {results['machine']['load_average_at_end'][0]:.2f}.",
        "",
        "| bucket | " + " | ".join(pages) + " |",
        "| --- | " + " | ".join("---:" for _ in pages) + " |",
    ]
    for name in BUCKETS:
        cells = []
        for page in pages:
            figures = results["pages"][page]
            cells.append(f"{100 * figures['buckets'][name] / max(1, figures['samples']):.1f}%")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| samples | " + " | ".join(str(results["pages"][p]["samples"]) for p in pages) + " |")
    return "\n".join(lines) + "\n"


def profile_split(args) -> int:
    started = datetime.now(timezone.utc)
    url = database_url("myapp_bench_profile")
    tmp = ROOT / "bench" / "results" / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    app = "usual build" if args.usual_build else "myapp"
    results = {"started": started.isoformat(timespec="seconds"), "app": app, "users": args.users,
               "seconds": args.seconds, "pages": {},
               "py_spy": subprocess.run([str(PY_SPY), "--version"], capture_output=True,
                                        text=True).stdout.strip()}
    fresh_database(url)
    try:
        seed(url, args.users)
        with GunicornServer(url, workers=WORKERS, threads=THREADS,
                            app_module=USUAL_APP if args.usual_build else "wsgi:app") as server:
            for page, create in (("GET /users", False), ("POST /users", True)):
                out = tmp / f"profile-{'usual' if args.usual_build else 'myapp'}-{'create' if create else 'list'}.txt"
                print(f"profiling {page} ({app}) for {args.seconds} s ...", flush=True)
                record(server, "/users", signed_in_env(server, create), args.seconds, out)
                results["pages"][page] = {**split(out), "collapsed_stacks": str(out.relative_to(ROOT))}
    finally:
        drop_database(url)
    results["machine"] = machine_info()
    table = markdown(results)
    name = f"{started:%Y-%m-%d}-profile-{'usual' if args.usual_build else 'myapp'}"
    results_dir = ROOT / "bench" / "results"
    (results_dir / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (results_dir / f"{name}.md").write_text(table)
    print(table)
    print(f"json: {results_dir / name}.json\nmarkdown: {results_dir / name}.md")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.profile")
    parser.add_argument("database_url", nargs="?")
    parser.add_argument("path", nargs="?", help="e.g. /users or /users?q=99999")
    parser.add_argument("--split", action="store_true",
                        help="own database; bucket shares of GET /users and POST /users")
    parser.add_argument("--usual-build", action="store_true", help="profile bench/usual_build instead")
    parser.add_argument("--users", type=int, default=1_000, help="with --split")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--create", action="store_true", help="POST the new-user form instead")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    if os.geteuid() != 0 and not args.split:
        print("note: py-spy needs ptrace rights (root or CAP_SYS_PTRACE)", file=sys.stderr)
    if args.split:
        return profile_split(args)
    if not (args.database_url and args.path):
        parser.error("give DATABASE_URL and PATH, or --split")

    out = ROOT / "bench" / "results" / "tmp" / "profile.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    with GunicornServer(args.database_url, workers=WORKERS, threads=THREADS,
                        app_module=USUAL_APP if args.usual_build else "wsgi:app") as server:
        signin.create_account(args.database_url)
        record(server, args.path, signed_in_env(server, args.create), args.seconds, out)

    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in records(out):
        stack, count = frames(line)
        total += count
        for name in set(stack):
            inclusive[name] += count
    print(f"{total} samples of one worker (only the thread holding the GIL: Python CPU time); inclusive share:")
    for name, count in inclusive.most_common(args.top):
        print(f"{100 * count / total:5.1f}%  {name}")
    shares = split(out)
    print("\nbuckets:")
    for name, count in shares["buckets"].items():
        print(f"{100 * count / max(1, shares['samples']):5.1f}%  {name}")
    print(f"collapsed stacks: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
