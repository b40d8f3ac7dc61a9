"""Scenario 5 — hostile input, through Flask's test client (fast, same code),
and, where the framing of the bytes matters, through real gunicorn.

Property-based: hypothesis throws random unicode, control characters, huge
values, missing and repeated fields, wrong methods and broken multipart at
every form and query string. Whatever comes in: no 5xx, no internals on the
page, no redirect off the site, and the database changes only when the
answer says the write succeeded. Runs are derandomized, so CI is
reproducible.
"""

from __future__ import annotations

import http.client
import io
import re
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import InternalServerError
from werkzeug.test import encode_multipart

from myapp.config import MAX_BODY_BYTES
from myapp.models import Role
from tests.support import fault_report
from tests.support.accounts import sign_in_test_client
from tests.support.database import Tables, assert_nothing_written
from tests.support.forms import csrf_token
from tests.support.rawhttp import BROKEN_CHUNKS, SignedInForm, chunked, post

# commits: the fuzzed paths name the target user /users/1, and only the
# TRUNCATE of committing tests restarts ids at 1.
pytestmark = [pytest.mark.faults, pytest.mark.commits]

FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    # Fixtures (the app, a target user) are set up once per test, on
    # purpose: the examples share them.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
)

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'
NASTY = [
    XSS, "\"'><svg/onload=alert(1)>", "javascript:alert(1)", "'; DROP TABLE users; --",
    "%", "_", "\\", "%00", "\x00", "\u202e", "\ufeff", "\ufffd", "a\u0301", "👩‍👩‍👧",
    "\r\nSet-Cookie: x=1", "{{ 7*7 }}", "{% raw %}", "//evil.example", "/users/../../etc/passwd",
    "1e9", "-1", "0", "9" * 40, " ", "",
]
text_value = st.one_of(
    st.text(max_size=120),  # any unicode (no lone surrogates: a browser cannot send them)
    st.text(st.characters(categories=["Cc", "Cf", "Zl", "Zp", "Mn", "So"]), max_size=12),
    st.sampled_from(NASTY),
    st.emails(),
    st.integers(100, 700_000).map(lambda n: "x" * n),  # huge, past the form size limit too
)
field_name = st.sampled_from(["name", "email", "version", "csrf_token", "q", "file", "csv",
                              "other", "name[]", ""])
# Missing, extra and repeated fields, in any order.
form_pairs = st.lists(st.tuples(field_name, text_value), max_size=6)
# Mostly valid users, so the success path (and its writes) is exercised too.
plausible_user = st.fixed_dictionaries({
    "name": st.text(min_size=1, max_size=110),
    "email": st.from_regex(r"[a-z0-9._+-]{1,20}@[a-z0-9-]{1,20}\.(com|org|io)", fullmatch=True)
    | st.emails(),
})

INTERNALS = re.compile(r"Traceback|File \"|sqlalchemy\.|psycopg2|werkzeug\.|Error:|\bSELECT\b")
OFF_SITE = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//|\\)", re.IGNORECASE)


def is_on_site(location: str) -> bool:
    return not OFF_SITE.match(location) or location.startswith("http://localhost/")


def assert_safe(response) -> None:
    """What every answer must be, whatever was sent."""
    assert_safe_answer(response.status_code, response.get_data(as_text=True),
                       response.headers.get("Location"))


def assert_safe_answer(status: int, body: str, location: str | None) -> None:
    assert status < 500, status
    assert not INTERNALS.search(body), INTERNALS.search(body)
    if location is not None:
        assert is_on_site(location), location


class Checked:
    """Send a request and hold it to the invariants, with before/after snapshots."""

    def __init__(self, app, tables: Tables):
        self.app, self.tables = app, tables
        self.statuses: dict[int, int] = {}

    def client(self, with_token: bool = True):
        client = sign_in_test_client(self.app.test_client(), Role.EDITOR)
        token = csrf_token(client) if with_token else None
        return client, token

    def snapshot(self):
        return self.tables.snapshot()

    def send(self, client, method: str, path: str, success: int | None = None, **kwargs):
        before = self.snapshot()
        response = client.open(path, method=method, **kwargs)
        assert_safe(response)
        if response.status_code != success:
            assert self.snapshot() == before, (method, path, response.status_code)
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        return response, before


@pytest.fixture(scope="module")
def snapshot_engine(database_url):
    """A pooled engine: two snapshots per example, without a connect each time."""
    engine = create_engine(database_url, pool_size=1)
    yield engine
    engine.dispose()


