"""CLI commands use the primary only; several replicas share the reads, and
one of them down leaves the others in use."""

from __future__ import annotations

import pytest

from harness.flask_cli import run_flask
from harness.gunicorn import free_port
from harness.replication import Replication
from myapp.models import Role
from tests.replication.conftest import app_server
from tests.support import accounts
from tests.support.http import Browser

pytestmark = [pytest.mark.server, pytest.mark.replication]


def test_cli_commands_never_touch_a_replica(replication, replicated_tables):
    # A replica URL where nothing listens: a command that went there would fail.
    nowhere = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/myapp"
    result = run_flask("seed-users", "--count", "3", database_url=replication.primary_url,
                       env={"DATABASE_REPLICA_URL": nowhere})
    assert result.returncode == 0, result.stderr
    assert "replica" not in result.stdout + result.stderr
    assert replicated_tables.scalar("SELECT count(*) FROM users") == 3


@pytest.fixture(scope="module")
def two_replicas():
    with Replication(replicas=2) as servers:
        accounts.insert_standard_accounts_into(servers.primary_url)
        servers.wait_until_replayed()
        yield servers


def test_reads_spread_over_replicas_and_one_down_leaves_the_other(two_replicas):
    first, second = two_replicas.replicas
    with app_server(two_replicas) as server:
        reader = Browser(server.url, role=Role.VIEWER)
        before = [two_replicas.settled_transactions(r) for r in (first, second)]
        for _ in range(30):
            assert reader.get("/users").status_code == 200
        spread = [two_replicas.settled_transactions(r) - b for r, b in zip((first, second), before)]
        # 30 pages, each read (with its pre-ping) on the replicas in turn,
        # per worker: both get a share.
        assert all(count >= 2 for count in spread), spread

        first.stop()
        second_before = two_replicas.settled_transactions(second)
        for _ in range(30):
            assert reader.get("/users").status_code == 200
        # Each worker's first read after the stop may still pick the stopped
        # replica (its health is a second old): that read fails and is read
        # again from the primary. Every other read is the second replica's.
        assert two_replicas.settled_transactions(second) - second_before >= 2 * (30 - 2)
        health = reader.get("/healthz").json()
        assert health["replica"] == "ok"  # one replica still serves reads
