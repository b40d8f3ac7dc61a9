"""Settings from the environment, and the shared SECRET_KEY file."""

from __future__ import annotations

import stat
from concurrent.futures import ProcessPoolExecutor

import pytest

from myapp import config


def test_secret_key_file_is_created_once_with_mode_0600(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    first = config.load_secret_key(tmp_path)
    assert len(first) >= 32
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600
    assert config.load_secret_key(tmp_path) == first


def _load(path):
    return config.load_secret_key(path)


def test_workers_starting_together_agree_on_one_key(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with ProcessPoolExecutor(4) as pool:
        keys = list(pool.map(_load, [tmp_path] * 16))
    assert len(set(keys)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]


def test_secret_key_from_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "from-env")
    assert config.load_secret_key(tmp_path) == "from-env"
    assert not (tmp_path / "secret_key").exists()


def test_pool_size_defaults_to_the_threads(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "x")
    monkeypatch.setenv("GUNICORN_THREADS", "6")
    monkeypatch.delenv("DB_POOL_SIZE", raising=False)
    assert config.from_environment(tmp_path)["DB_POOL_SIZE"] == 6
    monkeypatch.setenv("DB_POOL_SIZE", "3")
    assert config.from_environment(tmp_path)["DB_POOL_SIZE"] == 3


def test_ping_after_idle_defaults_to_a_second_and_may_be_zero(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "x")
    monkeypatch.delenv("DB_PING_AFTER_IDLE_MS", raising=False)
    assert config.from_environment(tmp_path)["DB_PING_AFTER_IDLE_MS"] == 1000
    monkeypatch.setenv("DB_PING_AFTER_IDLE_MS", "0")
    assert config.from_environment(tmp_path)["DB_PING_AFTER_IDLE_MS"] == 0
    for bad in ("-1", "soon", "1.5"):
        monkeypatch.setenv("DB_PING_AFTER_IDLE_MS", bad)
        with pytest.raises(config.ConfigError, match="DB_PING_AFTER_IDLE_MS"):
            config.from_environment(tmp_path)


@pytest.mark.parametrize("value", ["abc", "0", "-1", "2.5"])
def test_malformed_numbers_are_refused_with_the_variable_named(tmp_path, monkeypatch, value):
    monkeypatch.setenv("SECRET_KEY", "x")
    monkeypatch.setenv("DB_POOL_TIMEOUT", value)
    with pytest.raises(config.ConfigError, match="DB_POOL_TIMEOUT"):
        config.from_environment(tmp_path)


@pytest.mark.parametrize("name, value", [
    ("WEB_CONCURRENCY", "abc"), ("WEB_CONCURRENCY", "0"), ("GUNICORN_THREADS", "two"),
    ("PORT", "eighty"), ("PORT", "0"), ("PORT", "70000"),
])
def test_gunicorn_settings_refuse_malformed_numbers_with_the_variable_named(monkeypatch, name, value):
    monkeypatch.delenv("BIND", raising=False)
    monkeypatch.setenv(name, value)
    with pytest.raises(config.ConfigError, match=name):
        config.gunicorn_workers(), config.gunicorn_threads(), config.gunicorn_bind()


def test_gunicorn_binds_to_port_on_localhost_unless_bind_is_given(monkeypatch):
    monkeypatch.delenv("BIND", raising=False)
    monkeypatch.setenv("PORT", "8123")
    assert config.gunicorn_bind() == "127.0.0.1:8123"
    monkeypatch.setenv("BIND", "0.0.0.0:9000")
    assert config.gunicorn_bind() == "0.0.0.0:9000"


@pytest.mark.parametrize("value", ["xml", "JSON ", "Text", "1"])
def test_log_format_is_text_or_json(tmp_path, monkeypatch, value):
    monkeypatch.setenv("SECRET_KEY", "x")
    monkeypatch.setenv("LOG_FORMAT", value)
    with pytest.raises(config.ConfigError, match="LOG_FORMAT must be text or json"):
        config.from_environment(tmp_path)


def test_log_format_and_slow_request_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "x")
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    monkeypatch.delenv("SLOW_REQUEST_MS", raising=False)
    settings = config.from_environment(tmp_path)
    assert (settings["LOG_FORMAT"], settings["SLOW_REQUEST_MS"]) == ("text", 1000)
    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.setenv("SLOW_REQUEST_MS", "0")
    settings = config.from_environment(tmp_path)
    assert (settings["LOG_FORMAT"], settings["SLOW_REQUEST_MS"]) == ("json", 0)


@pytest.mark.parametrize("value", ["fast", "-1", "0.5"])
def test_slow_request_ms_must_be_a_whole_number(tmp_path, monkeypatch, value):
    monkeypatch.setenv("SECRET_KEY", "x")
    monkeypatch.setenv("SLOW_REQUEST_MS", value)
    with pytest.raises(config.ConfigError, match="SLOW_REQUEST_MS"):
        config.from_environment(tmp_path)


def test_replica_urls_are_a_comma_separated_list(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "x")
    monkeypatch.delenv("DATABASE_REPLICA_URL", raising=False)
    settings = config.from_environment(tmp_path)
    assert settings["DATABASE_REPLICA_URLS"] == []
    assert settings["DB_REPLICA_MAX_LAG_S"] == 10
    monkeypatch.setenv("DATABASE_REPLICA_URL",
                       " postgresql+psycopg2://a@h1/db , postgresql+psycopg2://a@h2/db,")
    monkeypatch.setenv("DB_REPLICA_MAX_LAG_S", "3")
    settings = config.from_environment(tmp_path)
    assert settings["DATABASE_REPLICA_URLS"] == ["postgresql+psycopg2://a@h1/db",
                                                 "postgresql+psycopg2://a@h2/db"]
    assert settings["DB_REPLICA_MAX_LAG_S"] == 3


@pytest.mark.parametrize("value", ["not a url", "mysql://root:secret-pw@h/db"])
def test_a_bad_replica_url_is_refused_without_echoing_it(tmp_path, monkeypatch, value):
    monkeypatch.setenv("SECRET_KEY", "x")
    monkeypatch.setenv("DATABASE_REPLICA_URL", value)
    with pytest.raises(config.ConfigError, match="DATABASE_REPLICA_URL") as refused:
        config.from_environment(tmp_path)
    assert "secret-pw" not in str(refused.value)


def test_replica_max_lag_must_be_a_whole_number(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "x")
    monkeypatch.setenv("DB_REPLICA_MAX_LAG_S", "soon")
    with pytest.raises(config.ConfigError, match="DB_REPLICA_MAX_LAG_S"):
        config.from_environment(tmp_path)
