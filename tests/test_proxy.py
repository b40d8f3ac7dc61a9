"""Behind a proxy or not: BEHIND_PROXY (ProxyFix, one hop), TRUSTED_HOSTS,
static URLs with a content hash, and DB_POOL_SIZE=0 (NullPool)."""

from __future__ import annotations

import pytest
from sqlalchemy.pool import NullPool

from myapp import config, create_app, db
from myapp.auth.access import public
from myapp.models import Role
from tests.support import accounts


# An app built here binds the session registry to its own engine, outside
# the test's rolled-back transaction: tables are emptied instead.
pytestmark = pytest.mark.commits


@pytest.fixture
def make_app(app, database_url):
    """Build an app with other settings; afterwards the process's session
    registry is bound to the session-wide ``app``'s engine again (``init_app``
    rebinds it to the newest app's)."""
    shared_engine = db.engine()

    def make(**overrides):
        return create_app({"DATABASE_URL": database_url, "SECRET_KEY": "k", **overrides})

    yield make
    db.Session.remove()
    if db.engine() is not shared_engine:
        db.engine().dispose()
    db._engine = shared_engine
    db.Session.configure(bind=shared_engine)


def remote_and_scheme(app, headers) -> tuple[str, str, str]:
    seen = {}

    @app.get("/_seen")
    @public  # every view declares who may open it (myapp/auth/access.py)
    def _seen():
        from flask import request

        seen.update(addr=request.remote_addr, scheme=request.scheme, host=request.host)
        return ""

    app.test_client().get("/_seen", headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.1"})
    return seen["addr"], seen["scheme"], seen["host"]


FORWARDED = {"X-Forwarded-For": "203.0.113.9, 198.51.100.7", "X-Forwarded-Proto": "https",
             "X-Forwarded-Host": "myapp.example", "X-Forwarded-Port": "8443"}


def test_forwarded_headers_are_ignored_unless_behind_a_proxy(make_app):
    app = make_app()
    assert remote_and_scheme(app, FORWARDED) == ("10.0.0.1", "http", "localhost")


def test_behind_a_proxy_exactly_one_hop_is_believed(make_app):
    app = make_app(BEHIND_PROXY=True)
    # The last X-Forwarded-For entry is the one nginx wrote; earlier ones are
    # whatever the client claimed.
    assert remote_and_scheme(app, FORWARDED) == ("198.51.100.7", "https", "myapp.example:8443")


def test_a_host_outside_trusted_hosts_is_the_sites_400_page(make_app, inspect_engine):
    app = make_app(TRUSTED_HOSTS=["myapp.example"])
    client = app.test_client()
    response = client.get("/", headers={"Host": "evil.example"})
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert 'class="site-header"' in response.get_data(as_text=True)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    forged_post = client.post("/users", headers={"Host": "evil.example"},
                              data={"name": "X", "email": "x@example.com"})
    assert forged_post.status_code == 400
    assert client.get("/", headers={"Host": "myapp.example"}).status_code in (301, 302, 303)


@pytest.mark.parametrize(("raw", "expected"), [
    (None, False), ("0", False), ("1", True), ("yes", True)])
def test_behind_proxy_setting(tmp_path, monkeypatch, raw, expected):
    monkeypatch.setenv("SECRET_KEY", "x")
    if raw is None:
        monkeypatch.delenv("BEHIND_PROXY", raising=False)
    else:
        monkeypatch.setenv("BEHIND_PROXY", raw)
    assert config.from_environment(tmp_path)["BEHIND_PROXY"] is expected


def test_a_malformed_behind_proxy_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "x")
    monkeypatch.setenv("BEHIND_PROXY", "maybe")
    with pytest.raises(config.ConfigError, match="BEHIND_PROXY"):
        config.from_environment(tmp_path)


def test_trusted_hosts_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "x")
    monkeypatch.setenv("TRUSTED_HOSTS", " 127.0.0.1, localhost ,")
    assert config.from_environment(tmp_path)["TRUSTED_HOSTS"] == ["127.0.0.1", "localhost"]
    monkeypatch.delenv("TRUSTED_HOSTS")
    assert config.from_environment(tmp_path)["TRUSTED_HOSTS"] is None


def test_static_urls_carry_a_content_hash(make_app):
    app = make_app()
    client = accounts.sign_in_test_client(app.test_client(), Role.EDITOR)
    page = client.get("/users/new").get_data(as_text=True)
    assert "/static/style.css?v=" in page
    with app.test_request_context():
        from flask import url_for

        assert url_for("static", filename="no-such-file.css") == "/static/no-such-file.css"


def test_pool_size_zero_means_no_pool_in_the_app(make_app):
    app = make_app(DB_POOL_SIZE=0)
    assert isinstance(db.engine().pool, NullPool)  # the newest app's engine
    assert app.test_client().get("/healthz").status_code == 200
