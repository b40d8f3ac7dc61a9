"""Instructions per request, counted by valgrind: ``bench/run --instructions``.

Time on this shared two-core machine scatters by a few percent from one run
to the next, more than many a change saves. The number of instructions a
request executes hardly does: valgrind's callgrind counts them, whatever
else the machine is doing, and two runs of one commit agree to within about
0.5 %. So this bench compares a change of Python work before and after, one
run on each commit: no need for both in one run.

For each scenario (the signed-in first page of ``/users`` at 1,000 users, the
create) and variant (*on*: the app as deployed, with its JSON access line;
*off*: without its observability — bench/observability_cpu.py's two), two
processes run under callgrind, serving ``--requests`` N1 and N2 requests in
process (the same setup as that bench, signed in, each response checked;
both build N2 requests' environments first, so building them cancels out);
``(I(N2) - I(N1)) / (N2 - N1)`` is one request's count, start-up and
warm-up cancelled out. ``PYTHONHASHSEED=0`` fixes string hashes, so sets
and hash tables are laid out the same in every run.

What it does not see: instructions are not time. The kernel's work for a
system call (the round trips to PostgreSQL, writing a log line), waiting,
cache misses and the GIL changing hands are not counted, and C code (zlib,
hashing) executes many cheap instructions where Python executes few costly
ones. Use it to compare two versions of the same Python work; throughput
stays bench/run's and bench/usual.py's (wrk against gunicorn).

Writes ``bench/results/<date>-instructions-<commit>.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from bench.suite import (ROOT, database_url, drop_database, fresh_database, machine_info,
                         save_results, seed)

USERS = 1_000
SCENARIOS = ("first page", "create")
VARIANTS = ("on", "off")
# valgrind's summary line: "==<pid>== Collected : <instructions>".
COLLECTED = re.compile(r"^==\d+== Collected : (\d+)$", re.MULTILINE)
# A process serves 400 list pages in about two minutes under callgrind.
PROCESS_TIMEOUT_S = 900


def serve_requests(url: str, variant_name: str, scenario: str, requests: int, built: int) -> None:
    """The process callgrind watches: builds ``built`` requests' environments
    (the same number in both processes of a pair) and serves ``requests`` of them."""
    from bench import observability_cpu

    with observability_cpu.served(url) as (variants, scenarios):
        variant = variants[variant_name]
        observability_cpu.use(variant)
        make_environ, expected = scenarios[scenario]
        environs = [make_environ() for _ in range(built)]
        for environ in environs[:requests]:
            observability_cpu.serve(variant, environ, expected)


def count(url: str, variant: str, scenario: str, requests: int, built: int) -> int:
    """Instructions one process executes serving ``requests`` requests."""
    with tempfile.TemporaryDirectory(prefix="myapp-callgrind-") as scratch:
        log = Path(scratch) / "valgrind.log"
        command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                   f"--log-file={log}", sys.executable, "-m", "bench.instructions", "--serve",
                   url, variant, scenario, str(requests), str(built)]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False,
                              env={**os.environ, "PYTHONHASHSEED": "0"}, timeout=PROCESS_TIMEOUT_S)
        found = COLLECTED.search(log.read_text()) if log.exists() else None
        if done.returncode != 0 or found is None:
            raise RuntimeError(f"callgrind ({variant}, {scenario}, {requests}) failed, "
                               f"exit {done.returncode}:\n{done.stderr[-2000:]}")
        return int(found.group(1))


def per_request(url: str, variant: str, scenario: str, fewer: int, more: int) -> int:
    # Both processes at once: two cores, and counts do not depend on timing.
    with ThreadPoolExecutor(max_workers=2) as pool:
        low, high = pool.map(lambda n: count(url, variant, scenario, n, more), (fewer, more))
    return round((high - low) / (more - fewer))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        url, variant, scenario, requests, built = argv[1:]
        serve_requests(url, variant, scenario, int(requests), int(built))
        return 0
    parser = argparse.ArgumentParser(prog="bench/run --instructions",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, nargs=2, default=(100, 400),
                        metavar=("N1", "N2"), help="requests in the two processes (default 100 400)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (bench/run installs it)")
    fewer, more = args.requests

    started = datetime.now(timezone.utc)
    url = database_url("myapp_bench_instructions")
    fresh_database(url)
    counts: dict[str, dict[str, int]] = {}
    try:
        seed(url, USERS)
        for scenario in args.scenarios:
            for variant in args.variants:
                counts.setdefault(scenario, {})[variant] = per_request(
                    url, variant, scenario, fewer, more)
                print(f"{scenario} / {variant}: {counts[scenario][variant]:,} instructions "
                      "per request", flush=True)
    finally:
        drop_database(url)
    results = {
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(), "users": USERS, "requests": [fewer, more],
        "instructions_per_request": counts,
    }
    # The commit in the name: runs on several commits of one day are compared.
    name = f"{started:%Y-%m-%d}-instructions-{results['machine']['git_commit']}"
    save_results(ROOT / "bench" / "results" / name, results, markdown(results))
    return 0


def markdown(results: dict) -> str:
    fewer, more = results["requests"]
    lines = [
        f"Run {results['started']} – {results['finished']}; commit "
        f"{results['machine']['git_commit']}; {results['users']:,} users; valgrind's callgrind, "
        f"(I({more}) - I({fewer})) / {more - fewer} requests in process, signed in as an editor.",
        "",
        "| scenario | variant | instructions per request |",
        "| --- | --- | ---: |",
    ]
    for scenario, variants in results["instructions_per_request"].items():
        for variant, instructions in variants.items():
            lines.append(f"| {scenario} | {variant} | {instructions:,} |")
        if set(variants) == set(VARIANTS):
            cost = variants["on"] / variants["off"] - 1
            lines.append(f"| {scenario} | cost of *on* | {cost:+.1%} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
