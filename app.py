"""Entry point for the ``flask`` CLI: ``flask --app app init-db``."""

import os
import sys

# A CLI command is no gunicorn worker: if it wrote metric files into a
# server's PROMETHEUS_MULTIPROC_DIR (an environment shared with the server),
# nothing would ever retire them. Its metrics stay in its own memory.
os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

from myapp import create_app  # noqa: E402
from myapp.config import ConfigError  # noqa: E402

try:
    app = create_app()
except ConfigError as err:
    # A setting the operator got wrong: one line naming it, exit status 1.
    sys.exit(f"Error: {err}")
