"""The contract's HTTP behaviour through nginx → 2 instances → PgBouncer (a
representative subset of tests/test_users_web.py and tests/test_import.py,
run against the cluster's URL), and what nginx adds: static files, its own
error pages, HTTPS with HSTS and a Secure cookie, and refusing forged hosts.
"""

from __future__ import annotations

import re

import pytest
import requests

from myapp.config import MAX_UPLOAD_BYTES, MULTIPART_OVERHEAD_BYTES
from myapp.models import Role
from tests.support import accounts
from tests.support.database import assert_nothing_written
from tests.support.http import Browser

pytestmark = [pytest.mark.cluster, pytest.mark.server]

SECURITY_HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options")


@pytest.fixture
def browser(cluster):
    return Browser(cluster.url)


def assert_security_headers_once(response: requests.Response) -> None:
    for name in SECURITY_HEADERS:
        # raw headers: a header added by both nginx and the app would be two lines
        assert len(response.raw.headers.getlist(name)) == 1, (name, response.headers)
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def site_page(response: requests.Response) -> bool:
    return 'class="site-header"' in response.text and "nginx" not in response.text


def test_root_redirects_to_the_list(browser):
    response = browser.get("/")
    assert response.status_code in (301, 302, 303)
    assert response.headers["Location"].endswith("/users")


def test_create_then_list_then_detail(browser, cluster_tables):
    created = browser.submit("/users", {"name": "Ada", "email": "ada@example.com"})
    assert created.status_code == 303
    location = created.headers["Location"]
    assert re.search(r"/users/\d+$", location)
    detail = browser.http.get(requests.compat.urljoin(browser.base_url, location), timeout=10)
    assert detail.status_code == 200 and "ada@example.com" in detail.text
    assert "created" in detail.text.lower()  # the flashed confirmation, across instances
    listing = browser.get("/users")
    assert listing.status_code == 200 and "ada@example.com" in listing.text
    assert_security_headers_once(listing)
    assert cluster_tables.counts() == (1, 1)


def test_invalid_input_is_422_and_writes_nothing(browser, cluster_tables):
    with assert_nothing_written(cluster_tables):
        response = browser.submit("/users", {"name": "", "email": "not-an-email"})
    assert response.status_code == 422
    assert 'value="not-an-email"' in response.text


def test_taken_email_is_409_in_any_letter_case(browser, cluster_tables):
    assert browser.submit("/users", {"name": "A", "email": "same@example.com"}).status_code == 303
    with assert_nothing_written(cluster_tables):
        response = browser.submit("/users", {"name": "B", "email": "SAME@example.com"})
    assert response.status_code == 409


def test_post_without_csrf_token_is_400_and_writes_nothing(browser, cluster_tables):
    with assert_nothing_written(cluster_tables):
        response = browser.http.post(f"{browser.base_url}/users",
                                     data={"name": "X", "email": "x@example.com"}, timeout=10)
    assert response.status_code == 400 and site_page(response)


def test_unknown_path_is_the_sites_404_page(browser):
    response = browser.get("/no/such/page")
    assert response.status_code == 404 and site_page(response)


def test_healthz_answers_json(browser):
    response = browser.get("/healthz")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"


def test_metrics_are_not_served_on_the_public_port(browser):
    assert browser.get("/metrics").status_code == 404


def test_import_through_nginx(browser, cluster_tables):
    token = browser.csrf_token("/users/import")
    csv = "name,email\nGood,good@example.com\nBad,not-an-email\n"
    response = browser.http.post(f"{browser.base_url}/users/import", timeout=30,
                                 data={"csrf_token": token},
                                 files={"file": ("users.csv", csv.encode(), "text/csv")})
    assert response.status_code == 200
    assert "created 1, rejected 1" in response.text
    assert cluster_tables.counts() == (1, 1)


def test_an_upload_over_the_limit_is_413_from_the_app(browser, cluster_tables):
    """Over 5 MB but within nginx's limit: nginx buffers it, the app refuses it."""
    token = browser.csrf_token("/users/import")
    body = b"name,email\n" + b"x" * MAX_UPLOAD_BYTES
    with assert_nothing_written(cluster_tables):
        response = browser.http.post(f"{browser.base_url}/users/import", timeout=60,
                                     data={"csrf_token": token},
                                     files={"file": ("big.csv", body, "text/csv")})
    assert response.status_code == 413 and site_page(response)


