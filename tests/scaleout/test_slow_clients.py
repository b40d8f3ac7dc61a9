"""Slow clients against one instance directly and through nginx.

64 connections send a request header a byte at a time and 32 send a form
body a byte at a time, while 16 ordinary visitors load the list. Straight
at gunicorn, each slow connection can hold one of an instance's 8 threads;
through nginx, which reads the whole request before passing it on, they
cost the instances nothing. The test asserts the nginx side (every visitor
served); the figures of both are printed at the end and quoted in
docs/deployment.md.
"""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.faults import report

pytestmark = [pytest.mark.cluster, pytest.mark.server]

SLOW_HEADERS = 64
SLOW_BODIES = 32
VISITORS = 16
VISITOR_TIMEOUT = 5.0
TRICKLE_INTERVAL = 0.5  # one byte per connection this often


class SlowClients:
    """Connections that keep sending a request without ever finishing it."""

    def __init__(self, port: int):
        self.port = port
        self.sockets: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)

    def _open(self, first_bytes: bytes) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.sendall(first_bytes)
        self.sockets.append(sock)

    def __enter__(self) -> SlowClients:
        for _ in range(SLOW_HEADERS):
            self._open(b"GET /users HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        for _ in range(SLOW_BODIES):
            self._open(b"POST /users HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       b"Content-Type: application/x-www-form-urlencoded\r\n"
                       b"Content-Length: 100000\r\n\r\nname=")
        self._thread.start()
        return self

    def _trickle(self) -> None:
        while not self._stop.wait(TRICKLE_INTERVAL):
            for sock in self.sockets:
                try:
                    sock.send(b"a")
                except OSError:
                    pass  # the server gave up on it: that is its right

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.sockets:
            sock.close()


def visit(url: str) -> float | None:
    """Seconds a visitor waited for the list, or None if it got no answer in time."""
    started = time.monotonic()
    try:
        response = requests.get(f"{url}/users", timeout=VISITOR_TIMEOUT)
    except requests.RequestException:
        return None
    return time.monotonic() - started if response.status_code == 200 else None


def visitors(url: str) -> list[float | None]:
    with ThreadPoolExecutor(VISITORS) as pool:
        return list(pool.map(visit, [url] * VISITORS))


def figures(waits: list[float | None]) -> str:
    served = sorted(wait for wait in waits if wait is not None)
    slowest = f", slowest {served[-1]:.2f} s" if served else ""
    return f"{len(served)}/{len(waits)} served within {VISITOR_TIMEOUT:.0f} s{slowest}"


def test_slow_clients_hold_no_instance_thread_behind_nginx(cluster):
    direct_url = cluster.app_url(1)
    with SlowClients(cluster.app_port(1)):
        direct = visitors(direct_url)
    with SlowClients(cluster.ports["http"]):
        through_nginx = visitors(cluster.url)
    report.record(
        f"scale-out: {SLOW_HEADERS} slow-header + {SLOW_BODIES} slow-body connections,"
        f" {VISITORS} visitors (2 workers x 4 threads per instance)",
        direct_to_one_instance=figures(direct),
        through_nginx=figures(through_nginx),
    )
    assert all(wait is not None for wait in through_nginx), figures(through_nginx)
    # The instance attacked directly recovers once the slow clients leave.
    assert all(wait is not None for wait in visitors(direct_url))
