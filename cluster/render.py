"""Render the operator's config files in deploy/ for one local cluster.

The files use envsubst's ``${...}`` placeholders (upper case only, so
nginx's own ``$host`` and friends are left alone). Unlike envsubst, a
placeholder without a value is an error, never an empty string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from cluster.processes import ClusterError

PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


def render(template: str, values: Mapping[str, object]) -> str:
    missing = sorted({name for name in PLACEHOLDER.findall(template) if name not in values})
    if missing:
        raise ClusterError(f"no value for {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), template)


def render_file(source: Path, target: Path, values: Mapping[str, object], mode: int = 0o644) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(source.read_text(), values))
    target.chmod(mode)
    return target
