"""gunicorn settings for myapp: threaded (gthread) workers sized from the
environment, see README "Configuration"."""

from myapp.config import gunicorn_bind, gunicorn_threads, gunicorn_workers

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


def post_fork(server, worker):
    # With preload_app the master built the app (and maybe opened pooled
    # connections) before forking: the worker must not reuse those sockets.
    from myapp import db

    db.dispose_inherited_pool()
