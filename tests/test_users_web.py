"""The pages and behaviours of the contract for creating, listing and showing users."""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta, timezone

import pytest
from jinja2 import nodes
from sqlalchemy import event, text

from myapp import db, listing, seeding, templating
from myapp.models import SEARCH_INDEX
from myapp.templating import timestamp
from tests.support.database import assert_nothing_written
from tests.support.forms import csrf_token, submit


# --- pages ---------------------------------------------------------------


def test_root_redirects_to_the_list(client):
    response = client.get("/")
    assert response.status_code in (301, 302, 303, 308)
    assert response.headers["Location"].endswith("/users")


def test_timestamps_read_in_utc_whatever_the_zone_they_come_in():
    paris = timezone(timedelta(hours=1))
    moment = datetime(2026, 3, 5, 0, 7, 9, 120000, tzinfo=paris)
    assert timestamp(moment) == (
        '<time datetime="2026-03-04T23:07:09.120000+00:00"'
        ' title="2026-03-04T23:07:09.120000+00:00">4 Mar 2026, 23:07 UTC</time>'
    )
    # A whole second has no fraction in ISO form: the time is still hours and minutes.
    assert timestamp(datetime(2026, 12, 31, 23, 59, tzinfo=timezone.utc)) == (
        '<time datetime="2026-12-31T23:59:00+00:00"'
        ' title="2026-12-31T23:59:00+00:00">31 Dec 2026, 23:59 UTC</time>'
    )


def test_the_list_shows_when_each_user_was_created(client, make_user):
    user = make_user(name="Dated", email="dated@example.com")
    html = client.get("/users").get_data(as_text=True)
    assert str(timestamp(user.created_at)) in html


def test_new_user_form_has_the_contract_fields(client):
    html = client.get("/users/new").get_data(as_text=True)
    assert 'action="/users"' in html and 'method="post"' in html
    for field in ('name="name"', 'name="email"', 'name="csrf_token"'):
        assert field in html
    assert '<label for="name">' in html and '<label for="email">' in html


def test_create_redirects_to_the_user_with_a_flashed_confirmation(client, tables):
    response = submit(client, "/users", {"name": "  Grace Hopper ", "email": " grace@example.com "})
    assert response.status_code == 303
    match = re.fullmatch(r".*/users/(\d+)", response.headers["Location"])
    assert match
    page = client.get(response.headers["Location"])
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "was created" in html and "Grace Hopper" in html and "grace@example.com" in html
    # Stored trimmed, with one audit row written in the same transaction.
    with tables.connect() as conn:
        user = conn.execute(text("SELECT id, name, email, version FROM users")).one()
        audit = conn.execute(text("SELECT user_id, action, detail FROM audit_events")).one()
    assert user == (int(match.group(1)), "Grace Hopper", "grace@example.com", 1)
    assert audit == (user.id, "create", {"name": "Grace Hopper", "email": "grace@example.com"})
    # The flash is shown once.
    assert "was created" not in client.get(response.headers["Location"]).get_data(as_text=True)


def test_detail_shows_times_and_history(client, make_user):
    user = make_user()
    html = client.get(f"/users/{user.id}").get_data(as_text=True)
    assert "Ada Lovelace" in html and "ada@example.com" in html
    assert "Created" in html and "Updated" in html
    assert 'class="history"' in html and "Created</span>" in html


@pytest.mark.parametrize("path", ["/users/999999", "/users/0", "/users/-1", "/users/abc",
                                  "/users/99999999999999999999999", "/no/such/page"])
def test_unknown_pages_are_404_pages(client, path):
    response = client.get(path)
    assert response.status_code == 404
    html = response.get_data(as_text=True)
    assert "Not Found" in html and "<html" in html and "Traceback" not in html


def test_wrong_method_is_a_405_page(client):
    response = client.delete("/users")
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    assert "Method Not Allowed" in response.get_data(as_text=True)


def test_healthz_reports_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok"}


# --- list, pagination, search -------------------------------------------


def make_people(make_user, count, name="Person"):
    for n in range(count):
        make_user(f"{name} {n}", f"{name.lower()}{n}@example.com")


def test_list_shows_newest_first_with_links(client, make_user):
    make_people(make_user, 3)
    html = client.get("/users").get_data(as_text=True)
    assert html.index("Person 2") < html.index("Person 1") < html.index("Person 0")
    assert re.search(r'href="/users/\d+"', html)
    assert "person0@example.com" in html