@pytest.fixture
def checked(app, snapshot_engine, request):
    checked = Checked(app, Tables(snapshot_engine))
    yield checked
    fault_report.record(f"5 hostile input: {request.node.name.removeprefix('test_')}",
                  statuses=dict(sorted(checked.statuses.items())))


@pytest.fixture
def target(make_user):
    """A user for the edit and delete forms to aim at."""
    return make_user(name="Target", email="t@example.com").id


# --- forms ---------------------------------------------------------------------


@FUZZ
@given(pairs=form_pairs, with_token=st.booleans(), user=st.none() | plausible_user)
def test_create_form(checked, pairs, with_token, user):
    client, token = checked.client()
    fields = MultiDict(pairs)
    if user:
        fields.update(user)
    if with_token:
        fields.setlist("csrf_token", [token])
    response, before = checked.send(client, "POST", "/users", success=303, data=fields)
    if response.status_code == 303:
        after = checked.snapshot()
        assert len(after["users"]) == len(before["users"]) + 1
        assert len(after["audit_events"]) == len(before["audit_events"]) + 1
        assert after["users"][-1][1] == fields["name"].strip()


@FUZZ
@given(user=plausible_user)
def test_create_form_with_plausible_values(checked, user):
    """Near the edge of valid (any unicode name, odd addresses): stored exactly
    as cleaned when accepted, nothing written when not."""
    client, token = checked.client()
    response, before = checked.send(client, "POST", "/users", success=303,
                                    data={**user, "csrf_token": token})
    if response.status_code == 303:
        stored = checked.snapshot()["users"][-1]
        assert stored[1:3] == (user["name"].strip(), user["email"].strip())


@FUZZ
@given(user=plausible_user)
def test_edit_form_with_plausible_values(checked, target, user):
    client, token = checked.client()
    version = checked.snapshot()["users"][0][-1]
    response, _ = checked.send(client, "POST", f"/users/{target}/edit", success=303,
                               data={**user, "version": str(version), "csrf_token": token})
    if response.status_code == 303:
        stored = checked.snapshot()["users"][0]
        assert stored[1:3] == (user["name"].strip(), user["email"].strip())
        assert stored[-1] in (version, version + 1)  # unchanged values save nothing


@FUZZ
@given(pairs=form_pairs, with_token=st.booleans(), user=st.none() | plausible_user,
       version=st.sampled_from(["current", "stale", "missing", "random"]), data=st.data())
def test_edit_form(checked, target, pairs, with_token, user, version, data):
    client, token = checked.client()
    fields = MultiDict(pairs)
    if user:
        fields.update(user)
    if version != "missing":
        current = checked.snapshot()["users"][0][-1]
        value = {"current": str(current), "stale": str(current - 1)}.get(version)
        fields.setlist("version", [value if value is not None else data.draw(text_value)])
    if with_token:
        fields.setlist("csrf_token", [token])
    checked.send(client, "POST", f"/users/{target}/edit", success=303, data=fields)


@FUZZ
@given(pairs=form_pairs, with_token=st.booleans(),
       user_id=st.sampled_from(["1", "2", "0", "-1", "abc", "9" * 30, "1.5", "%20"]))
def test_delete_form(checked, target, pairs, with_token, user_id):
    client, token = checked.client()
    fields = MultiDict(pairs)
    if with_token:
        fields.setlist("csrf_token", [token])
    checked.send(client, "POST", f"/users/{user_id}/delete", success=303, data=fields)


csv_text = st.one_of(
    st.text(max_size=300),
    st.lists(st.tuples(text_value, text_value), max_size=8).map(
        lambda rows: "name,email\n" + "\n".join(f"{a},{b}" for a, b in rows)),
    st.sampled_from(["name,email", "email,name\nx,y@example.com", "\ufeffname,email\na,a@b.co",
                     'name,email\n"unterminated,x@example.com', "name,email,extra\na,b,c"]),
)


@FUZZ
@given(csv=csv_text, upload=st.none() | st.binary(max_size=2000) | csv_text.map(str.encode),
       filename=st.sampled_from(["users.csv", "", "../../etc/passwd", "a\x00b.csv", "ü.csv"]),
       with_token=st.booleans())
def test_import_form(checked, csv, upload, filename, with_token):
    client, token = checked.client()
    data = {"csv": csv}
    if upload is not None:
        data["file"] = (io.BytesIO(upload), filename)
    if with_token:
        data["csrf_token"] = token
    checked.send(client, "POST", "/users/import", success=200, data=data,
                 content_type="multipart/form-data")


# --- broken bodies, methods, query strings -------------------------------------------


