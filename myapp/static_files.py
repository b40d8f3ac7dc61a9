"""Static file URLs that change when the file does: ``/static/style.css?v=<hash>``.

nginx serves ``/static/`` with a year-long, immutable cache
(deploy/nginx/myapp-locations.conf). That is only right if a changed file
gets a new URL, so every ``url_for('static', ...)`` carries a short hash of
the file's content, computed once per file per process.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from flask import Flask, current_app


def init_app(app: Flask) -> None:
    app.url_defaults(add_content_hash)


def add_content_hash(endpoint: str, values: dict) -> None:
    if endpoint != "static" or "v" in values or "filename" not in values:
        return
    version = content_hash(current_app.static_folder, values["filename"])
    if version:
        values["v"] = version


@cache
def content_hash(folder: str, filename: str) -> str | None:
    path = Path(folder, filename)
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError:
        return None  # a missing file: its URL 404s as it would anyway
