"""The usual build: myapp's pages as most Flask apps build them — a benchmark
baseline only (``bench/run --usual-build``), never part of the product.

Flask-SQLAlchemy 3.1 (``db.Model``, ``db.paginate`` with OFFSET and COUNT,
``db.session.commit()`` in the view), Flask-WTF forms, Flask-Login with its
default loader (``db.session.get(Account, id)``), argon2-cffi to check the
password. It serves the tables myapp's migrations create, in the same
database, so both apps answer from the same rows.
"""
