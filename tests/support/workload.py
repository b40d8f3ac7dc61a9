"""Mixed traffic for the fault scenarios, and the check that no write was lost.

:func:`run_load` drives a server with N browser-like clients (one thread
each, own cookies and CSRF token) until a request budget is spent or it is
told to stop, and keeps one :class:`Result` per request — including the
requests that got no HTTP answer at all (connection refused or reset).
:func:`check_writes` then compares what the server *acknowledged* (a 303
after a create) with what the database holds.
"""

from __future__ import annotations

import html
import random
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass

import requests
import urllib3
from sqlalchemy import text

from tests.support.forms import extract_csrf_token
from tests.support.http import Browser

CREATED = re.compile(r"/users/(\d+)$")
VERSION_INPUT = re.compile(r'name="version"[^>]*value="(\d+)"')
DATABASE_UNAVAILABLE_PAGE = "The database could not handle this request right now"
SEARCH_TERMS = ["Demo", "load", "EXAMPLE", "User 1", "no-such-user", "%", "_"]
# Share of each kind of request in the mix.
MIX = {"list": 30, "search": 20, "detail": 20, "create": 20, "edit": 10}


@dataclass(frozen=True)
class Result:
    kind: str
    status: int | None  # None: no HTTP answer (refused, reset)
    started: float  # time.monotonic()
    elapsed: float
    created_id: int | None = None  # set on a 303-acknowledged create
    edited: bool = False  # a 303-acknowledged edit
    own_error_page: bool = True  # a 5xx answer is the site's own page, no internals
    error: str | None = None  # why there was no HTTP answer


def closed_before_any_answer(err: requests.ConnectionError) -> bool:
    """The server closed the connection without a byte of answer (a reset,
    or "Remote end closed connection without response")."""
    reason = err.args[0] if err.args else None
    return (isinstance(reason, urllib3.exceptions.ProtocolError) and len(reason.args) > 1
            and isinstance(reason.args[1], (ConnectionResetError, BrokenPipeError)))


class Client:
    """One simulated visitor.

    ``resend_when_closed``: like a browser, send a request once more when the
    server closed its kept-alive connection without answering. Only for a
    server that closes a connection unanswered just when it has read no
    request on it, as nginx does when a reload retires its old workers (any
    HTTP server closing an idle kept-alive connection races the client's
    next request on it); a gunicorn worker killed mid-request closes it
    unanswered too, after it may have written.
    """

    def __init__(self, base_url: str, seed: int, known_ids: list[int],
                 resend_when_closed: bool = False):
        self.resend_when_closed = resend_when_closed
        self.browser = Browser(base_url)
        self.rng = random.Random(seed)
        self.known_ids = known_ids
        self.token: str | None = None
        self.tag = secrets.token_hex(3)
        self.count = 0

    def request(self, kind: str) -> Result:
        started = time.monotonic()
        try:
            response = self._send(kind)
        except requests.RequestException as err:
            self.token = None  # a new connection may land on a new worker
            return Result(kind, None, started, time.monotonic() - started,
                          error=f"{type(err).__name__}: {err}")
        return self._result(kind, response, started)

    def _send(self, kind: str) -> requests.Response:
        try:
            return getattr(self, f"_{kind}")()
        except requests.ConnectionError as err:
            if not (self.resend_when_closed and closed_before_any_answer(err)):
                raise
        return getattr(self, f"_{kind}")()

    def _result(self, kind: str, response: requests.Response, started: float) -> Result:
        created_id = None
        if kind == "create" and response.status_code == 303:
            created_id = int(CREATED.search(response.headers["Location"]).group(1))
            self.known_ids.append(created_id)
        edited = kind == "edit" and response.status_code == 303
        own_page = True
        if response.status_code >= 500:
            body = response.text
            # The site's own page (not gunicorn's bare one), showing no internals.
            own_page = ('class="site-header"' in body and "Traceback" not in body
                        and "SELECT" not in body)
        return Result(kind, response.status_code, started, time.monotonic() - started,
                      created_id, edited, own_page)

    def _new_name(self) -> str:
        self.count += 1
        return f"{self.tag}-{self.count}"

    def _list(self):
        return self.browser.get("/users")

    def _search(self):
        return self.browser.get("/users", params={"q": self.rng.choice(SEARCH_TERMS)})

    def _detail(self):
        user_id = self.rng.choice(self.known_ids) if self.known_ids else 1
        return self.browser.get(f"/users/{user_id}")

    def _create(self):
        if self.token is None:
            # Every page reads the signed-in account, so while the database is
            # away even the form is a 503: that answer is this request's.
            form = self.browser.get("/users/new")
            if form.status_code != 200:
                return form
            self.token = extract_csrf_token(form.text)
        n = self._new_name()
        return self.browser.submit(
            "/users", {"name": f"Load {n}", "email": f"load-{n}@example.com"}, token=self.token
        )

    def _edit(self):
        """Open a user's edit form, then save a new name at the version it showed."""
        user_id = self.rng.choice(self.known_ids) if self.known_ids else 1
        form = self.browser.get(f"/users/{user_id}/edit")
        if form.status_code != 200:
            return form
        version = VERSION_INPUT.search(form.text).group(1)
        email = re.search(r'name="email"[^>]*value="([^"]*)"', form.text).group(1)
        return self.browser.submit(
            f"/users/{user_id}/edit",
            {"name": f"Edited {self._new_name()}", "email": html.unescape(email),
             "version": version},
            token=self.token or extract_csrf_token(form.text),
        )