# The answer that says a POST wrote something (the target user has id 1).
SUCCESS = {"/users": 303, "/users/import": 200, "/users/1/edit": 303, "/users/1/delete": 303}


@FUZZ
@given(
    path=st.sampled_from(list(SUCCESS)),
    body=st.one_of(
        st.binary(max_size=500),
        st.builds(lambda head, tail, cut: (head + tail)[:cut],
                  st.sampled_from([b"--B\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n",
                                   b"--B\r\nContent-Disposition: form-data; name=\"file\"; "
                                   b"filename=\"a.csv\"\r\nContent-Type: text/csv\r\n\r\n",
                                   b"--B\r\n\r\n", b"--B--\r\n"]),
                  st.binary(max_size=200), st.integers(0, 300)),
    ),
    terminated=st.booleans(),
    content_type=st.sampled_from(["multipart/form-data; boundary=B", "multipart/form-data",
                                  "multipart/form-data; boundary=", "application/x-www-form-urlencoded",
                                  "text/plain", "application/json"]),
    with_token=st.booleans(),
)
def test_broken_bodies(checked, target, path, body, content_type, terminated, with_token):
    client, token = checked.client()
    if terminated:  # well-formed around the garbage, so parsing gets further
        body += b"\r\n--B--\r\n"
    if with_token:  # put a valid token in front, so parsing goes past the CSRF check
        body = (f'--B\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
                .encode() + body)
    checked.send(client, "POST", path, success=SUCCESS[path], data=body, content_type=content_type)


# --- chunked framing, through real gunicorn ----------------------------------------

CHUNKED_FUZZ = settings(FUZZ, max_examples=60)
URLENCODED = "application/x-www-form-urlencoded"


@pytest.fixture
def live(start_server):
    """Real gunicorn, and a visitor's session cookie and CSRF token for it
    (set up once per test: the examples share them)."""
    server = start_server(workers=1, threads=4)
    return server, SignedInForm.open(server.url)


@CHUNKED_FUZZ
@given(
    path=st.sampled_from(list(SUCCESS)),
    pairs=form_pairs.map(lambda pairs: [(k, v) for k, v in pairs if len(v) < 50_000]),
    user=st.none() | plausible_user,
    with_token=st.booleans(),
    multipart=st.booleans(),
    framing=st.sampled_from(["well-formed", "broken", "over the limit"]),
    breakage=st.sampled_from(list(BROKEN_CHUNKS)),
    chunk_size=st.sampled_from([1, 5, 1000, 65536]),
)
def test_chunked_bodies(checked, live, target, path, pairs, user, with_token, multipart, framing,
                        breakage, chunk_size):
    """Every POST route, its form sent with ``Transfer-Encoding: chunked``:
    well-formed, it gets the answer the same body gets with a Content-Length;
    broken, a 400; over the limit, a 413 — and nothing written unless the
    answer says so."""
    server, form = live
    fields = MultiDict(pairs)
    if user:
        fields.update(user)
    if with_token:
        fields.setlist("csrf_token", [form.token])
    if framing == "over the limit":  # last, so a body cut at the limit would still be a form
        fields.add("padding", "x" * MAX_BODY_BYTES)
    if multipart:
        boundary, body = encode_multipart(fields)
        content_type = f"multipart/form-data; boundary={boundary}"
    else:
        body, content_type = urlencode(list(fields.items(multi=True))).encode(), URLENCODED
    framed = {"well-formed": lambda: chunked(body, piece=max(chunk_size, len(body) // 100)),
              "broken": lambda: BROKEN_CHUNKS[breakage](body),
              "over the limit": lambda: chunked(body)}[framing]()

    before = checked.snapshot()
    response = post(server.port, path, framed, cookie=form.cookie, content_type=content_type,
                    half_close=framing == "broken")
    assert_safe_answer(response.status, response.text, response.headers.get("Location"))
    checked.statuses[response.status] = checked.statuses.get(response.status, 0) + 1
    if response.status == SUCCESS[path] and framing == "well-formed":
        return
    assert checked.snapshot() == before, (framing, response.status)
    if framing == "broken":
        assert response.status == 400 and "chunked" in response.text, response.status
    elif framing == "over the limit":
        assert response.status == 413, response.status
    else:  # nothing changed since: the same body with a Content-Length must fare the same
        sized = post(server.port, path, body, cookie=form.cookie, content_type=content_type,
                     framing="length")
        assert sized.status == response.status, (sized.status, response.status)
        assert checked.snapshot() == before


# No "//..." paths here: the test client reads "//host/path" as a URL with a
# host name; test_no_open_redirect sends those to the real server instead.
# No "?" in a path: the query comes separately, and the test client refuses
# a request given both (ValueError, before anything reaches the app).
paths = st.sampled_from(["/", "/users", "/users/new", "/users/1", "/users/1/edit", "/users/import",
                         "/healthz", "/users/1/delete", "/static/style.css", "/nope",
                         "/users//new", "/users/1/", "/\\evil.example"])


@FUZZ
@given(method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
                               "TRACE", "PROPFIND"]),
       path=paths | st.text(max_size=40).filter(lambda s: "?" not in s)
                          .map(lambda s: "/" + s.lstrip("/")),
       query=st.lists(st.tuples(st.sampled_from(["q", "limit", "after", "next", "x", "q[]"]),
                                text_value.filter(lambda v: len(v) < 5000)), max_size=4))