def test_the_list_shows_each_user_as_they_are_now(client, tables, make_user):
    # Rows are rendered once per distinct user and reused (templating.user_rows):
    # an edit, or a change made behind the app's back that leaves the version
    # alone, must never bring back a row as it was.
    user = make_user(name="Ada Lovelace", email="ada@example.com")
    assert "Ada Lovelace" in client.get("/users").get_data(as_text=True)
    edit_page = f"/users/{user.id}/edit"
    assert submit(client, edit_page, {"name": "Ada King", "email": "ada@example.com",
                                      "version": 1}).status_code == 303
    html = client.get("/users").get_data(as_text=True)
    assert "Ada King" in html and "Ada Lovelace" not in html
    tables.write("UPDATE users SET email = 'countess@example.com' WHERE id = :id", {"id": user.id})
    html = client.get("/users").get_data(as_text=True)
    assert "countess@example.com" in html and "ada@example.com" not in html


@pytest.fixture
def row_renders(app, monkeypatch) -> list[int]:
    """The ids of the users whose table row the row macro renders, in order."""
    row_macros = app.jinja_env.get_template(templating.USER_ROW_TEMPLATE).module
    renders = []
    render = row_macros.user_row
    monkeypatch.setattr(row_macros, "user_row",
                        lambda user, url: renders.append(user.id) or render(user, url))
    return renders


def render_rows_twice(app) -> tuple[list, str, str]:
    """The first page's users, and its rows rendered twice by ``user_rows``."""
    with app.test_request_context("/users"):
        users = listing.list_users(db.Session()).users
        user_rows = app.jinja_env.globals["user_rows"]
        return users, user_rows(users), user_rows(users)


def test_list_rows_are_reused_not_rendered_again(app, make_user, row_renders):
    make_people(make_user, 3)
    users, first, again = render_rows_twice(app)
    assert first == again and first.count("<tr>") == 3
    assert sorted(row_renders) == sorted(user.id for user in users)  # each once, the first time


def test_a_cached_row_reads_nothing_but_its_user_and_url(app):
    # A row is reused for every visitor (templating.user_rows): anything from
    # the request, the session or the signed-in account in its template would
    # show the first visitor's to everyone.
    source = app.jinja_env.loader.get_source(app.jinja_env, templating.USER_ROW_TEMPLATE)[0]
    names_read = {name.name for name in app.jinja_env.parse(source).find_all(nodes.Name)
                  if name.ctx == "load"}
    assert names_read == {"user", "users_url"}


def test_rows_are_rendered_afresh_when_templates_reload(app, make_user, row_renders, monkeypatch):
    # flask run --debug: an edit of the row template shows on the next page.
    make_people(make_user, 2)
    monkeypatch.setattr(app.jinja_env, "auto_reload", True)
    users, first, again = render_rows_twice(app)
    assert first == again and len(row_renders) == 2 * len(users) == 4


def test_only_user_snapshots_key_a_cached_row(app):
    # An ORM User would hash the same after a change: never a cache key.
    with app.test_request_context("/users"), pytest.raises(TypeError):
        app.jinja_env.globals["user_rows"]([("not", "a", "snapshot")])


def test_list_is_empty_friendly(client):
    html = client.get("/users").get_data(as_text=True)
    assert "No users yet" in html
    assert 'rel="next"' not in html


def _ids(html):
    return [int(i) for i in re.findall(r'<a href="/users/(\d+)"', html)]


def test_keyset_pages_walk_every_user_once(client, make_user):
    make_people(make_user, 7)
    seen, url = [], "/users?limit=3"
    while url:
        html = client.get(url).get_data(as_text=True)
        seen += _ids(html)
        match = re.search(r'<a rel="next" href="([^"]+)"', html)
        url = match.group(1).replace("&amp;", "&") if match else None
    assert seen == sorted(seen, reverse=True)
    assert len(seen) == len(set(seen)) == 7


def test_default_page_is_50_and_limit_is_clamped(client, make_user):
    make_people(make_user, 205)
    assert len(_ids(client.get("/users").get_data(as_text=True))) == 50
    assert len(_ids(client.get("/users?limit=500").get_data(as_text=True))) == 200
    assert len(_ids(client.get("/users?limit=0").get_data(as_text=True))) == 1
    assert len(_ids(client.get("/users?limit=-4").get_data(as_text=True))) == 1


