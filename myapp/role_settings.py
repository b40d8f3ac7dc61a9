"""The session limits every connection of the app runs with, kept as the
role's own settings in its database, so they hold through PgBouncer.

PgBouncer in transaction mode refuses per-connection settings in the startup
packet (libpq's ``options``), and a ``SET`` would stay on a server connection
PgBouncer hands to other clients. ``ALTER ROLE ... IN DATABASE ... SET``
needs neither. ``flask init-db`` applies them; nothing else here depends on
how the schema is made.
"""

from __future__ import annotations

from sqlalchemy import Engine


def role_settings(config) -> dict[str, str]:
    """What every connection of the app must run with, whatever it goes through.

    A gthread worker has no request timeout of its own: PostgreSQL bounds a
    runaway query and a transaction left open. JIT compilation (tens of ms)
    never pays off for short OLTP queries, and a misestimate on a freshly
    filled table would trigger it.
    """
    return {
        "statement_timeout": f"{config['DB_STATEMENT_TIMEOUT_MS']}ms",
        "idle_in_transaction_session_timeout": f"{config['DB_IDLE_IN_TRANSACTION_TIMEOUT_MS']}ms",
        "jit": "off",
    }


def apply_role_settings(bind: Engine, config) -> None:
    """Make :func:`role_settings` the defaults of the connecting role in its database.

    ``ALTER ROLE CURRENT_USER IN DATABASE ... SET``: PostgreSQL applies them
    to every new session of that role in that database — through PgBouncer
    in transaction mode too, and without a round trip — while other roles
    (an administrator's psql, pg_dump) and other databases keep their own.
    Any role may set its own defaults. Sessions opened before keep the old
    values until they reconnect.
    """
    with bind.begin() as conn:
        database = conn.dialect.identifier_preparer.quote(bind.url.database)
        for name, value in role_settings(config).items():
            # Names are ours; the value is a bound literal.
            conn.exec_driver_sql(
                f"ALTER ROLE CURRENT_USER IN DATABASE {database} SET {name} = %(value)s",
                {"value": value},
            )
