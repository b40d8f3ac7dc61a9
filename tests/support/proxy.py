"""A TCP proxy between the app and PostgreSQL that a test can break on purpose.

The fault tests never touch the shared PostgreSQL server: they point the
app's ``DATABASE_URL`` at this proxy instead and make the *path* to the
database fail.

* :meth:`TcpProxy.cut` closes every open connection, both ends, at once —
  what a network partition or a restarted database looks like to the app;
* :meth:`TcpProxy.refuse` / :meth:`TcpProxy.accept` — new connections are
  closed (with a TCP reset) as soon as they arrive, or let through again;
* :meth:`TcpProxy.set_latency` — every chunk of data, in either direction,
  is held back this many seconds before it is passed on;
* :meth:`TcpProxy.recording` — while set, every chunk a client sends is
  kept in :attr:`TcpProxy.sent`, in order: a client that waits for each
  answer (psycopg2 does) sends one chunk per round trip, so ``len(sent)``
  counts round trips and :func:`statements` names them.

Threads: one accepts; each connection has two pumps (one per direction).
"""

from __future__ import annotations

import socket
import struct
import threading
import time

UPSTREAM = ("127.0.0.1", 5432)
CHUNK = 64 * 1024


def _reset(sock: socket.socket) -> None:
    """Abort ``sock``: shut it down, then close it with a TCP RST.

    ``shutdown`` comes first because a plain ``close`` does not wake a pump
    thread blocked in ``recv`` on the same socket (Linux keeps it open).
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class TcpProxy:
    """Forward 127.0.0.1:<free port> to ``upstream``. Use as a context manager."""

    def __init__(self, upstream: tuple[str, int] = UPSTREAM):
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._refusing = False
        self._latency = 0.0
        self._closed = threading.Event()
        self.connections_made = 0  # accepted and forwarded, over the proxy's life
        self._recording = False
        self.sent: list[bytes] = []  # each chunk from a client while recording
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)

    # --- controls -------------------------------------------------------------

    def cut(self) -> int:
        """Close every existing connection; return how many there were."""
        with self._lock:
            pairs, self._pairs = self._pairs, set()
        for client, server in pairs:
            _reset(client)
            _reset(server)
        return len(pairs)

    def refuse(self) -> None:
        """From now on, new connections are reset as soon as they arrive."""
        self._refusing = True

    def accept(self) -> None:
        """Let new connections through again."""
        self._refusing = False

    def set_latency(self, seconds: float) -> None:
        """Delay every chunk forwarded, in both directions, by ``seconds``."""
        self._latency = seconds

    def recording(self, on: bool = True) -> None:
        """Start (clearing :attr:`sent`) or stop keeping what clients send."""
        with self._lock:
            if on:
                self.sent = []
            self._recording = on

    def url_for(self, database_url):
        """``database_url`` (a SQLAlchemy URL) reached through this proxy over TCP."""
        return database_url.set(host="127.0.0.1", port=self.port, username="root")

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    # --- life -------------------------------------------------------------------

    def start(self) -> TcpProxy:
        self._acceptor.start()
        return self

    def close(self) -> None:
        self._closed.set()
        try:  # wakes the acceptor blocked in accept(); close() alone would not
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self.cut()
        self._acceptor.join(timeout=5)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # --- machinery ------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # listener closed
            if self._refusing:
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                _reset(client)
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = (client, server)
            with self._lock:
                self._pairs.add(pair)
                self.connections_made += 1
            for source, target in ((client, server), (server, client)):
                threading.Thread(
                    target=self._pump, args=(pair, source, target), daemon=True
                ).start()

    def _pump(self, pair, source: socket.socket, target: socket.socket) -> None:
        try:
            while True:
                data = source.recv(CHUNK)
                if not data:
                    break
                if self._recording and source is pair[0]:
                    with self._lock:
                        self.sent.append(data)
                if self._latency:
                    time.sleep(self._latency)  # the injected fault itself
                target.sendall(data)
        except OSError:
            pass  # cut, or the other side went away
        finally:
            with self._lock:
                was_open = pair in self._pairs
                self._pairs.discard(pair)
            if was_open:
                # One side finished: end the other too, as a real link would.
                for sock in pair:
                    _reset(sock)


def statements(chunks: list[bytes]) -> list[str]:
    """What each chunk asked of the server, for reading a round-trip count:
    the SQL of a simple-protocol query (``Q`` message, all psycopg2 sends),
    else the message's type letter."""
    names = []
    for chunk in chunks:
        if chunk[:1] == b"Q":
            names.append(chunk[5:].rstrip(b"\0").decode("utf-8", "replace"))
        else:
            names.append(f"<{chunk[:1].decode('latin-1')} message>")
    return names
