"""``flask`` commands a test runs (through harness.flask_cli) and checks on
what they printed."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.flask_cli import start_flask
from tests.support.workload import wait_for


def start_flask_logging(*args: str, database_url, log: Path,
                        env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``flask ARGS`` in the background, its stderr written to ``log``."""
    with log.open("w") as stderr:
        return start_flask(*args, database_url=database_url, env=env,
                           stdout=subprocess.DEVNULL, stderr=stderr)


def wait_for_output(log: Path, wanted: str, process: subprocess.Popen, timeout: float) -> bool:
    """Whether ``wanted`` appears in ``log`` before ``process`` ends or time runs out."""
    wait_for(lambda: wanted in log.read_text() or process.poll() is not None, timeout)
    return wanted in log.read_text()


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


def assert_one_error_line(result: subprocess.CompletedProcess, *phrases: str) -> None:
    """A database error of any kind is one ``Error:`` line naming it, not a traceback."""
    errors = error_lines(result)
    assert len(errors) == 1, result.stderr
    for phrase in phrases:
        assert phrase in errors[0]
    assert "Traceback" not in result.stderr + result.stdout


def assert_only_error_line(result: subprocess.CompletedProcess, *phrases: str) -> None:
    """As :func:`assert_one_error_line`, and that line is all of stderr."""
    assert_one_error_line(result, *phrases)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
