"""Alembic's autogenerate findings, in words an operator reads (``db check``)."""

from __future__ import annotations

from typing import Any


def describe_diffs(diffs: list[Any]) -> str:
    lines = [f"  {describe_diff(diff)}" for diff in diffs]
    return "the models and the migrations differ (write a revision):\n" + "\n".join(lines)


def describe_diff(diff: Any) -> str:
    # Alembic's diff tuples, e.g. ("add_column", None, "users", Column(...)).
    if isinstance(diff, list):  # column modifications come grouped
        return "; ".join(describe_diff(item) for item in diff)
    kind, *rest = diff
    if kind in ("add_column", "remove_column"):
        _, table, column = rest
        return f"{kind} {table}.{column.name}"
    if kind in ("add_table", "remove_table"):
        return f"{kind} {rest[0].name}"
    if kind in ("add_index", "remove_index", "add_constraint", "remove_constraint"):
        obj = rest[0]
        return f"{kind} {obj.name} on {obj.table.name}"
    if kind.startswith("modify_"):
        _, table, column = rest[:3]
        return f"{kind} {table}.{column}"
    return " ".join(str(part) for part in diff)
