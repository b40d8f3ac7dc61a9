"""Fixtures of the fault-injection suite: a TCP proxy in front of PostgreSQL,
and a real gunicorn server whose ``DATABASE_URL`` goes through it."""

from __future__ import annotations

import pytest

from harness.gunicorn import GunicornServer
from tests.support.proxy import TcpProxy


@pytest.fixture
def proxy():
    with TcpProxy() as proxy:
        yield proxy


@pytest.fixture
def proxied_url(database_url, proxy):
    """The test database, reached through ``proxy``."""
    return proxy.url_for(database_url)


@pytest.fixture
def start_server(proxied_url):
    """``start_server(workers=..., threads=..., env=...)``: gunicorn via the proxy."""
    servers = []

    def start(workers: int = 2, **kwargs) -> GunicornServer:
        server = GunicornServer(proxied_url, workers=workers, **kwargs)
        servers.append(server)
        server.__enter__()  # returns once every worker has been forked
        return server

    yield start
    for server in servers:
        server.stop()
