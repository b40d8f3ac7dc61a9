"""Test data written through the app's own services (so audit rows come too)."""

from __future__ import annotations

from myapp import db, users
from myapp.models import User
from myapp.validation import UserFields


def make_user(app, name: str = "Ada Lovelace", email: str = "ada@example.com") -> User:
    with app.app_context():
        return users.create_user(db.Session(), UserFields(name=name, email=email))
