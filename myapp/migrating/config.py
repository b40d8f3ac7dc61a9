"""How every migration is run: Alembic's config, and the connection under it.

* :func:`alembic_config` is the Alembic configuration, built in code from
  the app's validated settings: there is no ``alembic.ini`` to keep in step.
* :func:`migration_engine` is what every migration runs on: one connection
  (``NullPool``), no ``statement_timeout`` (an index build may take
  minutes) but a short ``lock_timeout``: a DDL statement queued behind a long
  transaction would make every request queue behind *it*; it fails instead,
  and the deploy is retried.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData, create_engine
from sqlalchemy.pool import NullPool

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def target_metadata() -> MetaData:
    """The models' tables: what ``db check`` and ``--autogenerate`` compare against."""
    from myapp.models import Base

    return Base.metadata


def app_settings() -> Mapping[str, Any]:
    """The app's validated settings (for ``alembic`` run by hand)."""
    from myapp import create_app

    return create_app().config


def migration_engine(settings: Mapping[str, Any]) -> Engine:
    options = (
        f"-c lock_timeout={settings['MIGRATION_LOCK_TIMEOUT_MS']}"
        # Building an index on a big table legitimately takes long; it is the
        # locks a migration waits for that must be short.
        " -c statement_timeout=0"
    )
    return create_engine(
        settings["DATABASE_URL"],
        poolclass=NullPool,
        connect_args={
            "connect_timeout": settings["DB_CONNECT_TIMEOUT"],
            "options": options,
            "application_name": "myapp-migrate",
        },
    )


def alembic_config(
    connection: Connection | None = None, *, stdout: TextIO | None = None, **attributes: Any
) -> Config:
    """Alembic's config for ``migrations/``; ``connection`` is used by env.py."""
    config = Config(stdout=stdout or sys.stdout)
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # New revisions are numbered (0003_add_accounts.py): their order reads
    # at a glance, and two branches adding the same number collide in git.
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    config.attributes.update(attributes)
    return config


def next_revision_id(config: Config) -> str:
    """The number after the highest numbered revision: ``0003`` after ``0002``."""
    scripts = ScriptDirectory.from_config(config).walk_revisions()
    numbers = [int(script.revision) for script in scripts if re.fullmatch(r"\d+", script.revision)]
    return f"{max(numbers, default=0) + 1:04d}"


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()
