"""Figures the fault and scale-out scenarios measured: one table at the end of the run.

Tests assert correctness and generous bounds only; the exact numbers of a run
(requests, errors, acknowledged vs stored writes, peak connections, recovery
time) are recorded here, printed by ``pytest_terminal_summary`` in
``tests/conftest.py`` and copied into docs/reliability.md and docs/deployment.md.
"""

from __future__ import annotations

FIGURES: list[tuple[str, dict[str, object]]] = []


def record(scenario: str, **figures: object) -> None:
    FIGURES.append((scenario, figures))


def table() -> str:
    lines = ["| scenario | figures |", "| --- | --- |"]
    for scenario, figures in FIGURES:
        cells = "; ".join(f"{name.replace('_', ' ')}: {value}" for name, value in figures.items())
        lines.append(f"| {scenario} | {cells} |")
    return "\n".join(lines)
