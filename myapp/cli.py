"""``flask`` commands. They call the same services as the web views.

Flask runs each command inside an app context, so the session they use is
removed by the same ``teardown_appcontext`` hook as a request's.
"""

from __future__ import annotations

import io
import os
import sys

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from myapp import db, importing, seeding
from myapp.role_settings import apply_role_settings, role_settings


def init_app(app: Flask) -> None:
    app.cli.add_command(init_db_command)
    app.cli.add_command(seed_users_command)
    app.cli.add_command(import_users_command)


def _fail(message: str, status: int = 1):
    click.echo(f"Error: {message}", err=True)
    sys.exit(status)


def unreachable_message(err: OperationalError | InterfaceError) -> str:
    """One line saying which database could not be reached and why."""
    url = db.engine().url.render_as_string(hide_password=True)
    lines = str(err.orig).strip().splitlines() if err.orig else []
    reason = lines[0] if lines else "the connection was lost"
    return f"cannot reach the database {url}: {reason}"


def database_error_message(err: SQLAlchemyError) -> str:
    """One line for any database error; the rest (statement, traceback) goes
    to the log at DEBUG level, which ``flask --debug`` shows.

    Exit status 1 is "some rows were rejected" for import-users, so no
    database error may escape as a traceback (which exits 1 too).
    """
    current_app.logger.debug("database error", exc_info=err)
    if isinstance(err, (OperationalError, InterfaceError)):
        return unreachable_message(err)
    lines = str(getattr(err, "orig", None) or err).strip().splitlines()
    return f"database error: {lines[0] if lines else type(err).__name__}"


# with_appcontext: however a command is invoked, it runs inside an app
# context, so teardown_appcontext removes its session when it ends.
@click.command("init-db")
@with_appcontext
@click.option("--drop", is_flag=True, help="Drop the tables first: all data is lost.")
@click.option("--yes", is_flag=True, help="Do not ask before --drop.")
def init_db_command(drop: bool, yes: bool) -> None:
    """Create the database if missing, then every table and index."""
    if drop and not yes:
        click.confirm("Drop every table? All data will be lost.", abort=True)
    config = current_app.config
    try:
        created = db.create_database_if_missing(
            config["DATABASE_URL"], config["DB_CONNECT_TIMEOUT"]
        )
        db.create_schema(db.engine(), drop=drop)
        apply_role_settings(db.engine(), config)
    except SQLAlchemyError as err:  # unreachable, or e.g. no permission to create
        _fail(database_error_message(err))
    database = db.engine().url.database
    click.echo(f"Created database {database}." if created else f"Database {database} exists.")
    click.echo("Dropped and recreated the tables." if drop else "Tables and indexes are in place.")
    limits = role_settings(config)
    click.echo("Session limits for this role: "
               + ", ".join(f"{name}={value}" for name, value in limits.items()) + ".")


@click.command("seed-users")
@with_appcontext
@click.option("--count", type=click.IntRange(min=1), required=True, help="How many users.")
def seed_users_command(count: int) -> None:
    """Insert COUNT generated users quickly (demo and benchmark data)."""
    try:
        with click.progressbar(length=count, label="Seeding users", file=sys.stderr) as bar:
            seeding.seed_users(db.Session(), count, on_batch=bar.update)
    except SQLAlchemyError as err:
        _fail(database_error_message(err))
    click.echo(f"Inserted {count} users.")


class _ProgressReader(io.RawIOBase):
    """A binary file that advances a progress bar by the bytes read from it."""

    def __init__(self, raw, bar):
        self.raw, self.bar = raw, bar

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self.raw.readinto(buffer)
        self.bar.update(count or 0)
        return count


@click.command("import-users")
@click.argument("csv_file", type=click.Path(dir_okay=False))
@with_appcontext
def import_users_command(csv_file: str) -> None:
    """Import users from CSV_FILE (header name,email), exactly as the web import does.

    Exit status: 0 all rows imported, 1 some rows rejected, 2 fatal error
    (nothing written).
    """
    try:
        raw = open(csv_file, "rb")
    except OSError as err:
        _fail(f"cannot read {csv_file}: {err.strerror}", status=2)
    size = os.fstat(raw.fileno()).st_size
    try:
        with raw, click.progressbar(length=size, label="Importing", file=sys.stderr) as bar:
            lines = importing.text_lines(io.BufferedReader(_ProgressReader(raw, bar)))
            report = importing.import_users(db.Session(), lines)
    except importing.ImportFormatError as err:
        _fail(f"{csv_file}: {err} Nothing was imported.", status=2)
    except importing.ImportInProgress as err:
        _fail(str(err), status=2)
    except SQLAlchemyError as err:
        _fail(f"{database_error_message(err)}. Nothing was imported.", status=2)
    except OSError as err:
        _fail(f"cannot read {csv_file}: {err.strerror or err}. Nothing was imported.", status=2)
    click.echo(f"created {report.created}, rejected {len(report.rejected)}")
    for rejected in report.rejected:
        click.echo(f"line {rejected.line}: {rejected.reason}")
    sys.exit(1 if report.rejected else 0)
