"""The rules for a user's fields, shared by the web forms, the CSV import and
the CLI, so every way in accepts exactly the same data.

Each ``clean_*`` function takes raw text and returns the value to store, or
raises :class:`InvalidField` with a message meant for the person who typed it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from myapp.models import EMAIL_MAX, EMAIL_MIN, NAME_MAX

# Control characters (Unicode category Cc: U+0000-U+001F, U+007F-U+009F — NUL
# among them, which PostgreSQL cannot store), lone surrogates, the line and
# paragraph separators, and U+FFFD, which is what bytes that were not valid
# UTF-8 become when a form is decoded. One character class: a C-speed scan.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffd]")


class InvalidField(ValueError):
    """A field's value breaks a rule; ``str(err)`` is the message to show."""


@dataclass(frozen=True)
class UserFields:
    """A user's name and email, cleaned and validated: what a form or a CSV
    row submits, before the database gives it an id."""

    name: str
    email: str


def has_forbidden_characters(text: str) -> bool:
    return _FORBIDDEN.search(text) is not None


def _clean_text(raw: str | None, noun: str, minimum: int, maximum: int) -> str:
    value = (raw or "").strip()
    if not value:
        article = "an" if noun[0] in "aeiou" else "a"
        raise InvalidField(f"Enter {article} {noun}.")
    if has_forbidden_characters(value):
        raise InvalidField(f"The {noun} contains control characters or invalid text.")
    if not minimum <= len(value) <= maximum:
        raise InvalidField(
            f"The {noun} must be {minimum} to {maximum} characters long"
            f" (it has {len(value)})."
        )
    return value


def clean_name(raw: str | None) -> str:
    return _clean_text(raw, "name", 1, NAME_MAX)


def clean_email(raw: str | None) -> str:
    """Validate syntax only: no DNS lookups (slow, and fails offline).

    The address is stored as entered (trimmed); uniqueness ignores letter
    case and is enforced by a unique index on ``lower(email)``.
    """
    value = _clean_text(raw, "email address", EMAIL_MIN, EMAIL_MAX)
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError as err:
        raise InvalidField(f"Enter a valid email address. {err}") from None
    return value


def clean_user(name: str | None, email: str | None) -> tuple[UserFields | None, dict[str, str]]:
    """Clean both fields: the values, or ``None`` and a message per bad field."""
    errors: dict[str, str] = {}
    try:
        name = clean_name(name)
    except InvalidField as err:
        errors["name"] = str(err)
    try:
        email = clean_email(email)
    except InvalidField as err:
        errors["email"] = str(err)
    if errors:
        return None, errors
    return UserFields(name=name, email=email), {}
