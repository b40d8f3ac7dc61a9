"""The CPU observability costs a request, paired in one process:
``bench/run --observability`` (``--in-process-only``: this alone).

On a shared machine under load, two servers measured side by side with wrk
swing by a third from run to run, which drowns a cost of a few percent.
This measurement is paired instead: one process, one database, the same
request served alternately, one by one, by the app
*on* (the WSGI app as deployed, the instrumented engine, multiprocess
metric files, the JSON access line) and *off* (the bare Flask app, an engine
without instrumentation, gunicorn's plain text access line), each request
timed in this thread's CPU time. Every request is signed in as the
benchmark's editor (bench/signin.py's account, signed in through the login
form), and both variants' list page is checked to be the signed-in page
before any is timed. Neighbours' load then hits both
variants alike, pair by pair. What it leaves out is what both variants
share: gunicorn's HTTP parsing and sockets, which only make the real
relative cost smaller than measured here.
"""

from __future__ import annotations

import gc
import io
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from types import SimpleNamespace
from urllib.parse import urlencode

from bench import signin


def measure(url: str, rounds: int, per_round: int) -> dict:
    """Per scenario and variant, one CPU figure (ms per request) per round.

    A round serves ``per_round`` requests of each variant one by one, taking
    turns (which variant goes first alternates pair by pair), and times each
    request alone in this thread's CPU time. Both variants' figures of a
    round are then made of requests a few milliseconds apart, which is as
    close as one process can pair them: a neighbour's load, or the CPU clock
    it changes, lasts longer than a pair. (Until 2026-12-01 a round was a
    block of 50 requests of one variant, then 50 of the other: 65 ms or more
    between the two halves of a pair.)

    The garbage collector is off while a round is timed and collects between
    rounds: a collection falls on whichever request crosses its threshold,
    so with the variants taking turns each would pay for the other's
    garbage. What collecting costs *on* shows in the wrk figures instead.
    """
    with served(url) as (variants, scenarios):
        samples: dict[str, list[float]] = {}
        names = list(variants)
        for round_no in range(rounds):
            for scenario, (make_environ, expected) in scenarios.items():
                environs = {name: [make_environ() for _ in range(per_round)] for name in names}
                spent = dict.fromkeys(names, 0.0)
                gc.collect()
                gc.disable()
                try:
                    for i in range(per_round):
                        for name in names if (round_no + i) % 2 else names[::-1]:
                            variant = variants[name]
                            use(variant)
                            started = time.thread_time()
                            serve(variant, environs[name][i], expected)
                            spent[name] += time.thread_time() - started
                finally:
                    gc.enable()
                for name in names:
                    samples.setdefault(f"{scenario} / {name}", []).append(
                        round(spent[name] * 1000 / per_round, 4))
    return samples