def test_a_body_beyond_nginx_limit_is_its_413_page(browser, cluster_tables):
    too_big = b"x" * (MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD_BYTES + 1)
    with assert_nothing_written(cluster_tables):
        response = browser.http.post(f"{browser.base_url}/users/import", data=too_big, timeout=60,
                                     headers={"Content-Type": "text/csv"})
    assert response.status_code == 413
    assert 'class="site-header"' in response.text  # the site's look, not nginx's page
    assert_security_headers_once(response)


def test_static_files_come_from_nginx_cached_and_gzipped(browser):
    page = browser.get("/users/new")
    stylesheet = re.search(r'href="(/static/style\.css\?v=[0-9a-f]+)"', page.text)
    assert stylesheet, "static URLs carry a content hash"
    response = browser.get(stylesheet.group(1), headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["Server"] == "nginx"
    assert response.headers["Content-Encoding"] == "gzip"
    assert "max-age=31536000" in response.headers["Cache-Control"]
    assert len(response.raw.headers.getlist("Cache-Control")) == 1
    assert_security_headers_once(response)


# --- hosts and forwarded headers ---------------------------------------------------


def test_a_forged_host_is_refused_by_nginx(browser):
    response = browser.get("/", headers={"Host": "evil.example"})
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert 'class="site-header"' in response.text


def test_a_forged_forwarded_host_cannot_steer_a_redirect(browser):
    """nginx replaces the client's X-Forwarded-* with its own."""
    for header in ("X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port"):
        response = browser.get("/", headers={header: "evil.example"})
        assert response.status_code in (301, 302, 303)
        assert "evil" not in response.headers["Location"]


def test_an_instance_refuses_a_host_outside_trusted_hosts(cluster):
    """Even reached directly, past nginx, an instance only answers to TRUSTED_HOSTS."""
    response = requests.get(f"{cluster.app_url(1)}/", headers={"Host": "evil.example"},
                            allow_redirects=False, timeout=10)
    assert response.status_code == 400
    assert "Location" not in response.headers and 'class="site-header"' in response.text


# --- HTTPS ---------------------------------------------------------------------------


class Https(requests.Session):
    """Trusts the cluster's self-signed certificate, made at its first start.

    Passed per request: requests lets REQUESTS_CA_BUNDLE in the environment
    override a session's own ``verify``.
    """

    def __init__(self, certificate: str):
        super().__init__()
        self.certificate = certificate

    def request(self, *args, **kwargs):
        kwargs.setdefault("verify", self.certificate)
        return super().request(*args, **kwargs)


@pytest.fixture
def https(cluster):
    return Https(str(cluster.dir / "tls" / "cert.pem"))


def test_https_has_hsts_and_a_secure_session_cookie(cluster, https):
    # The login form: a page anyone may open that puts its CSRF token in the session.
    response = https.get(f"{cluster.https_url}/login", timeout=10)
    assert response.status_code == 200
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie
    plain = requests.get(f"{cluster.url}/login", timeout=10)
    assert "Strict-Transport-Security" not in plain.headers
    assert "Secure" not in plain.headers["Set-Cookie"]


def post_form_over_https(cluster, https, page: str, action: str, data: dict) -> requests.Response:
    token_page = https.get(f"{cluster.https_url}{page}", timeout=10)
    assert token_page.status_code == 200, token_page.status_code
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', token_page.text).group(1)
    return https.post(f"{cluster.https_url}{action}", allow_redirects=False, timeout=10,
                      data={"csrf_token": token, **data},
                      headers={"Referer": f"{cluster.https_url}{page}"})


def test_a_form_posts_over_https(cluster, https, cluster_tables):
    """Flask-WTF checks the Referer on HTTPS against the request's own URL:
    ProxyFix must have given the app the client's scheme, host and port."""
    signed_in = post_form_over_https(cluster, https, "/login", "/login", {
        "email": accounts.EMAILS[Role.EDITOR], "password": accounts.PASSWORD})
    assert signed_in.status_code == 303, signed_in.text[:500]
    response = post_form_over_https(cluster, https, "/users/new", "/users",
                                    {"name": "Tls", "email": "tls@example.com"})
    assert response.status_code == 303, response.text[:500]
    assert cluster_tables.counts() == (1, 1)
