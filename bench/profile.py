"""Where a request's time goes: py-spy on a real gunicorn worker under wrk load.

    .venv/bin/python -m bench.profile DATABASE_URL PATH [--seconds 10] [--create]

Starts the production server on DATABASE_URL, drives PATH with wrk (or the
create form with ``--create``), samples one worker with py-spy meanwhile, and
prints the functions holding the most samples, inclusive — the shares of a
request's CPU. The flame-graph input (collapsed stacks) is kept in
bench/results/tmp/ for a closer look.
"""

from __future__ import annotations

import argparse
import collections
import secrets
import subprocess
import sys
import threading
from pathlib import Path

from bench import signin
from bench.suite import ROOT, THREADS, WORKERS, csrf_session, wrk
from harness.gunicorn import GunicornServer

PY_SPY = Path(sys.executable).with_name("py-spy")


def frames(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rpartition(" ")
    return stack.split(";"), int(count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.profile")
    parser.add_argument("database_url")
    parser.add_argument("path", help="e.g. /users or /users?q=99999")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--create", action="store_true", help="POST the new-user form instead")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)

    out = ROOT / "bench" / "results" / "tmp" / "profile.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    with GunicornServer(args.database_url, workers=WORKERS, threads=THREADS) as server:
        signin.create_account(args.database_url)
        cookie = signin.signed_in_cookie(server.url)
        env = {"BENCH_COOKIE": cookie}
        if args.create:
            token, cookie = csrf_session(server.url, cookie)
            env = {"BENCH_CREATE": "1", "BENCH_CSRF": token, "BENCH_COOKIE": cookie}
        # A fresh run token for every wrk run: its emails restart at 1, and
        # repeated emails would profile the 409 page instead of the create.
        wrk(server.url + args.path, 2, {**env, "BENCH_RUN": secrets.token_hex(4)})  # warm-up
        load = threading.Thread(target=wrk, args=(server.url + args.path, args.seconds + 2,
                                                  {**env, "BENCH_RUN": secrets.token_hex(4)}))
        load.start()
        subprocess.run([str(PY_SPY), "record", "--pid", str(server.worker_pids()[0]),
                        "--duration", str(args.seconds), "--format", "raw", "--output", str(out),
                        "--nonblocking", "--gil", "--rate", "200"],
                       check=True, capture_output=True)
        load.join()

    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, count = frames(line)
        total += count
        for name in set(stack):
            inclusive[name] += count
    print(f"{total} samples of one worker (only the thread holding the GIL: Python CPU time); inclusive share:")
    for name, count in inclusive.most_common(args.top):
        print(f"{100 * count / total:5.1f}%  {name}")
    print(f"collapsed stacks: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
