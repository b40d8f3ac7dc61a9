"""Slow clients (slowloris and friends) and the normal visitors they starve,
against a server on 127.0.0.1 only."""

from __future__ import annotations

import http.client
import socket
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

# What each kind of attacker sends, then it sends nothing more and holds the
# connection open. gunicorn has no time limit on reading a request's headers
# or body once a first byte came, so trickling more bytes (one header line
# every few seconds, 10 bytes a second) would hold a thread no differently.
OPENINGS = {
    "slowloris": b"GET /users HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1\r\n",  # headers never end
    "slow POST body": (b"POST /users HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       b"Content-Type: application/x-www-form-urlencoded\r\n"
                       b"Content-Length: 100000\r\n\r\nname=sl"),  # body never ends
    "idle": b"",  # connects, sends nothing
}


class SlowClients:
    """``count`` connections that each send ``OPENINGS[kind]`` and hold on;
    all closed on exit (the attackers leave)."""

    def __init__(self, port: int, kind: str, count: int):
        self.port, self.opening, self.count = port, OPENINGS[kind], count
        self.sockets: list[socket.socket] = []

    def __enter__(self) -> SlowClients:
        for _ in range(self.count):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            sock.sendall(self.opening)
            self.sockets.append(sock)
        return self

    def __exit__(self, *exc) -> None:
        for sock in self.sockets:
            sock.close()


@dataclass
class Visits:
    """How ``count`` normal visitors, arriving at once, fared within ``timeout``."""

    count: int
    answered: list[float]  # seconds, for each visitor that got a 200
    # What each other visitor got instead: a status, or why there was none.
    failures: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        failed = f" (others: {', '.join(self.failures)})" if self.failures else ""
        if not self.answered:
            return f"0/{self.count}{failed}"
        return (f"{len(self.answered)}/{self.count}, median "
                f"{statistics.median(self.answered) * 1000:.0f} ms{failed}")


def visit(port: int, count: int, timeout: float, path: str = "/users",
          cookie: str | None = None) -> Visits:
    """``count`` concurrent ``GET path``, each given up after ``timeout`` seconds
    (sending ``cookie``, e.g. a signed-in session's, when given)."""

    def one(_) -> float | str:
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
            response = conn.getresponse()
            response.read()
            return time.monotonic() - started if response.status == 200 else str(response.status)
        except OSError as err:  # timed out (or refused): not answered
            return type(err).__name__
        finally:
            conn.close()

    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(one, range(count)))
    return Visits(count, [r for r in results if isinstance(r, float)],
                  [r for r in results if isinstance(r, str)])
