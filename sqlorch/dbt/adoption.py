"""Which existing relations a dbt project's own dbt built, so sqlorch may take them over.

sqlorch writes only to relations it created (``state/ownership.py``). Pointed at a
warehouse where the same dbt project already ran, every model's table exists and was
created by dbt: refusing them all would make "run your dbt project unchanged" fail on
the first build. dbt records what it built in ``target/manifest.json``: a relation listed
there as a model or seed of this project is the project's own, so the build adopts it
(claims it as sqlorch's before replacing it). Anything else that exists, a table of
another project or one created by hand, is still refused.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlorch.refs import TableRef

MANIFEST = Path("target") / "manifest.json"  # where dbt writes it; sqlorch's own goes to target/sqlorch/
_BUILT = ("model", "seed", "snapshot")


def dbt_built_relations(root: Path) -> set[tuple[str, str]]:
    """``(schema, name)`` in lower case of every model and seed in the project's dbt
    manifest; empty when there is none or it cannot be read (then nothing is adopted)."""
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        nodes = manifest["nodes"].values()
    except (OSError, ValueError, KeyError, AttributeError):
        return set()
    built: set[tuple[str, str]] = set()
    for node in nodes:
        if not isinstance(node, dict) or node.get("resource_type") not in _BUILT:
            continue
        schema, name = node.get("schema"), node.get("alias") or node.get("name")
        if isinstance(schema, str) and isinstance(name, str):
            built.add((schema.lower(), name.lower()))
    return built


def adoptable(relation: TableRef, built: set[tuple[str, str]]) -> bool:
    return (relation.schema.lower(), relation.name.lower()) in built
