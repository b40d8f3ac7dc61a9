"""Run ``flask --app app COMMAND`` in a subprocess, as an operator does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import URL

from harness import PROJECT_ROOT

FLASK = Path(sys.executable).with_name("flask")


def flask_command(*args: str) -> list[str]:
    return [str(FLASK), "--app", "app", *args]


def flask_env(database_url: str | URL, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a command runs with: ours, pointed at ``database_url``."""
    if isinstance(database_url, URL):
        database_url = database_url.render_as_string(hide_password=False)
    # A fixed key: commands sign nothing, and none is written to instance/.
    return {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "flask-command",
            **(env or {})}


def run_flask(*args: str, database_url: str | URL, env: dict[str, str] | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a command to its end; its output is captured as text."""
    return subprocess.run(
        flask_command(*args), cwd=PROJECT_ROOT, env=flask_env(database_url, env),
        capture_output=True, text=True, timeout=timeout,
    )


def start_flask(*args: str, database_url: str | URL, env: dict[str, str] | None = None,
                **popen_options) -> subprocess.Popen:
    """Start a command and return at once (to act on it while it runs)."""
    return subprocess.Popen(
        flask_command(*args), cwd=PROJECT_ROOT, env=flask_env(database_url, env),
        text=True, **popen_options,
    )
