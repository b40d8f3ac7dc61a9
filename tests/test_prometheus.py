"""deploy/prometheus/ checked by promtool, and a real Prometheus scraping two instances."""

from __future__ import annotations

import pytest
import requests

from cluster.monitoring import Prometheus
from cluster.settings import Settings
from harness.gunicorn import GunicornServer
from tests.support.http import Browser
from tests.support.prometheus import RULES_DIR, PrometheusServer, promtool

ALERTS = {"MyappInstanceDown", "MyappHigh503Rate", "MyappPoolSaturated", "MyappReplicaLagging"}


def test_alert_rules_pass_promtool_check_rules():
    result = promtool("check", "rules", str(RULES_DIR / "alerts.rules.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout


def test_alert_rules_fire_on_their_unit_test_series():
    """alerts.test.yml: each alert fires when it should and not before (rule
    evaluation by promtool, the replica-lag alert on a paused replay)."""
    result = promtool("test", "rules", str(RULES_DIR / "alerts.test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    for alert in ALERTS:
        assert f"alertname: {alert}" in (RULES_DIR / "alerts.test.yml").read_text()


def test_scrape_config_as_the_cluster_renders_it_passes_promtool_check_config(tmp_path):
    settings = Settings.from_environment({"CLUSTER_DIR": str(tmp_path), "CLUSTER_INSTANCES": "3"})
    config = Prometheus(settings).render()
    result = promtool("check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout
    assert '"127.0.0.1:8003"' in config.read_text()


def test_every_alert_has_a_one_line_reason():
    text = (RULES_DIR / "alerts.rules.yml").read_text()
    alerts = [line.split(":", 1)[1].strip() for line in text.splitlines()
              if line.strip().startswith("- alert:")]
    reasons = [line for line in text.splitlines() if line.strip().startswith("reason:")]
    assert set(alerts) == ALERTS
    assert len(reasons) == len(alerts)


@pytest.mark.server
def test_prometheus_scrapes_two_instances_and_answers_the_request_rate(database_url):
    with (GunicornServer(database_url, workers=1, threads=2) as first,
          GunicornServer(database_url, workers=1, threads=2) as second):
        targets = [server.url.removeprefix("http://") for server in (first, second)]
        browsers = {server: Browser(server.url) for server in (first, second)}  # the editor
        # A series is born at its first scrape; rate() needs it to have grown after that.
        for server in (first, second):
            assert browsers[server].get("/users").status_code == 200
        with PrometheusServer(targets) as prometheus:
            up = prometheus.wait_for('up{job="myapp"} == 1', lambda result: len(result) == 2)
            assert {series["metric"]["instance"] for series in up} == set(targets)
            prometheus.wait_for('myapp_http_requests_total{route="/users"}',
                                lambda result: len(result) == 2)
            for server in (first, second):
                for _ in range(5):
                    assert browsers[server].get("/users").status_code == 200

            rates = prometheus.wait_for(
                'sum by (instance) (rate(myapp_http_requests_total{route="/users"}[1m]))',
                lambda result: len(result) == 2 and all(float(s["value"][1]) > 0 for s in result),
            )
            assert {series["metric"]["instance"] for series in rates} == set(targets)
            totals = prometheus.wait_for(
                'sum by (instance) (myapp_http_requests_total{route="/users"})',
                lambda result: len(result) == 2 and all(s["value"][1] == "6" for s in result),
            )
            assert len(totals) == 2

            rules = requests.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()
            loaded = {rule["name"] for group in rules["data"]["groups"] for rule in group["rules"]}
            assert loaded == ALERTS

            second.stop()  # an instance goes away: Prometheus sees it down
            down = prometheus.wait_for('up{job="myapp"} == 0', lambda result: len(result) == 1)
            assert down[0]["metric"]["instance"] == targets[1]
