"""Request bodies however they are framed, against real gunicorn.

A body sent with ``Transfer-Encoding: chunked`` has no length up front; the
server decodes the chunks. These tests send the bytes themselves (see
tests/support/rawhttp.py), because the framing is the point: a body over the
limit is refused whole, a broken one is the client's error (400), and either
way nothing is written.
"""

from __future__ import annotations

import pytest

from harness.gunicorn import GunicornServer
from myapp.config import MAX_BODY_BYTES, MAX_UPLOAD_BYTES
from tests.support.database import assert_nothing_written
from tests.support.rawhttp import BROKEN_CHUNKS, SignedInForm, chunked, post

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(database_url):
    with GunicornServer(database_url, workers=1, threads=4) as server:
        yield server


@pytest.fixture
def form(server):
    return SignedInForm.open(server.url)


@pytest.fixture
def target(make_user):
    return make_user(name="Target", email="target@example.com").id


def csv_rows(count: int, padding: int = 0) -> str:
    """An import of ``count`` good rows, each padded with an ignored column."""
    return "name,email,note\n" + "".join(
        f"User {n},user{n}@example.com,{'x' * padding}\n" for n in range(count))


def test_a_chunked_import_over_the_limit_is_refused_whole(server, form, tables):
    """The hostile client's case: 6,500 rows, 6.1 MB, url-encoded, chunked.
    It used to be cut at the limit and answered 200 "created 5620, rejected 0"."""
    body = form.urlencoded([("csv", csv_rows(6_500, padding=900))])
    assert len(body) > MAX_BODY_BYTES
    for framing in ("length", "chunked"):  # one answer, however it is framed
        with assert_nothing_written(tables):
            response = post(server.port, "/users/import",
                            chunked(body) if framing == "chunked" else body,
                            cookie=form.cookie, framing=framing)
            assert response.status == 413, (framing, response.status, response.text[:300])


@pytest.mark.parametrize("path", ["/users", "/users/{id}/edit", "/users/{id}/delete"])
def test_every_form_refuses_a_chunked_body_over_the_limit(server, form, target, path, tables):
    """Valid fields first, padding last: cutting the body at the limit would
    leave a form that saves."""
    fields = [("name", "Changed"), ("email", "changed@example.com"), ("version", "1"),
              ("padding", "x" * MAX_BODY_BYTES)]
    with assert_nothing_written(tables):
        response = post(server.port, path.format(id=target), chunked(form.urlencoded(fields)),
                        cookie=form.cookie)
        assert response.status == 413, (response.status, response.text[:300])


def test_a_chunked_multipart_upload_over_the_limit_is_refused(server, form, tables):
    boundary = "B0undary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
            f'{form.token}\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="users.csv"\r\nContent-Type: text/csv\r\n\r\n').encode()
    body += csv_rows(7_000, padding=800).encode() + f"\r\n--{boundary}--\r\n".encode()
    with assert_nothing_written(tables):
        response = post(server.port, "/users/import", chunked(body), cookie=form.cookie,
                        content_type=f"multipart/form-data; boundary={boundary}")
        assert response.status == 413, (response.status, response.text[:300])


def test_a_chunked_body_under_the_limit_is_read_whole(server, form, tables):
    """Chunked framing itself is fine: every row of a 4.7 MB import arrives,
    in chunks of every size."""
    rows = 5_000
    body = form.urlencoded([("csv", csv_rows(rows, padding=900))])
    assert 4 * 1024 * 1024 < len(body) < MAX_UPLOAD_BYTES
    response = post(server.port, "/users/import", chunked(body, piece=7_777), cookie=form.cookie)
    assert response.status == 200, (response.status, response.text[:300])
    assert f"created {rows}, rejected 0" in " ".join(response.text.split())
    assert tables.counts() == (rows, rows)


def test_a_chunked_create_is_saved(server, form, tables):
    body = form.urlencoded([("name", "Chunked Ada"), ("email", "chunked@example.com")])
    response = post(server.port, "/users", chunked(body, piece=5), cookie=form.cookie)
    assert response.status == 303, (response.status, response.text[:300])
    assert tables.snapshot()["users"][0][1:3] == ("Chunked Ada", "chunked@example.com")


@pytest.mark.parametrize("path", ["/users", "/users/{id}/edit", "/users/{id}/delete",
                                  "/users/import"])
@pytest.mark.parametrize("breakage", list(BROKEN_CHUNKS))
def test_broken_chunked_framing_is_a_400_and_writes_nothing(
    server, form, target, path, breakage, tables
):
    fields = [("name", "Broken"), ("email", "broken@example.com"), ("version", "1"),
              ("csv", "name,email\nBroken,broken@example.com\n")]
    body = BROKEN_CHUNKS[breakage](form.urlencoded(fields))
    with assert_nothing_written(tables):
        # A client that stops mid-body hangs up its side, or the server would wait.
        response = post(server.port, path.format(id=target), body, cookie=form.cookie,
                        half_close=True)
        assert response.status == 400, (response.status, response.text[:300])
        assert "chunked" in response.text
    assert "Traceback" not in server.output()