class Load:
    """``clients`` threads sending the mix until ``total`` requests or ``stop()``."""

    def __init__(self, base_url: str, *, clients: int, total: int | None = None,
                 mix: dict[str, int] = MIX, known_ids: list[int] | None = None, seed: int = 1,
                 resend_when_closed: bool = False):
        self.total = total
        self.results: list[Result] = []
        self.known_ids = known_ids if known_ids is not None else []
        self._clients = [Client(base_url, seed + n, self.known_ids, resend_when_closed)
                         for n in range(clients)]
        # Each client signed in on creation, one after another; by the time
        # the last has, the first one's connection may have idled past
        # gunicorn's keep-alive (5 s) and been closed by the server, and
        # reusing it would fail. The load starts on fresh connections.
        for client in self._clients:
            client.browser.http.close()
        self._kinds = random.Random(seed).choices(list(mix), list(mix.values()), k=100_000)
        self._issued = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(c,), daemon=True)
                         for c in self._clients]

    def progress(self) -> float:
        return len(self.results) / self.total if self.total else 0.0

    def _next_kind(self) -> str | None:
        with self._lock:
            if self._stopped.is_set() or (self.total and self._issued >= self.total):
                return None
            kind = self._kinds[self._issued % len(self._kinds)]
            self._issued += 1
            return kind

    def _run(self, client: Client) -> None:
        while (kind := self._next_kind()) is not None:
            self.results.append(client.request(kind))

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> Load:
        self._stopped.set()
        return self.wait()

    def wait(self) -> Load:
        for thread in self._threads:
            thread.join()
        return self

    # --- what happened --------------------------------------------------------

    def statuses(self, results=None) -> Counter:
        return Counter(r.status for r in (self.results if results is None else results))

    def acknowledged_edits(self) -> int:
        return sum(r.edited for r in self.results)

    def acknowledged_ids(self) -> set[int]:
        return {r.created_id for r in self.results if r.created_id is not None}

    def server_errors(self, allowed: tuple[int, ...] = ()) -> list[Result]:
        """5xx answers other than ``allowed`` ones, and any 5xx not on the site's own page."""
        return [r for r in self.results if r.status is not None and r.status >= 500
                and (r.status not in allowed or not r.own_error_page)]


def wait_for(condition, timeout: float, interval: float = 0.05):
    """Poll ``condition()`` until it returns something truthy; return that, or None."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)  # polling a condition with a deadline


STORED_WRITES = text(
    "SELECT"
    " (SELECT array_agg(id) FROM users) AS user_ids,"
    # users without their create event, and create events without their user
    " (SELECT count(*) FROM users u WHERE NOT EXISTS (SELECT 1 FROM audit_events a"
    "   WHERE a.user_id = u.id AND a.action = 'create')) AS users_without_audit,"
    " (SELECT count(*) FROM audit_events a WHERE a.action = 'create' AND NOT EXISTS"
    "   (SELECT 1 FROM users u WHERE u.id = a.user_id)"
    "   AND NOT EXISTS (SELECT 1 FROM audit_events d WHERE d.user_id = a.user_id"
    "   AND d.action = 'delete')) AS audit_without_user,"
    " (SELECT count(*) FROM audit_events WHERE action = 'update') AS updates"
)


@dataclass(frozen=True)
class WriteCheck:
    acknowledged: int
    stored: int  # of the acknowledged ones
    users_in_db: int
    users_without_audit: int
    audit_without_user: int
    acknowledged_edits: int
    stored_edits: int  # update audit rows

    @property
    def consistent(self) -> bool:
        # An edit whose answer was lost may still have committed, so more
        # stored edits than acknowledged ones is fine; fewer is a lost write.
        return (self.acknowledged == self.stored and self.users_without_audit == 0
                and self.audit_without_user == 0
                and self.stored_edits >= self.acknowledged_edits)

    def figures(self) -> dict[str, int]:
        """Acknowledged against stored writes, for the report table."""
        return {
            "acknowledged_creates": self.acknowledged,
            "stored": self.stored,
            "acknowledged_edits": self.acknowledged_edits,
            "stored_edits": self.stored_edits,
        }


def check_writes(engine, load: Load) -> WriteCheck:
    """Every acknowledged write stored, and users and audit rows in agreement."""
    acknowledged = load.acknowledged_ids()
    with engine.connect() as conn:
        row = conn.execute(STORED_WRITES).one()
    in_db = set(row.user_ids or ())
    return WriteCheck(len(acknowledged), len(acknowledged & in_db), len(in_db),
                      row.users_without_audit, row.audit_without_user,
                      load.acknowledged_edits(), row.updates)
