"""Flask-WTF forms. Their rules are the services' rules (myapp.validation)."""

from __future__ import annotations

from collections.abc import Callable

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import EmailField, IntegerField, StringField, TextAreaField
from wtforms.validators import InputRequired, NumberRange, StopValidation
from wtforms.widgets import HiddenInput

from myapp.models import EMAIL_MAX, NAME_MAX
from myapp.validation import InvalidField, UserFields, clean_email, clean_name


class ServiceRule:
    """Run a ``myapp.validation.clean_*`` function as a WTForms validator."""

    def __init__(self, clean: Callable[[str | None], str]):
        self.clean = clean

    def __call__(self, form, field) -> None:
        try:
            field.data = self.clean(field.data)
        except InvalidField as err:
            raise StopValidation(str(err)) from None


class UserForm(FlaskForm):
    name = StringField(
        "Name",
        description=f"1 to {NAME_MAX} characters.",
        validators=[ServiceRule(clean_name)],
        render_kw={"autocomplete": "name", "maxlength": NAME_MAX},
    )
    email = EmailField(
        "Email",
        validators=[ServiceRule(clean_email)],
        render_kw={"autocomplete": "email", "maxlength": EMAIL_MAX},
    )

    def user_fields(self) -> UserFields:
        return UserFields(name=self.name.data, email=self.email.data)


class EditUserForm(UserForm):
    # The version the form was loaded at; saving over a newer one is refused.
    version = IntegerField(
        widget=HiddenInput(),
        validators=[InputRequired(), NumberRange(min=1, max=2**31 - 1)],
    )


class ImportForm(FlaskForm):
    file = FileField("CSV file", render_kw={"accept": ".csv,text/csv"})
    csv = TextAreaField(
        "…or paste CSV text",
        render_kw={"rows": 8, "spellcheck": "false", "placeholder": "name,email\nAda Lovelace,ada@example.com"},
    )
