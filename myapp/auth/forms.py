"""Flask-WTF forms of sign-in and account management."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField, SelectChoice, SelectField
from wtforms.validators import EqualTo, InputRequired, Length

from myapp.auth.accounts import clean_password
from myapp.auth.passwords import PASSWORD_MAX, PASSWORD_MIN
from myapp.forms import ServiceRule
from myapp.models import EMAIL_MAX, Role
from myapp.validation import clean_email

ROLE_CHOICES = [SelectChoice(role.value, role.value.capitalize()) for role in Role]


class LoginForm(FlaskForm):
    email = EmailField(
        "Email",
        validators=[InputRequired("Enter your email address."), Length(max=EMAIL_MAX)],
        render_kw={"autocomplete": "username", "maxlength": EMAIL_MAX},
    )
    password = PasswordField(
        "Password",
        validators=[InputRequired("Enter your password."), Length(max=PASSWORD_MAX)],
        render_kw={"autocomplete": "current-password", "maxlength": PASSWORD_MAX},
    )
    next = HiddenField()


def _new_password_fields():
    password = PasswordField(
        "Password",
        description=f"At least {PASSWORD_MIN} characters.",
        validators=[ServiceRule(clean_password)],
        render_kw={"autocomplete": "new-password", "minlength": PASSWORD_MIN,
                   "maxlength": PASSWORD_MAX},
    )
    confirm = PasswordField(
        "Password again",
        validators=[EqualTo("password", "The two passwords differ.")],
        render_kw={"autocomplete": "new-password", "maxlength": PASSWORD_MAX},
    )
    return password, confirm


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)


class NewAccountForm(RoleForm):
    email = EmailField(
        "Email",
        validators=[ServiceRule(clean_email)],
        render_kw={"autocomplete": "off", "maxlength": EMAIL_MAX},
    )
    password, confirm = _new_password_fields()


class PasswordForm(FlaskForm):
    password, confirm = _new_password_fields()


class ConfirmForm(FlaskForm):
    """A button and its CSRF token (disable, enable, sign out)."""