@contextmanager
def served(url: str) -> Iterator[tuple[dict[str, SimpleNamespace], dict[str, tuple]]]:
    """The two variants, ``{"on": ..., "off": ...}``, and the scenarios,
    ``{"first page": (make_environ, expected status), "create": ...}``, of
    the app on the database ``url``, signed in and checked; metric files
    and the *off* engine are cleaned up on exit. Also bench/instructions.py's."""
    with ExitStack() as cleanup:
        # Multiprocess mode as under gunicorn: decided when prometheus_client
        # is first imported, which is below. Removed on the way out, also
        # when the set-up below fails.
        metrics_dir = cleanup.enter_context(
            tempfile.TemporaryDirectory(prefix="myapp-bench-metrics-"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        os.environ["DATABASE_URL"] = url
        os.environ.setdefault("SECRET_KEY", "bench")
        from gunicorn.config import Config
        from gunicorn.glogging import Logger
        from werkzeug.test import EnvironBuilder

        from myapp import create_app, db
        from myapp.observability.logs import GunicornLogger, json_formatter

        app = create_app()
        observed_engine = db.engine()
        plain_engine = db.build_engine(app.config, instrumented=False)
        cleanup.callback(plain_engine.dispose)
        variants = {
            "on": SimpleNamespace(wsgi=app.wsgi_app, engine=observed_engine,
                                  log=_access_logger(GunicornLogger, Config, "json", json_formatter)),
            "off": SimpleNamespace(wsgi=app.wsgi_app.wsgi_app, engine=plain_engine,
                                   log=_access_logger(Logger, Config, "text", None)),
        }

        cookie = _signed_in_cookie(app.wsgi_app, EnvironBuilder)
        token = signin.csrf_token(_call(app.wsgi_app, EnvironBuilder, "/users/new", cookie)[1])
        run = f"{os.getpid()}-{time.time_ns()}"
        counter = iter(range(10**9))

        def list_page():
            return EnvironBuilder(path="/users", headers={"Cookie": cookie}).get_environ()

        def create():
            n = next(counter)
            body = urlencode({"name": f"Bench {n}", "email": f"cpu-{run}-{n}@example.com",
                              "csrf_token": token})
            return EnvironBuilder(path="/users", method="POST", data=body,
                                  headers={"Cookie": cookie},
                                  content_type="application/x-www-form-urlencoded").get_environ()

        scenarios = {"first page": (list_page, 200), "create": (create, 303)}
        for name, variant in variants.items():
            use(variant)
            status, page, cookie_after = _call(variant.wsgi, EnvironBuilder, "/users", cookie)
            signin.check_list_page(f"in-process {name}", status, page)
            if cookie_after != cookie:
                raise RuntimeError(f"in-process {name}: /users sends a new session cookie")
        yield variants, scenarios


def use(variant: SimpleNamespace) -> None:
    """Serve the next requests with ``variant``'s engine."""
    from myapp import db

    db.Session.configure(bind=variant.engine)


def _access_logger(cls, config_cls, log_format, json_formatter):
    """A gunicorn logger whose access lines go, fully formatted, to memory."""
    os.environ["LOG_FORMAT"] = log_format
    cfg = config_cls()
    cfg.set("accesslog", "-")
    logger = cls(cfg)
    access = logging.Logger(f"bench.access.{log_format}")
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(json_formatter("bench") if json_formatter else logging.Formatter("%(message)s"))
    access.addHandler(handler)
    logger.access_log = access
    logger.stream = handler.stream
    return logger


def serve(variant, environ: dict, expected: int) -> None:
    """One request through ``variant``, its status checked, and its access line."""
    status_holder = []

    def start_response(status, headers, exc_info=None):
        status_holder.append((status, headers))

    started = time.perf_counter()
    body = b"".join(variant.wsgi(environ, start_response))
    status, headers = status_holder[0]
    if int(status[:3]) != expected:
        raise RuntimeError(f"{environ['PATH_INFO']}: {status}")
    if any(k.lower() == "location" and "/login" in v for k, v in headers):
        raise RuntimeError(f"{environ['PATH_INFO']}: sent to sign in")
    response = SimpleNamespace(status=status, headers=headers, sent=len(body))
    request = SimpleNamespace(headers=[])
    environ.setdefault("RAW_URI", environ["PATH_INFO"])
    variant.log.access(response, request, environ,
                       timedelta(seconds=time.perf_counter() - started))
    variant.log.stream.seek(0)
    variant.log.stream.truncate()


def _call(wsgi, environ_builder, path: str, cookie: str, method: str = "GET",
          data: str | None = None) -> tuple[int, str, str]:
    """(status, body, cookie to send next) of one request to ``wsgi``."""
    captured = []
    environ = environ_builder(
        path=path, method=method, data=data, headers={"Cookie": cookie} if cookie else {},
        content_type="application/x-www-form-urlencoded" if data else None).get_environ()
    body = b"".join(wsgi(environ, lambda status, headers, exc_info=None:
                         captured.append((status, headers))))
    status, headers = captured[0]
    set_cookie = next((v for k, v in headers if k.lower() == "set-cookie"), "")
    return int(status[:3]), body.decode(), set_cookie.split(";", 1)[0] or cookie


def _signed_in_cookie(wsgi, environ_builder) -> str:
    """The session cookie after signing in through the login form and
    loading /users, as bench/signin.py's ``signed_in_cookie`` does over HTTP
    (the first page with a form adds the CSRF secret to the session)."""
    _, page, cookie = _call(wsgi, environ_builder, "/login", "")
    body = urlencode({"csrf_token": signin.csrf_token(page), "email": signin.EMAIL,
                      "password": signin.PASSWORD})
    status, _, cookie = _call(wsgi, environ_builder, "/login", cookie, "POST", body)
    if status != 303:
        raise RuntimeError(f"in-process sign-in answered {status}")
    return _call(wsgi, environ_builder, "/users", cookie)[2]


def summarise(samples: dict[str, list[float]]) -> dict:
    """Per scenario: each variant's median round, and the cost of *on*: the
    median over rounds of that round's on / off. A round's two variants take
    turns request by request, so they share the machine's load; the median of the
    rounds' ratios is what bench/usual.py reports too."""
    result = {}
    for scenario in ("first page", "create"):
        on, off = samples[f"{scenario} / on"], samples[f"{scenario} / off"]
        result[scenario] = {
            "off_cpu_ms_median": round(statistics.median(off), 4),
            "on_cpu_ms_median": round(statistics.median(on), 4),
            "cost": round(statistics.median(a / b - 1 for a, b in zip(on, off)), 6),
            "on_runs": on, "off_runs": off,
        }
    return result
