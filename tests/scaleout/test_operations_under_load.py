"""Graceful operations on the cluster under load: a rolling restart of the
instances, and an instance killed outright (SIGKILL). In both, every write
the app acknowledged is stored (acknowledged ⊆ stored), and nginx retries
the idempotent requests the lost instance held — never a POST.

The figures of a run are printed at the end (tests/support/fault_report.py) and
quoted in docs/deployment.md.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import requests

from cluster.processes import alive
from tests.support import fault_report
from tests.support.http import Browser
from tests.support.workload import Load, check_writes, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.server, pytest.mark.faults,
              pytest.mark.usefixtures("cluster_tables")]

MIX = {"create": 40, "edit": 20, "list": 20, "detail": 20}
WRITES = {"create", "edit"}
OK = {200, 303, 404, 409}


def results_after(load: Load, moment: float) -> int:
    return sum(r.started >= moment for r in load.results)


def test_rolling_restart_under_load_loses_nothing(cluster, primary):
    before = cluster.pids()
    # Each drain reloads nginx, whose old workers close their idle kept-alive
    # connections: a client's next request on one can cross that close. The
    # clients resend those, as browsers do (nginx had read nothing on them).
    load = Load(cluster.url, clients=8, mix=MIX, resend_when_closed=True).start()
    try:
        assert wait_for(lambda: len(load.results) >= 100, timeout=60)
        restart = cluster.run("restart-apps")  # one instance at a time, SIGTERM then start
        assert restart.returncode == 0, restart.stderr
        restarted_at = time.monotonic()
        assert wait_for(lambda: results_after(load, restarted_at) >= 100, timeout=60)
    finally:
        load.stop()

    after = cluster.pids()
    writes = check_writes(primary, load)
    fault_report.record(
        "scale-out: rolling restart of 2 instances under load (through nginx)",
        requests=len(load.results),
        statuses=dict(sorted(load.statuses().items(), key=str)),
        **writes.figures(),
    )
    for index in (1, 2):
        assert after[f"run/app-{index}.pid"] != before[f"run/app-{index}.pid"]
    assert writes.consistent, writes
    # The other instance kept serving: no request failed, none was lost.
    assert set(load.statuses()) <= OK, [r for r in load.results if r.status not in OK]


def test_sigkill_of_an_instance_costs_at_most_the_writes_it_held(cluster, primary):
    load = Load(cluster.url, clients=8, mix=MIX).start()
    try:
        assert wait_for(lambda: len(load.results) >= 100, timeout=60)
        victim = cluster.pids()["run/app-1.pid"]
        killed_at = time.monotonic()
        os.killpg(victim, signal.SIGKILL)  # the master and its workers (own session)
        assert wait_for(lambda: results_after(load, killed_at) >= 150, timeout=60)
        # `make cluster` again starts what is not running: the killed instance.
        assert cluster.run("up").returncode == 0
        back_at = time.monotonic()
        assert wait_for(lambda: results_after(load, back_at) >= 100, timeout=60)
    finally:
        load.stop()

    writes = check_writes(primary, load)
    failed = [r for r in load.results if r.status not in OK]
    fault_report.record(
        "scale-out: SIGKILL one of 2 instances under load (through nginx)",
        requests=len(load.results),
        statuses=dict(sorted(load.statuses().items(), key=str)),
        failed_requests=f"{len(failed)} ({', '.join(sorted({r.kind for r in failed})) or 'none'})",
        **writes.figures(),
    )
    assert writes.consistent, writes
    # nginx passed every read the dead instance held on to the other one;
    # only writes it had already sent there can fail (502), never be sent twice.
    assert all(r.kind in WRITES and r.status == 502 for r in failed), [
        (r.kind, r.status, r.error) for r in failed]
    threads_of_an_instance = 2 * 4
    assert len(failed) <= threads_of_an_instance
    assert all(r.own_error_page for r in load.results)
    assert cluster.run("status").returncode == 0


@pytest.mark.parametrize(("component", "pid_file", "stop_signal"), [
    ("pgbouncer", "run/pgbouncer.pid", signal.SIGTERM),
    ("primary", "primary/postmaster.pid", signal.SIGINT),  # PostgreSQL's fast shutdown
])
def test_pgbouncer_or_primary_away_is_503_then_recovery_by_itself(cluster, component, pid_file,
                                                                  stop_signal):
    browser = Browser(cluster.url)  # signed in as the editor while the database is there
    assert browser.get("/users").status_code == 200
    pid = cluster.pids()[pid_file]
    os.kill(pid, stop_signal)
    assert wait_for(lambda: not alive(pid), timeout=30)

    started = time.monotonic()
    away = browser.get("/users")
    health = requests.get(f"{cluster.url}/healthz", timeout=30)
    assert away.status_code == 503 and 'class="site-header"' in away.text
    assert time.monotonic() - started <= 2 * (5 + 3 + 5)  # DB_POOL_TIMEOUT + connect + slack
    assert health.status_code == 503 and health.json()["database"] == "unavailable"

    assert cluster.run("up").returncode == 0  # starts just what is missing
    back = wait_for(lambda: browser.get("/users").status_code == 200, timeout=20)
    fault_report.record(f"scale-out: {component} stopped, then started again",
                  answer_while_away=away.status_code,
                  recovered_without_restarting_the_instances=bool(back))
    assert back
    assert cluster.run("status").returncode == 0

