"""Entry point for gunicorn: ``gunicorn -c gunicorn.conf.py wsgi:app``."""

from myapp import create_app

app = create_app()
