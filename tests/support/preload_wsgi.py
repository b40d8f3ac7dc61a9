"""A wsgi module that, like many real apps, touches the database at import.

Served with ``--preload``, this import runs in the gunicorn master, so the
master's pool holds an open connection when it forks the workers.
"""

from sqlalchemy import text

from myapp import create_app, db

app = create_app()
with app.app_context():
    db.Session().execute(text("SELECT 'opened before fork'"))
