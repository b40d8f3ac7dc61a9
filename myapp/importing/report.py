"""What an import hands back: how many users it created, and each rejected line."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rejected:
    line: int
    reason: str


@dataclass
class ImportReport:
    created: int = 0
    rejected: list[Rejected] = field(default_factory=list)
