"""The replica-lag alert of deploy/prometheus/alerts.rules.yml, evaluated by
a real Prometheus scraping a real gunicorn, fires when replay is paused."""

from __future__ import annotations

import threading

import pytest
import requests

from myapp.models import Role
from tests.support.http import Browser
from tests.support.prometheus import RULES_DIR, PrometheusServer, rule_with_for
from tests.support.workload import wait_for

pytestmark = [pytest.mark.server, pytest.mark.replication]

ALERT = "MyappReplicaLagging"


def test_replica_lag_alert_fires_when_replay_is_paused(replication, server, replicated_tables):
    rules = (RULES_DIR / "alerts.rules.yml").read_text()
    # The rule as deployed (its expression: lag over 30 s), but with `for: 2m`
    # shortened to 2 s, so the test waits for the lag, not for two minutes.
    rules = rule_with_for(rules, ALERT, "2s")
    assert "myapp_db_replica_lag_seconds) > 30" in rules

    reader = Browser(server.url, role=Role.VIEWER)
    replication.wait_until_replayed()
    replication.pause_replay()
    stop = threading.Event()

    def keep_reading() -> None:
        # The routers measure the lag when pages are read; a page every
        # half second keeps the gauge current.
        while not stop.wait(0.5):
            assert reader.get("/users").status_code == 200

    readers = threading.Thread(target=keep_reading, daemon=True)
    try:
        with PrometheusServer([server.url.removeprefix("http://")],
                              rule_texts={"alerts.rules.yml": rules}) as prometheus:
            # Something the replica receives and cannot replay.
            replicated_tables.write("INSERT INTO users (name, email) VALUES ('Lag', 'lag@x.org')")
            readers.start()
            firing = prometheus.wait_for(
                f'ALERTS{{alertname="{ALERT}", alertstate="firing"}}', bool, timeout=75)
            assert firing[0]["metric"]["severity"] == "page"
            lag = prometheus.query("max(myapp_db_replica_lag_seconds)")
            assert float(lag[0]["value"][1]) > 30
            # Each worker confirms the lag itself (a second of replay seen
            # stuck) before it calls the replica lagging.
            assert wait_for(lambda: requests.get(f"{server.url}/healthz", timeout=10)
                            .json()["replica"] == "lagging", 10)
    finally:
        stop.set()
        if readers.is_alive():
            readers.join()
        replication.resume_replay()
