"""What analysis knows of a compiled model beyond its columns: column lineage (for the
manifest, ``sqlorch lineage``, ``plan``'s impact and the docs) and a summary of its output
key (for the docs).

Both need the qualified query, which a warm compile never builds (its columns come from
the compile cache). So they are cached in ``target/cache/analysis.json`` by the compile
cache key (the model's SQL and its inputs' columns) plus a digest of the analysis code:
a warm ``sqlorch docs`` of 10,000 models qualifies nothing. The key summary is computed
only when asked for: ``compile`` does not pay for it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from sqlorch.analysis import keys as keys_module
from sqlorch.analysis import lineage as lineage_module
from sqlorch.analysis.lineage import LineageJson, column_lineage
from sqlorch.gcpause import collector_paused
from sqlorch.planning.compiler import CompiledModel
from sqlorch.refs import TableRef


@dataclass(frozen=True)
class KeyFacts:
    key: list[str] | None
    reason: str  # why there is no key, when there is none
    unique: bool
    global_aggregate: bool
    row_preserving: bool
    distributive: bool  # COUNT/SUM/MIN/MAX only: appended rows can be folded into groups
    identity_table: bool = False  # keyed by its FROM table's identity: that table's changes are mapped


@cache
def _code_digest() -> str:
    """The analysis code's own digest: a changed analysis never reads an old entry."""
    text = b"".join(Path(m.__file__ or "").read_bytes() for m in (lineage_module, keys_module))
    return hashlib.sha256(text).hexdigest()[:16]


class FactsCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        self.dirty = False
        if path.exists():
            try:
                data = json.loads(path.read_text())
                if data.get("code") == _code_digest():
                    self.entries = data["entries"]
            except (ValueError, KeyError, OSError):
                self.entries = {}

    def save(self, keep: set[str]) -> None:
        """Write the entries of ``keep`` (the current models' keys) if anything changed."""
        if self.dirty or set(self.entries) - keep:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            entries = {key: value for key, value in self.entries.items() if key in keep}
            self.path.write_text(json.dumps({"code": _code_digest(), "entries": entries}))


def _entry(cache: FactsCache, item: CompiledModel) -> dict[str, Any] | None:
    """The model's cache entry, created on first use; None when its inputs are unknown."""
    if not item.cache_key or item.columns is None:
        return None
    entry = cache.entries.get(item.cache_key)
    if entry is None:
        entry = cache.entries[item.cache_key] = {}
    return entry


def model_lineage(compiled: Mapping[TableRef, CompiledModel], cache: FactsCache) -> dict[TableRef, LineageJson | None]:
    """Per model its column lineage as the manifest holds it (None where its inputs'
    columns are unknown)."""
    found: dict[TableRef, LineageJson | None] = {}
    with collector_paused():
        for ref, item in compiled.items():
            entry = _entry(cache, item)
            if entry is not None and "lineage" not in entry:
                assert item.qualified is not None
                lineage = column_lineage(item.qualified, item.model.inputs)
                entry["lineage"] = {name: value.to_json() for name, value in lineage.items()}
                cache.dirty = True
            found[ref] = None if entry is None else entry["lineage"]
    return found


def model_keys(compiled: Mapping[TableRef, CompiledModel], cache: FactsCache) -> dict[TableRef, KeyFacts | None]:
    """Per model a summary of its output key (None where its inputs' columns are unknown)."""
    found: dict[TableRef, KeyFacts | None] = {}
    for ref, item in compiled.items():
        entry = _entry(cache, item)
        if entry is None:
            found[ref] = None
            continue
        if "key" not in entry:
            keys = item.keys
            facts = KeyFacts(
                key=keys.key,
                reason=keys.reason,
                unique=keys.unique,
                global_aggregate=keys.global_aggregate,
                row_preserving=keys.row_preserving,
                distributive=keys.distributive is not None,
                identity_table=keys.identity_table is not None,
            )
            entry["key"] = asdict(facts)
            cache.dirty = True
        found[ref] = KeyFacts(**entry["key"])
    return found