@pytest.mark.parametrize("query", ["limit=abc", "limit=1.5", "after=xyz", "after=%00", "limit=--5",
                                   "after=" + "9" * 5000, "limit=%2B3", "limit=1e3",
                                   "limit=%D9%A3", "q=%00", "q=" + "x" * 255])
def test_nonsense_query_arguments_are_400_pages(client, query):
    response = client.get(f"/users?{query}")
    assert response.status_code == 400
    assert "Bad Request" in response.get_data(as_text=True)


def test_huge_cursor_is_harmless(client, make_user):
    make_people(make_user, 2)
    response = client.get("/users?after=999999999999999999999999")
    assert response.status_code == 200
    assert len(_ids(response.get_data(as_text=True))) == 2


def test_search_matches_name_or_email_case_insensitively(client, make_user):
    make_user("Zoë Quinn", "zq@example.com")
    make_user("Bob", "BOBBY.QUINN@example.com")
    make_user("Carol", "carol@example.com")
    html = client.get("/users?q=quinn").get_data(as_text=True)
    assert "Zoë Quinn" in html and "BOBBY.QUINN@example.com" in html
    assert "Carol" not in html
    assert 'value="quinn"' in html  # the box keeps the query


def test_search_finds_a_user_by_a_whole_address_of_the_longest_length(client, make_user):
    address = "a" * 64 + "@" + ".".join(["b" * 63, "c" * 63, "d" * 57]) + ".com"
    assert len(address) == 254
    make_user("Long Address", address)
    make_user("Other", "other@example.com")
    response = client.get("/users", query_string={"q": address})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Long Address" in html and "Other" not in html
    assert 'maxlength="254"' in html  # the search box lets you type it


def test_search_treats_like_wildcards_literally(client, make_user):
    make_user("100% real", "pct@example.com")
    make_user("Plain", "plain@example.com")
    html = client.get("/users?q=%25").get_data(as_text=True)
    assert "100% real" in html and "Plain" not in html


def test_search_never_matches_across_name_and_email(client, make_user):
    make_user("Ann", "lee@example.com")
    for query in ("annlee", "ann lee", "ann\tlee"):
        response = client.get("/users", query_string={"q": query})
        assert response.status_code in (200, 400)
        assert "lee@example.com" not in response.get_data(as_text=True), query
    assert "lee@example.com" in client.get("/users?q=nn").get_data(as_text=True)
    assert "lee@example.com" in client.get("/users?q=e@ex").get_data(as_text=True)


def test_search_is_served_by_the_trigram_index(app, tables):
    """The query must use the very expression the index is built on, or every
    ``?q=`` reads the whole table — correct, and unusable at a million users."""
    statements = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    with app.app_context():
        seeding.seed_users(db.Session(), 20_000)  # ends with ANALYZE
        event.listen(db.engine(), "before_cursor_execute", capture)
        try:
            listing.list_users(db.Session(), search="1234")
        finally:
            event.remove(db.engine(), "before_cursor_execute", capture)
    [(statement, parameters)] = [(s, p) for s, p in statements if "ILIKE" in s]
    with tables.connect() as conn:
        plan = "\n".join(conn.exec_driver_sql("EXPLAIN " + statement, parameters).scalars())
    assert SEARCH_INDEX.name in plan, plan


