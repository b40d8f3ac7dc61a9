"""Run the app's real processes — gunicorn, ``flask`` commands, a whole
local cluster — as an operator would, on free ports, always stopped.
Shared by the tests and the benchmark (bench/ must not import tests/)."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
