"""Entry point for the ``flask`` CLI: ``flask --app app init-db``."""

import sys

from myapp import create_app
from myapp.config import ConfigError

try:
    app = create_app()
except ConfigError as err:
    # A setting the operator got wrong: one line naming it, exit status 1.
    sys.exit(f"Error: {err}")