def test_search_pages_keep_the_query(client, make_user):
    make_people(make_user, 4, name="Match")
    make_people(make_user, 3, name="Other")
    html = client.get("/users?q=match&limit=2").get_data(as_text=True)
    next_link = re.search(r'<a rel="next" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert "q=match" in next_link
    html = client.get(next_link).get_data(as_text=True)
    assert "Match" in html and "Other" not in html


# --- bad input: clear answer, nothing written -----------------------------

BAD_INPUTS = {
    "empty name": ({"name": "", "email": "a@example.com"}, "name"),
    "blank name": ({"name": "   \t ", "email": "a@example.com"}, "name"),
    "missing name": ({"email": "a@example.com"}, "name"),
    "long name": ({"name": "n" * 101, "email": "a@example.com"}, "name"),
    "NUL in name": ({"name": "a\x00b", "email": "a@example.com"}, "name"),
    "control char": ({"name": "bell\x07", "email": "a@example.com"}, "name"),
    "newline": ({"name": "two\nlines", "email": "a@example.com"}, "name"),
    "empty email": ({"name": "Ann", "email": ""}, "email"),
    "no at-sign": ({"name": "Ann", "email": "ann.example.com"}, "email"),
    "no domain dot": ({"name": "Ann", "email": "ann@localhost"}, "email"),
    "too short": ({"name": "Ann", "email": "a@"}, "email"),
    "too long": ({"name": "Ann", "email": "a" * 250 + "@example.com"}, "email"),
    "NUL in email": ({"name": "Ann", "email": "ann\x00@example.com"}, "email"),
    "spaces inside": ({"name": "Ann", "email": "an n@example.com"}, "email"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_invalid_input_is_422_with_the_message_beside_the_field(client, case, tables):
    data, bad_field = BAD_INPUTS[case]
    with assert_nothing_written(tables):
        response = submit(client, "/users", data)
        html = response.get_data(as_text=True)
        assert response.status_code == 422
        assert f'id="{bad_field}-error"' in html
        assert f'aria-describedby="{bad_field}-hint {bad_field}-error"' in html
        assert 'class="error-summary"' in html


def test_invalid_form_keeps_the_entered_values(client):
    response = submit(client, "/users", {"name": "Kept Name", "email": "not-an-email"})
    html = response.get_data(as_text=True)
    assert 'value="Kept Name"' in html and 'value="not-an-email"' in html


ARIA_INVALID = re.compile(r'<(?:input|textarea)[^>]*\bname="([^"]+)"[^>]*\baria-invalid="([^"]*)"|'
                          r'<(?:input|textarea)[^>]*\baria-invalid="([^"]*)"[^>]*\bname="([^"]+)"')


def aria_invalid_fields(html: str) -> dict[str, str]:
    """{field name: its aria-invalid value}, for the fields that carry one."""
    return {(a or d): (b or c) for a, b, c, d in ARIA_INVALID.findall(html)}


@pytest.mark.parametrize("path", ["/users/new", "/users/{id}/edit", "/users/import"])
def test_untouched_fields_are_not_marked_invalid(client, make_user, path):
    """WTForms writes a Python ``None`` as the text "None": aria-invalid="None"
    made screen readers announce fresh fields as invalid."""
    user = make_user()
    response = client.get(path.format(id=user.id))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "aria-invalid" not in html
    assert '"None"' not in html


def test_only_fields_with_errors_are_marked_invalid(client):
    response = submit(client, "/users", {"name": "Grace Hopper", "email": "grace@"})
    assert response.status_code == 422
    assert aria_invalid_fields(response.get_data(as_text=True)) == {"email": "true"}
    response = submit(client, "/users/import", {"csv": ""}, page="/users/import")
    assert response.status_code == 422
    assert aria_invalid_fields(response.get_data(as_text=True)) == {"file": "true"}


def test_taken_email_is_409_in_any_letter_case(client, tables, make_user):
    make_user("First", "taken@example.com")
    with assert_nothing_written(tables):
        response = submit(client, "/users", {"name": "Second", "email": "TAKEN@Example.com"})
        assert response.status_code == 409
        html = response.get_data(as_text=True)
        assert "already exists" in html and 'value="Second"' in html


def test_missing_or_wrong_csrf_token_is_400_and_writes_nothing(client, tables):
    data = {"name": "Mallory", "email": "mallory@example.com"}
    with assert_nothing_written(tables):
        missing = client.post("/users", data=data)
        wrong = client.post("/users", data={**data, "csrf_token": "forged"})
        for response in (missing, wrong):
            assert response.status_code == 400
            assert "CSRF" in response.get_data(as_text=True)


def test_non_utf8_body_is_400_and_writes_nothing(client, tables):
    token = csrf_token(client)
    body = f"csrf_token={token}&name=Jos%E9&email=jose@example.com".encode()
    with assert_nothing_written(tables):
        response = client.post("/users", data=body, content_type="application/x-www-form-urlencoded")
        assert response.status_code == 400
        assert "UTF-8" in response.get_data(as_text=True)


def test_non_utf8_multipart_field_is_422_and_writes_nothing(client, tables):
    token = csrf_token(client)
    boundary = "b0undary"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{token}\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nJos\xe9\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\njose@example.com\r\n"
        f"--{boundary}--\r\n"
    ).encode("latin-1")
    with assert_nothing_written(tables):
        response = client.post("/users", data=body, content_type=f"multipart/form-data; boundary={boundary}")
        assert response.status_code == 422


def test_oversize_body_is_413_and_writes_nothing(client, tables):
    token = csrf_token(client)
    with assert_nothing_written(tables):
        response = client.post(
            "/users", data={"csrf_token": token, "name": "x" * (6 * 1024 * 1024), "email": "big@example.com"}
        )
        assert response.status_code == 413
        assert "Too Large" in response.get_data(as_text=True)


@pytest.mark.commits  # threads: each request on a connection of its own
def test_simultaneous_creates_of_one_email_give_one_user_and_409s(new_client, tables):
    """The race check-then-insert loses: both requests pass any check, the
    unique index decides, and the loser gets a 409 — never a 500."""
    clients = [new_client() for _ in range(8)]
    tokens = [csrf_token(c) for c in clients]
    barrier = threading.Barrier(len(clients))
    statuses = []

    def create(client, token):
        barrier.wait()
        response = client.post(
            "/users", data={"csrf_token": token, "name": "Racer", "email": "Race@Example.com"}
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=create, args=pair) for pair in zip(clients, tokens)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [303] + [409] * 7
    assert tables.counts() == (1, 1)


# --- headers, cookies, secret key -----------------------------------------


@pytest.mark.parametrize("path", ["/users", "/users/new", "/healthz", "/nope", "/static/style.css"])
def test_security_headers_on_every_response(client, path):
    headers = client.get(path).headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp


@pytest.mark.parametrize("path", ["/users", "/users?q=ada", "/users/new", "/users/{id}",
                                  "/users/{id}/edit", "/users/import", "/healthz", "/nope"])
def test_dynamic_pages_are_never_stored_by_a_cache(client, make_user, path):
    """They show people's names and addresses, and soon only to who signed in."""
    user = make_user()
    assert client.get(path.format(id=user.id)).headers.get("Cache-Control") == "no-store"


def test_answers_to_a_post_are_never_stored_by_a_cache(client):
    for fields in ({"name": "Ada", "email": "ada@example.com"}, {"name": "", "email": "x"}):
        response = submit(client, "/users", fields)
        assert response.status_code in (303, 422)
        assert response.headers.get("Cache-Control") == "no-store", response.status_code


def test_static_files_stay_cacheable(client):
    response = client.get("/static/style.css")
    assert response.status_code == 200
    assert "no-store" not in response.headers.get("Cache-Control", "")
    assert response.headers.get("ETag")  # revalidated, not fetched again


def test_session_cookie_is_httponly_and_samesite_lax(client):
    client.get("/users/new")  # the CSRF token lives in the session
    cookie = client.get_cookie("session")
    assert cookie is not None
    assert cookie.http_only and cookie.same_site == "Lax"


def test_pages_have_no_inline_script_or_style(client, make_user):
    user = make_user()
    for path in ("/users", "/users/new", f"/users/{user.id}", "/nope"):
        html = client.get(path).get_data(as_text=True)
        assert "<script>" not in html and " style=" not in html
        assert not re.search(r"\son[a-z]+=", html)


def test_user_text_is_escaped(client, make_user):
    make_user('<script>alert(1)</script>', "xss@example.com")
    html = client.get("/users").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_layout_links_follow_where_the_app_is_mounted(client, make_user):
    # The layout's URLs are built once per application root (templating.layout_url):
    # mounted under /app they carry the prefix, and the root's pages still do not.
    make_user()
    mounted = client.get("/users", base_url="http://localhost/app/").get_data(as_text=True)
    at_root = client.get("/users").get_data(as_text=True)
    for html, root in ((mounted, "/app"), (at_root, "")):
        assert re.search(rf'<link rel="stylesheet" href="{root}/static/style\.css\?v=[0-9a-f]{{12}}"', html)
        assert f'action="{root}/logout"' in html
        assert re.search(rf'<a href="{root}/users/[0-9]+">', html)


def test_layout_url_refuses_an_endpoint_relative_to_a_blueprint(app):
    # Its cache is keyed by the endpoint's name, not by the current blueprint.
    with app.test_request_context("/users"), pytest.raises(ValueError):
        templating.layout_url(".list_users")
