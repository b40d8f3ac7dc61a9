"""The cluster's instances read from its streaming replica (DATABASE_REPLICA_URL,
through PgBouncer): the fault suite's mixed load through nginx loses no
write and meets no 5xx, and the replica serves the reads."""

from __future__ import annotations

import pytest

from tests.support import fault_report
from tests.support.http import Browser
from tests.support.prometheus import scrape
from tests.support.workload import Load, check_writes, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.server, pytest.mark.faults,
              pytest.mark.usefixtures("cluster_tables")]


def reads_by_target(cluster) -> dict[str, float]:
    scrapes = [scrape(cluster.app_url(index)) for index in range(1, cluster.instances + 1)]
    return {target: sum(s.value("myapp_db_reads_total", target=target) for s in scrapes)
            for target in ("primary", "replica")}


def test_mixed_load_through_the_cluster_reads_the_replica_and_loses_nothing(cluster, primary):
    assert Browser(cluster.url).get("/healthz").json()["replica"] == "ok"
    before = reads_by_target(cluster)
    load = Load(cluster.url, clients=8, total=600).start()
    assert wait_for(lambda: len(load.results) >= 600, timeout=120)
    load.wait()
    after = reads_by_target(cluster)
    reads = {target: after[target] - before[target] for target in after}

    writes = check_writes(primary, load)
    fault_report.record("scale-out: mixed load through the cluster, reads on the replica",
                        requests=len(load.results),
                        statuses=dict(sorted(load.statuses().items(), key=str)),
                        replica_reads=int(reads["replica"]), primary_reads=int(reads["primary"]),
                        **writes.figures())
    assert writes.consistent, writes
    assert load.server_errors() == []
    assert None not in load.statuses()
    # Clients that write read their own writes from the primary until the
    # replica has replayed them (milliseconds): most reads are the replica's.
    assert reads["replica"] > reads["primary"]
