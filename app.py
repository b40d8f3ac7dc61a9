"""Entry point for the ``flask`` CLI: ``flask --app app init-db``."""

from myapp import create_app

app = create_app()
