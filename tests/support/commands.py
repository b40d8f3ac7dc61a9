"""Checks on what a ``flask`` command printed (run it with harness.flask_cli)."""

from __future__ import annotations

from harness.flask_cli import run_flask as flask  # noqa: F401  (replaced below in this series)


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


def assert_one_error_line(result, *phrases: str) -> None:
    """A database error of any kind is one ``Error:`` line naming it, not a traceback."""
    errors = error_lines(result)
    assert len(errors) == 1, result.stderr
    for phrase in phrases:
        assert phrase in errors[0]
    assert "Traceback" not in result.stderr + result.stdout
