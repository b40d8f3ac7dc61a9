"""gunicorn settings for myapp: threaded (gthread) workers sized from the
environment, see README "Configuration"."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# Metrics: prometheus_client's multiprocess mode, one directory per server.
# This must come before anything imports prometheus_client (myapp does),
# which picks per-process or multiprocess storage once, at import.
PRIVATE_METRICS_DIR = "MYAPP_PRIVATE_METRICS_DIR"  # "<master pid> <path>"


def _metrics_directory() -> str:
    """PROMETHEUS_MULTIPROC_DIR if the operator set it, else a private
    temporary directory of this master's, deleted when the master exits,
    also when a setting stops it at start-up. A config reload runs this
    file again in the same master: it keeps its own.
    A private directory named in an environment inherited from another
    process (one that read this file) is that process's: never shared."""
    chosen = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    owner, _, private = os.environ.get(PRIVATE_METRICS_DIR, "").partition(" ")
    if chosen and (chosen != private or owner == str(os.getpid())):
        return chosen
    private = tempfile.mkdtemp(prefix="myapp-metrics-")
    os.environ[PRIVATE_METRICS_DIR] = f"{os.getpid()} {private}"
    atexit.register(_remove_private_directory, os.getpid(), private)
    return private


def _remove_private_directory(master_pid: int, path: str) -> None:
    # Workers are forked with this handler registered; only the master removes.
    if os.getpid() == master_pid:
        shutil.rmtree(path, ignore_errors=True)


os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_directory()
metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
metrics_dir.mkdir(parents=True, exist_ok=True)

from myapp.config import gunicorn_bind, gunicorn_threads, gunicorn_workers, log_format  # noqa: E402

wsgi_app = "wsgi:app"
worker_class = "gthread"
workers = gunicorn_workers()
# Each thread gets its own scoped session; DB_POOL_SIZE defaults to this
# same number so every thread can hold a connection without waiting.
threads = gunicorn_threads()
bind = gunicorn_bind()

# Each worker opens its own listening socket (SO_REUSEPORT) and the kernel
# spreads new connections across them. With one shared socket, whichever
# worker wakes first accepts: under load one worker can end up holding 15 of
# 16 keep-alive connections while the other idles, halving throughput
# (bench/, docs/performance.md). The price: a second server started on the
# same port by the same user would share it silently instead of failing.
reuse_port = True

# What one request may make a worker hold while it reads the headers: 40
# fields (browsers send about 20, a proxy adds a few) of 8,190 bytes each,
# 330 kB instead of gunicorn's 100 fields (820 kB). Request line (4,094
# bytes) and field size stay gunicorn's own: the longest URL the app makes,
# a search of 254 four-byte characters, is about 3,100 bytes. None of this
# bounds *time*: slow clients need a buffering proxy (docs/reliability.md).
limit_request_fields = 40

accesslog = "-"
errorlog = "-"
# LOG_FORMAT (text | json) is checked here, at start-up; the logger class
# writes every line, gunicorn's and the app's, in that format, each with its
# request id. In text, the access line is gunicorn's usual one plus the id.
log_format()
logger_class = "myapp.observability.logs.GunicornLogger"
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %({x-request-id}o)s'
# On SIGTERM, in-flight requests get this long to finish.
graceful_timeout = 30
# Note: in a gthread worker this is a heartbeat, not a request time limit;
# slow queries are bounded by PostgreSQL's statement_timeout instead.
timeout = 30
keepalive = 5
# gunicorn 25+ opens a control socket shared by every server of this user;
# the app needs none, and two servers on one machine would collide on it.
control_socket_disable = True


def when_ready(server):
    # With reuse_port the master opens no socket of its own, which leaves
    # gunicorn's "Listening at:" line empty: say where the workers listen.
    server.log.info("Workers listen at: %s", ", ".join(f"http://{bind}" for bind in server.cfg.bind))


def on_starting(server):
    # DB_POOL_SIZE defaults to GUNICORN_THREADS, read by the app itself. A
    # --threads on gunicorn's command line would bypass it and leave threads
    # waiting for connections (then 503s), so it must agree.
    if server.cfg.threads != threads:
        raise RuntimeError(
            f"gunicorn --threads {server.cfg.threads} differs from GUNICORN_THREADS ({threads}),"
            " which also sizes the database pool: set GUNICORN_THREADS instead"
        )
    # Counts left by an earlier server in this directory must not be added
    # to this one's.
    from myapp.observability import multiprocess

    multiprocess.wipe(metrics_dir)


def post_fork(server, worker):
    # With preload_app the master built the app (and maybe opened pooled
    # connections) before forking: the worker must not reuse those sockets.
    from myapp import db

    db.dispose_inherited_pool()


def child_exit(server, worker):
    # Any worker exit (graceful, crash, SIGKILL): its live gauges go, its
    # counters are kept in one archive file per type, so totals neither
    # reset nor double, and files do not pile up as workers come and go.
    from myapp.observability import multiprocess

    multiprocess.retire_worker(worker.pid, metrics_dir)