def test_any_method_path_and_query(checked, target, method, path, query):
    client, _ = checked.client(with_token=False)
    checked.send(client, method, path, query_string=query)


# --- specific promises ----------------------------------------------------------


def test_xss_payloads_come_back_escaped(app, tables):
    client, token = Checked(app, tables).client()
    created = client.post("/users", data={"csrf_token": token, "name": XSS,
                                          "email": "xss@example.com"})
    assert created.status_code == 303
    pages = [
        client.get(created.headers["Location"]),  # detail (with the flash message)
        client.get("/users"),
        client.get("/users", query_string={"q": XSS}),
        client.get(created.headers["Location"] + "/edit"),
        client.post("/users", data={"csrf_token": token, "name": XSS, "email": XSS}),  # 422
        client.post("/users", data={"csrf_token": token, "name": XSS,
                                    "email": "XSS@example.com"}),  # 409
        client.post("/users/import", data={"csrf_token": token,
                                           "csv": f"name,email\n{XSS},bad\n{XSS},xss@example.com"}),
    ]
    for n, page in enumerate(pages):
        html = page.get_data(as_text=True)
        assert "<script>alert" not in html and "<img src=x" not in html, n
        if n < 6:  # these pages show the value back (the import report need not)
            assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img" in html, n


def test_every_post_route_requires_csrf(app, client, target, tables):
    client.get("/users/new")  # a session cookie, but no token sent
    post_routes = [re.sub(r"<id:\w+>", str(target), rule.rule)
                   for rule in app.url_map.iter_rules() if "POST" in rule.methods]
    assert len(post_routes) >= 4
    with assert_nothing_written(tables):
        for path in post_routes:
            for data in ({}, {"csrf_token": "forged"}, {"csrf_token": ""},
                         {"name": "Csrf", "email": "csrf@example.com", "version": "1",
                          "csv": "name,email\nCsrf,csrf@example.com"}):
                response = client.post(path, data=data)
                assert response.status_code == 400, (path, data)
                assert "CSRF token" in response.get_data(as_text=True), (path, data)


@pytest.mark.server
def test_no_open_redirect(start_server):
    """Against real gunicorn, with the paths sent byte for byte (the test
    client would read ``//host`` as a host name, not a path)."""
    server = start_server(workers=1, threads=2)
    for path in ["//evil.example", "//evil.example/", "//evil.example/users", "///evil.example",
                 "/\\evil.example", "/users//new", "//users//new", "/%2F%2Fevil.example",
                 "//evil.example/%2e%2e/users//new", "/users/1/", "/./users"]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read().decode()
        conn.close()
        assert response.status < 500 and not INTERNALS.search(body), path
        location = response.getheader("Location")
        if location:
            assert location.startswith(server.url + "/") or location.startswith("/"), location


def test_unhandled_error_page_shows_no_internals(app):
    """A bug (any exception) gets the site's own 500 page; details go to the log only."""
    with app.test_request_context("/users"):
        response = app.make_response(app.handle_exception(
            RuntimeError("SELECT password FROM secrets -- internal detail")))
    html = response.get_data(as_text=True)
    assert response.status_code == 500
    assert InternalServerError.description in html and "<html" in html
    assert "internal detail" not in html and "RuntimeError" not in html and "SELECT" not in html


def test_oversized_upload_is_refused_without_writing(app, tables):
    client, token = Checked(app, tables).client()
    big = b"name,email\n" + b"a,a@example.com\n" * (6 * 1024 * 1024 // 16)
    with assert_nothing_written(tables):
        response = client.post("/users/import", data={"csrf_token": token,
                                                      "file": (io.BytesIO(big), "big.csv")},
                               content_type="multipart/form-data")
        assert response.status_code == 413
        assert_safe(response)
