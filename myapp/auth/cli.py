"""``flask create-account`` and ``flask create-first-admin``."""

from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from myapp import db
from myapp.auth import accounts
from myapp.cli import database_error_message
from myapp.models import Role
from myapp.validation import InvalidField


def init_app(app: Flask) -> None:
    app.cli.add_command(create_account_command)
    app.cli.add_command(create_first_admin_command)


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


@click.command("create-account")
@click.argument("email")
@click.option("--role", type=click.Choice([role.value for role in Role]), required=True,
              help="viewer reads; editor also changes users; admin also manages accounts.")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of standard input.")
@with_appcontext
def create_account_command(email: str, role: str, password_stdin: bool) -> None:
    """Create a sign-in account for EMAIL; asks for the password twice."""
    if password_stdin:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        account = accounts.create_account(db.Session(), email, Role(role), password)
    except InvalidField as err:
        _fail(str(err))
    except accounts.AccountEmailTaken:
        _fail(accounts.AccountEmailTaken.message)
    except SQLAlchemyError as err:
        _fail(database_error_message(err))
    click.echo(f"Created account {account.email} ({account.role}).")


@click.command("create-first-admin")
@with_appcontext
def create_first_admin_command() -> None:
    """With no account yet, create an admin with a random password and print
    both, once. With any account, do nothing. (`make serve` runs this.)"""
    try:
        created = accounts.create_first_admin(db.Session())
    except SQLAlchemyError as err:
        _fail(database_error_message(err))
    if created:
        email, password = created
        click.echo(
            "\nNo account existed, so an admin account was created:\n"
            f"    email:    {email}\n"
            f"    password: {password}\n"
            "Sign in with it, then set a password of your own (or make your own accounts)"
            " at /accounts.\nOnly a hash of this password is stored: it is not shown again.\n"
        )
