"""The cluster's Prometheus: it scrapes every instance directly and PgBouncer
through Debian's exporter, loads the alert rules, and answers PromQL."""

from __future__ import annotations

import socket

import pytest
import requests

from cluster.monitoring import PgBouncerExporter
from cluster.processes import ClusterError
from cluster.settings import Settings

from tests.support.http import Browser
from tests.support.prometheus import PrometheusAPI, scrape

ALERTS = {"MyappInstanceDown", "MyappHigh503Rate", "MyappPoolSaturated", "MyappReplicaLagging"}


def prometheus(cluster) -> PrometheusAPI:
    return PrometheusAPI(f"http://127.0.0.1:{cluster.ports['prometheus']}")


def healthy(targets: list[dict]) -> set[tuple[str, str]]:
    return {(t["labels"]["job"], t["labels"]["instance"]) for t in targets if t["health"] == "up"}


def test_every_instance_and_the_exporter_are_healthy_targets(cluster):
    expected = {("myapp", f"127.0.0.1:{cluster.app_port(i)}") for i in range(1, cluster.instances + 1)}
    expected.add(("pgbouncer", f"127.0.0.1:{cluster.ports['pgbouncer-exporter']}"))
    api = prometheus(cluster)
    # A target is "unknown" until its first scrape (every second here).
    api.wait_for("up", lambda result: len(result) == len(expected), timeout=30)
    targets = api.targets()
    assert healthy(targets) == expected, targets
    assert {t["labels"]["instance"] for t in targets} == {instance for _, instance in expected}
    # Never through nginx: its public ports are no target.
    assert all(str(cluster.ports["http"]) not in t["scrapeUrl"] for t in targets)


def test_the_alert_rules_are_loaded(cluster):
    response = requests.get(f"{prometheus(cluster).url}/api/v1/rules", timeout=10)
    response.raise_for_status()
    loaded = {rule["name"] for group in response.json()["data"]["groups"] for rule in group["rules"]}
    assert loaded == ALERTS


def test_prometheus_answers_the_request_rate_after_some_requests(cluster):
    browser = Browser(cluster.url)
    for _ in range(20):
        assert browser.get("/healthz").status_code == 200
    api = prometheus(cluster)
    query = 'sum(rate(myapp_http_requests_total{route="/healthz",method="GET"}[15s]))'
    result = api.wait_for(query, lambda r: r and float(r[0]["value"][1]) > 0, timeout=30)
    assert float(result[0]["value"][1]) > 0
    # Both instances served some (nginx balances) and each is scraped on its own.
    def every_instance_and_every_request(result: list[dict]) -> bool:
        return (len(result) == cluster.instances
                and sum(float(sample["value"][1]) for sample in result) >= 20)

    api.wait_for('sum by (instance) (myapp_http_requests_total{route="/healthz",method="GET"})',
                 every_instance_and_every_request, timeout=30)


def test_the_pgbouncer_exporter_serves_pgbouncers_pools_and_stats(cluster):
    browser = Browser(cluster.url)
    assert browser.get("/healthz").status_code == 200  # a query through PgBouncer
    metrics = scrape(f"http://127.0.0.1:{cluster.ports['pgbouncer-exporter']}")
    assert metrics.matching("pgbouncer_active_clients", database="myapp")
    assert metrics.value("pgbouncer_requests_total", database="myapp") > 0
    assert metrics.value("pgbouncer_pool_size", database="myapp") > 0
    api = prometheus(cluster)
    api.wait_for('pgbouncer_requests_total{database="myapp"}', lambda r: len(r) == 1, timeout=30)


def test_a_port_taken_by_another_server_is_an_error_not_a_false_up(tmp_path):
    """Debian's own services listen on 9090 and 9127 once installed (systemd)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings.from_environment({"CLUSTER_DIR": str(tmp_path),
                                              "CLUSTER_PGBOUNCER_EXPORTER_PORT": str(port)})
        settings.run_dir.mkdir()
        with pytest.raises(ClusterError, match=f"127.0.0.1:{port} is taken by another process"):
            PgBouncerExporter(settings).start()
    assert not (settings.run_dir / "pgbouncer-exporter.pid").exists()
