"""Start the real production server (gunicorn, gthread) for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from harness import PROJECT_ROOT

GUNICORN = Path(sys.executable).with_name("gunicorn")


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, never the same one twice in this process.

    gunicorn.conf.py sets ``reuse_port``, so two servers given one port would
    both start and split its connections instead of the second one failing.
    """
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


class GunicornServer:
    """``gunicorn -c gunicorn.conf.py wsgi:app`` on a free port, as operators run it.

    Use as a context manager; it waits until ``/healthz`` answers and the
    master has forked every worker (it spawns them one by one, so the first
    can answer before the last exists), and on exit stops the master
    (SIGTERM, graceful) and reaps every worker.
    """

    def __init__(
        self,
        database_url: str,
        *,
        workers: int = 2,
        threads: int = 4,
        extra_args: tuple[str, ...] = (),
        app_module: str = "wsgi:app",
        env: dict[str, str] | None = None,
        ready_timeout: float = 30.0,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="gunicorn-", suffix=".log", delete=False)
        self.ready_timeout = ready_timeout
        self.workers = workers
        self.command = [str(GUNICORN), "-c", "gunicorn.conf.py", *extra_args, app_module]
        self.env = {
            **os.environ,
            "DATABASE_URL": str(database_url),
            "PORT": str(self.port),
            "WEB_CONCURRENCY": str(workers),
            "GUNICORN_THREADS": str(threads),
            "SECRET_KEY": "end-to-end-test-key",
            **(env or {}),
        }
        self.env.pop("BIND", None)
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> GunicornServer:
        self.process = subprocess.Popen(
            self.command,
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_until_ready()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited early:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    if response.status == 200 and len(self.worker_pids()) == self.workers:
                        return
            except OSError:
                pass
            time.sleep(0.1)  # polling for readiness, not standing in for a result
        self.stop()
        raise RuntimeError(f"gunicorn did not become ready:\n{self.output()}")

    def worker_pids(self) -> list[int]:
        """PIDs of the master's current worker processes."""
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.process.pid)],
            capture_output=True, text=True, check=False,
        ).stdout
        return [int(pid) for pid in out.split()]

    def stop(self, timeout: float = 40.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        return self.process.returncode

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")
