"""Settings read from the environment once, validated, and handed to Flask.

Every knob of the contract lives here so an operator can read one file to
know what can be configured. Values are checked at start-up: a typo in
``DB_POOL_SIZE`` should stop the worker with a clear message, not surface as
a confusing error under load.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_DATABASE_URL = "postgresql+psycopg2:///myapp"
DEFAULT_STATEMENT_TIMEOUT_MS = 10_000
DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS = 30_000
DEFAULT_PING_AFTER_IDLE_MS = 1_000
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
# The limit as people read it: the import page and the 413 answer.
MAX_UPLOAD_TEXT = f"{MAX_UPLOAD_BYTES // 2**20} MB"
# What a multipart request carries besides the file: boundaries, part
# headers, the CSRF token. The request may be this much larger than the file
# limit, so that the file itself is what is held to it (views.import_users).
MULTIPART_OVERHEAD_BYTES = 64 * 1024
# The largest request body read (Flask's MAX_CONTENT_LENGTH), however framed.
MAX_BODY_BYTES = MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD_BYTES


class ConfigError(ValueError):
    """A setting in the environment is missing or malformed."""


def _int_from_env(name: str, default: int, minimum: int = 1, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, got {value}")
    return value


def _flag_from_env(name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be 1 or 0, got {raw!r}")


def _list_from_env(name: str) -> list[str]:
    """A comma-separated list; blanks around items are ignored."""
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def database_url() -> str:
    """``DATABASE_URL``, checked to be a PostgreSQL URL SQLAlchemy can read."""
    return _postgresql_url("DATABASE_URL", os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL)


def replica_urls() -> list[str]:
    """``DATABASE_REPLICA_URL``: none, one or several (comma-separated) replica URLs."""
    return [_postgresql_url("DATABASE_REPLICA_URL", url)
            for url in _list_from_env("DATABASE_REPLICA_URL")]


def _postgresql_url(name: str, raw: str) -> str:
    """``raw`` as the psycopg2 URL the app connects with.

    A bare ``postgresql://`` URL (what most tools print) means psycopg2 here:
    the driver the app installs. SQLAlchemy's own default for it is
    psycopg 3, which the app does not ship, so it is spelled out rather than
    left to fail at the first connection with an import error.
    """
    try:
        url = make_url(raw)
    except ArgumentError:
        # Not echoed: the value may hold a password.
        raise ConfigError(
            f"{name} is not a database URL; expected postgresql+psycopg2://USER@HOST:PORT/NAME"
        ) from None
    if url.get_backend_name() != "postgresql":
        raise ConfigError(f"{name} must be a PostgreSQL URL, not {url.get_backend_name()!r}")
    if url.drivername == "postgresql":
        return url.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    if url.get_driver_name() != "psycopg2":
        raise ConfigError(f"{name} must use the psycopg2 driver (postgresql+psycopg2://), "
                          f"not {url.get_driver_name()!r}")
    return raw


LOG_FORMATS = ("text", "json")


def log_format() -> str:
    """``LOG_FORMAT``: ``text`` (gunicorn's usual lines) or ``json`` (one object a line)."""
    value = (os.environ.get("LOG_FORMAT") or "text").strip()
    if value not in LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT must be text or json, got {value!r}")
    return value


def gunicorn_threads() -> int:
    """Threads per gunicorn worker; shared with gunicorn.conf.py so both agree."""
    return _int_from_env("GUNICORN_THREADS", 8)


def gunicorn_workers() -> int:
    """Worker processes, for gunicorn.conf.py."""
    return _int_from_env("WEB_CONCURRENCY", 2)


def gunicorn_bind() -> str:
    """The address gunicorn listens on: ``BIND``, else 127.0.0.1:``PORT``."""
    return os.environ.get("BIND") or f"127.0.0.1:{_int_from_env('PORT', 8000, maximum=65535)}"


def load_secret_key(instance_path: Path) -> str:
    """Return ``SECRET_KEY`` from the environment, else from ``instance/secret_key``.

    The key must be identical in every worker, or a CSRF token signed by one
    worker is rejected by the next. The first process to start writes the
    file; ``os.link`` publishes it atomically, so workers starting together
    either create it or read the finished file — never a half-written one.
    """
    from_env = os.environ.get("SECRET_KEY")
    if from_env:
        return from_env

    key_file = instance_path / "secret_key"
    if not key_file.exists():
        instance_path.mkdir(parents=True, exist_ok=True)
        draft = instance_path / f".secret_key.{os.getpid()}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        try:
            os.link(draft, key_file)
        except FileExistsError:
            pass  # another worker won the race; use its key
        finally:
            draft.unlink()
    return key_file.read_text().strip()


def from_environment(instance_path: Path, overrides: Mapping[str, Any] | None = None) -> dict:
    """The Flask config: environment variables, then ``overrides`` on top."""
    overrides = dict(overrides or {})
    threads = gunicorn_threads()
    settings = {
        "DATABASE_URL": database_url(),
        # 0: no pool in the app (NullPool), for use behind PgBouncer.
        "DB_POOL_SIZE": _int_from_env("DB_POOL_SIZE", threads, minimum=0),
        "DB_POOL_TIMEOUT": _int_from_env("DB_POOL_TIMEOUT", 5),
        # Server-side limits: a gthread worker has no request timeout of its
        # own, so PostgreSQL is what bounds a runaway query or a transaction
        # left open. `init-db` sets them on the app's role in its database
        # (myapp/role_settings.py), so they also hold through PgBouncer.
        "DB_STATEMENT_TIMEOUT_MS": _int_from_env(
            "DB_STATEMENT_TIMEOUT_MS", DEFAULT_STATEMENT_TIMEOUT_MS
        ),
        "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS": _int_from_env(
            "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS
        ),
        "DB_CONNECT_TIMEOUT": _int_from_env("DB_CONNECT_TIMEOUT", 3),
        # A pooled connection idle longer than this is pinged (one round
        # trip) before a request gets it; 0: before every request
        # (myapp/idle_ping.py says why not every time).
        "DB_PING_AFTER_IDLE_MS": _int_from_env(
            "DB_PING_AFTER_IDLE_MS", DEFAULT_PING_AFTER_IDLE_MS, minimum=0
        ),
        # Streaming replicas GET/HEAD pages read from (myapp/replicas.py);
        # one further behind than DB_REPLICA_MAX_LAG_S seconds is bypassed.
        "DATABASE_REPLICA_URLS": replica_urls(),
        "DB_REPLICA_MAX_LAG_S": _int_from_env("DB_REPLICA_MAX_LAG_S", 10),
        # How long a migration statement may wait for a lock before it fails
        # (docs/migrations.md): while it waits, every request that needs the
        # same table queues behind it.
        "MIGRATION_LOCK_TIMEOUT_MS": _int_from_env("MIGRATION_LOCK_TIMEOUT_MS", 2_000),
        "LOG_FORMAT": log_format(),
        # A request slower than this is logged at WARNING with its SQL figures
        # (0: every request, for a while of debugging).
        "SLOW_REQUEST_MS": _int_from_env("SLOW_REQUEST_MS", 1000, minimum=0),
        "MAX_CONTENT_LENGTH": MAX_BODY_BYTES,
        # Werkzeug caps non-file fields at 500 kB by default; pasted CSV may
        # be as large as an uploaded file.
        "MAX_FORM_MEMORY_SIZE": MAX_UPLOAD_BYTES,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": os.environ.get("SESSION_COOKIE_SECURE", "") == "1",
        # CSRF tokens are not single-use; they expire after this many seconds.
        "WTF_CSRF_TIME_LIMIT": 3600,
        # Behind a reverse proxy (nginx): trust its X-Forwarded-* headers,
        # for exactly one hop (myapp/proxy.py). Off when clients reach
        # gunicorn directly, or anyone could claim any address and scheme.
        "BEHIND_PROXY": _flag_from_env("BEHIND_PROXY"),
        # Host names the app answers to; any other Host is a 400 (Flask's
        # TRUSTED_HOSTS). Empty: any host (a server reached only directly).
        "TRUSTED_HOSTS": _list_from_env("TRUSTED_HOSTS") or None,
    }
    settings.update(overrides)
    if "SECRET_KEY" not in settings:
        settings["SECRET_KEY"] = load_secret_key(instance_path)
    return settings
