"""Teach Alembic's autogenerate (``db check``, ``db revision --autogenerate``)
to compare indexes and CHECK constraints exactly.

Out of the box it cannot: it reflects ``lower(email)`` and the trigram index
``(name || '\\n' || email) gin_trgm_ops`` back in PostgreSQL's spelling
(``((name || '\\n'::text) || email)``), differently from the model's, and
reports a change that is not there (alembic #1390; #750 for the operator
class); CHECK constraints it does not compare at all. So migrations/env.py
switches its index comparison off (``include_object``) and registers
:func:`compare_exactly` instead, which asks PostgreSQL itself: the models'
tables are created for real in a scratch schema inside a rolled-back
savepoint (:func:`myapp.migrating.schema_diff.rehearse`), and both sides are read back
from the catalogs as PostgreSQL prints them. Columns and tables stay
Alembic's: it compares those well.
"""

from __future__ import annotations

import re

from alembic.autogenerate import comparators
from alembic.operations import ops
from sqlalchemy import CheckConstraint, Index, MetaData, Table, text

from myapp.migrating import schema_diff

_INDEX_DEF = re.compile(
    r"CREATE (?P<unique>UNIQUE )?INDEX \S+ ON \S+ USING (?P<using>\w+) \((?P<elements>.*)\)$"
)


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """``include_object`` for env.py: indexes are :func:`compare_exactly`'s."""
    return type_ != "index"


@comparators.dispatch_for("schema")
def compare_exactly(autogen_context, upgrade_ops, schemas) -> None:
    """Add an op for each index or CHECK constraint that differs."""
    conn = autogen_context.connection
    metadata: MetaData = autogen_context.metadata
    actual = schema_diff.describe(conn, conn.scalar(text("SELECT current_schema()")))
    # checkfirst=False: the real tables, further down the search_path, must
    # not stop the scratch ones being made.
    expected = schema_diff.rehearse(
        conn, lambda scratch: metadata.create_all(scratch, checkfirst=False)
    )
    for table_name in sorted(actual.tables & expected.tables):
        table_ops = _table_differences(table_name, metadata.tables[table_name], actual, expected)
        if table_ops:
            upgrade_ops.ops.append(ops.ModifyTableOps(table_name, table_ops))


def _table_differences(table_name, model_table: Table, actual, expected) -> list:
    backing = {name for kind, name in actual.objects if kind == "constraint"}
    found = []
    for key in sorted(actual.objects.keys() | expected.objects.keys()):
        kind, qualified = key
        table, name = qualified.split(".", 1)
        have, want = actual.objects.get(key), expected.objects.get(key)
        if table != table_name or have == want:
            continue
        if kind == "index" and qualified not in backing:  # not a primary key's or a unique constraint's
            if have is not None:
                found.append(ops.DropIndexOp.from_index(_index_from_definition(name, table, have)))
            if want is not None:
                found.append(ops.CreateIndexOp.from_index(
                    next(index for index in model_table.indexes if index.name == name)))
        elif kind == "constraint" and (have or want).startswith("CHECK "):
            if have is not None:
                found.append(ops.DropConstraintOp.from_constraint(
                    _check_from_definition(name, table, have)))
            if want is not None:
                found.append(ops.AddConstraintOp.from_constraint(
                    next(c for c in model_table.constraints if c.name == name)))
    return found


def _index_from_definition(name: str, table: str, definition: str) -> Index:
    """An ``Index`` for the one the database has, as its catalog prints it."""
    match = _INDEX_DEF.match(definition)
    if match is None:  # a partial index or another form this app never makes
        raise ValueError(f"cannot read the definition of index {name}: {definition}")
    index = Index(name, text(match["elements"]), unique=bool(match["unique"]),
                  postgresql_using=match["using"])
    Table(table, MetaData(), index)
    return index


def _check_from_definition(name: str, table: str, definition: str) -> CheckConstraint:
    # pg_get_constraintdef prints "CHECK (expression)".
    check = CheckConstraint(text(definition.removeprefix("CHECK (").removesuffix(")")), name=name)
    Table(table, MetaData(), check)
    return check
