"""Checks on what a ``flask`` command printed (run it with harness.flask_cli)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from harness import flask_cli
from harness.flask_cli import run_flask as flask  # noqa: F401  (replaced below in this series)


def start_flask(*args, database_url, stderr_path: Path, env=None) -> subprocess.Popen:
    with stderr_path.open("w") as stderr:
        return flask_cli.start_flask(*args, database_url=database_url, env=env,
                                     stdout=subprocess.DEVNULL, stderr=stderr)


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


def assert_one_error_line(result, *phrases: str) -> None:
    """A database error of any kind is one ``Error:`` line naming it, not a traceback."""
    errors = error_lines(result)
    assert len(errors) == 1, result.stderr
    for phrase in phrases:
        assert phrase in errors[0]
    assert "Traceback" not in result.stderr + result.stdout


def wait_for_text(path: Path, wanted: str, process: subprocess.Popen, timeout: float) -> bool:
    """Whether ``wanted`` appears in the file ``path`` before ``process`` ends or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if wanted in path.read_text():
            return True
        time.sleep(0.05)  # polling the log for a line, with a deadline
    return wanted in path.read_text()
