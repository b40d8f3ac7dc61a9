"""Compare a database's schema with the one a migration would make.

The comparison is PostgreSQL's own: both sides are read back from the
catalogs as PostgreSQL prints them (``format_type``, ``pg_get_expr``,
``pg_get_constraintdef``, ``pg_get_indexdef``), so an expression index, a
GIN operator class, a ``DESC`` column or a CHECK constraint compares exactly,
with no guessing at how a definition was spelled. The expected side is
made for real, by :func:`rehearse`: inside a transaction that is always
rolled back, in a scratch schema, so nothing of it is ever left behind.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection, text

# Alembic's own bookkeeping, not part of the app's schema.
IGNORED_TABLES = {"alembic_version"}

_TABLES = text(
    "SELECT c.relname FROM pg_class c"
    " WHERE c.relnamespace = CAST(:schema AS regnamespace) AND c.relkind IN ('r', 'p')"
)
_COLUMNS = text(
    "SELECT c.relname AS table_name, a.attname AS name,"
    " format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,"
    " a.attidentity AS identity, a.attgenerated AS generated,"
    " pg_get_expr(d.adbin, d.adrelid) AS default"
    " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
    " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
    " WHERE c.relnamespace = CAST(:schema AS regnamespace) AND c.relkind IN ('r', 'p')"
    " AND a.attnum > 0 AND NOT a.attisdropped"
)
_CONSTRAINTS = text(
    "SELECT c.relname AS table_name, k.conname AS name, pg_get_constraintdef(k.oid) AS definition"
    " FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid"
    " WHERE c.relnamespace = CAST(:schema AS regnamespace)"
)
_INDEXES = text(
    "SELECT t.relname AS table_name, i.relname AS name, pg_get_indexdef(i.oid) AS definition,"
    " x.indisvalid AS valid"
    " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid"
    " WHERE t.relnamespace = CAST(:schema AS regnamespace)"
)


@dataclass
class SchemaDescription:
    """One schema's tables, and each of their objects as PostgreSQL prints it."""

    tables: set[str] = field(default_factory=set)
    # (kind, "table.name") -> definition, for kind in column, constraint, index
    objects: dict[tuple[str, str], str] = field(default_factory=dict)


def describe(conn: Connection, schema: str) -> SchemaDescription:
    """Read ``schema``'s tables, columns, constraints and indexes.

    Runs with ``search_path`` set to ``schema`` then ``public`` (for the
    rest of ``conn``'s transaction), so that names in it — an operator
    class, a referenced table — print unqualified the same way whichever
    schema is described.
    """
    conn.execute(text("SELECT set_config('search_path', :path, true)"),
                 {"path": f'"{schema}", public' if schema != "public" else "public"})
    params = {"schema": schema}
    described = SchemaDescription()
    described.tables = {name for name in conn.scalars(_TABLES, params)} - IGNORED_TABLES
    for row in conn.execute(_COLUMNS, params):
        if row.table_name in described.tables:
            definition = row.type + (" NOT NULL" if row.not_null else "")
            if row.identity:
                definition += " GENERATED " + {"a": "ALWAYS", "d": "BY DEFAULT"}[row.identity] + " AS IDENTITY"
            elif row.generated:
                definition += f" GENERATED ALWAYS AS ({row.default}) STORED"
            elif row.default is not None:
                definition += f" DEFAULT {row.default}"
            described.objects["column", f"{row.table_name}.{row.name}"] = definition
    for row in conn.execute(_CONSTRAINTS, params):
        if row.table_name in described.tables:
            described.objects["constraint", f"{row.table_name}.{row.name}"] = row.definition
    qualifier = f" ON {conn.dialect.identifier_preparer.quote_schema(schema)}."
    for row in conn.execute(_INDEXES, params):
        if row.table_name in described.tables:
            definition = row.definition.replace(qualifier, " ON ", 1)
            if not row.valid:
                definition += " -- INVALID (a failed CREATE INDEX CONCURRENTLY)"
            described.objects["index", f"{row.table_name}.{row.name}"] = definition
    return described


def differences(actual: SchemaDescription, expected: SchemaDescription) -> list[str]:
    """What differs, one line each, tables first: ``[]`` when the schemas match."""
    found = [f"table {name}: expected, missing from the database"
             for name in sorted(expected.tables - actual.tables)]
    found += [f"table {name}: in the database, not expected"
              for name in sorted(actual.tables - expected.tables)]
    for key in sorted(expected.objects.keys() | actual.objects.keys()):
        kind, name = key
        if name.split(".")[0] not in actual.tables & expected.tables:
            continue  # the table itself is already reported
        want, have = expected.objects.get(key), actual.objects.get(key)
        if have is None:
            found.append(f"{kind} {name}: expected ({want}), missing from the database")
        elif want is None:
            found.append(f"{kind} {name}: in the database ({have}), not expected")
        elif have != want:
            found.append(f"{kind} {name}: the database has ({have}), expected ({want})")
    return found


def rehearse(conn: Connection, build: Callable[[Connection], None]) -> SchemaDescription:
    """Run ``build`` in a scratch schema and describe what it made; undo it all.

    All of it happens in a transaction (a savepoint, if ``conn`` is in one
    already) that is always rolled back, so whatever ``build`` did — the
    scratch schema, an extension it created — never reaches the database.
    """
    scratch = f"myapp_rehearsal_{secrets.token_hex(4)}"
    transaction = conn.begin_nested() if conn.in_transaction() else conn.begin()
    try:
        conn.exec_driver_sql(f'CREATE SCHEMA "{scratch}"')
        conn.execute(text("SELECT set_config('search_path', :path, true)"),
                     {"path": f'"{scratch}", public'})
        build(conn)
        return describe(conn, scratch)
    finally:
        transaction.rollback()
